//! Building the gateway, sending requests, reading envelopes, and a fake `points.v1` server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use points_gateway::pb;
use points_gateway::pb::points_service_server::{PointsService, PointsServiceServer};
use points_gateway::{GatewayConfig, router};
use serde_json::Value;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::ServiceExt;

/// A port nothing listens on: any call that reaches the backend fails to connect.
pub const CLOSED_GRPC_URL: &str = "http://127.0.0.1:1";

/// A configuration without `/admin`, pointed at `grpc_url`.
pub fn config(grpc_url: &str) -> GatewayConfig {
    GatewayConfig {
        grpc_url: grpc_url.to_owned(),
        admin_ui: points_gateway::AdminUi::Disabled,
        ..GatewayConfig::default()
    }
}

/// The gateway pointed at a closed port.
pub async fn gateway_without_backend() -> Router {
    router(&config(CLOSED_GRPC_URL))
        .await
        .expect("the gateway builds")
}

/// A response, read whole.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an error envelope with this HTTP status and code, and returns its message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: i64) -> String {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text());
        assert_eq!(
            self.content_type(),
            "application/json",
            "content type of {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["code"], code, "code of {body}");
        assert!(body["data"].is_null(), "data of {body}");
        let message = body["message"]
            .as_str()
            .expect("message is a string")
            .to_owned();
        assert!(!message.is_empty());
        message
    }

    /// Asserts a success envelope with this HTTP status and returns its `data`.
    #[track_caller]
    pub fn assert_success(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text());
        let body = self.json();
        assert_eq!(body["code"], 0, "{body}");
        assert_eq!(body["message"], "OK", "{body}");
        body["data"].clone()
    }

    /// The content type without parameters.
    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

/// Sends one request through the router.
pub async fn send(app: &Router, request: Request<Body>) -> TestResponse {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body is readable")
        .to_bytes();
    TestResponse {
        status,
        headers,
        body,
    }
}

/// A GET.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("valid request")
}

/// A request with a JSON body.
pub fn json_request(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-api-key", "lp_test_key")
        .body(Body::from(body.to_owned()))
        .expect("valid request")
}

/// What the fake server saw of one call.
#[derive(Clone, Debug)]
pub struct SeenCall {
    pub method: &'static str,
    pub metadata: MetadataMap,
    pub request: String,
}

/// A fake `points.v1.PointsService`: records every call, answers with canned results and errors.
#[derive(Clone, Default)]
pub struct FakePoints {
    pub seen: Arc<Mutex<Vec<SeenCall>>>,
    /// How long `GetAccount` takes.
    pub account_delay: Duration,
}

impl FakePoints {
    fn record<T: std::fmt::Debug>(&self, method: &'static str, request: &tonic::Request<T>) {
        let call = SeenCall {
            method,
            metadata: request.metadata().clone(),
            request: format!("{:?}", request.get_ref()),
        };
        self.seen.lock().expect("not poisoned").push(call);
    }

    /// The calls seen so far.
    pub fn calls(&self) -> Vec<SeenCall> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

/// A status carrying `google.rpc.ErrorInfo` with `reason`, as the real server sends.
pub fn status_with_reason(code: Code, reason: &str, message: &str) -> Status {
    let details =
        ErrorDetails::with_error_info(reason, "points.v1", std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

fn entry_from_earn(request: &pb::EarnRequest) -> pb::Entry {
    pb::Entry {
        entry_id: "e_1".to_owned(),
        uid: request.uid.clone(),
        kind: "earn".to_owned(),
        delta: request.points.unwrap_or(10),
        balance_after: request.points.unwrap_or(10),
        idempotency_key: request.idempotency_key.clone(),
        reference: request.reference.clone(),
        description: request.description.clone(),
        metadata: Some(request.metadata.clone().unwrap_or_default()),
        rule_code: request.rule_code.clone(),
        rule_version: request.amount.as_ref().map(|_| 2),
        amount: request.amount.clone(),
        currency: request.currency.clone(),
        reverses_entry_id: None,
        hold_id: None,
        expires_at: request.expires_at,
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
    }
}

#[tonic::async_trait]
impl PointsService for FakePoints {
    async fn earn(
        &self,
        request: tonic::Request<pb::EarnRequest>,
    ) -> Result<tonic::Response<pb::MutationResponse>, Status> {
        self.record("Earn", &request);
        let earn = request.into_inner();
        let entry = entry_from_earn(&earn);
        let replayed = earn.idempotency_key == "replay-me";
        Ok(tonic::Response::new(pb::MutationResponse {
            balance: entry.balance_after,
            entry: Some(entry),
            replayed,
        }))
    }

    async fn spend(
        &self,
        request: tonic::Request<pb::SpendRequest>,
    ) -> Result<tonic::Response<pb::MutationResponse>, Status> {
        self.record("Spend", &request);
        Err(status_with_reason(
            Code::FailedPrecondition,
            "INSUFFICIENT_POINTS",
            "balance 3 is less than 50",
        ))
    }

    async fn adjust(
        &self,
        request: tonic::Request<pb::AdjustRequest>,
    ) -> Result<tonic::Response<pb::MutationResponse>, Status> {
        self.record("Adjust", &request);
        Err(status_with_reason(
            Code::Internal,
            "INTERNAL",
            "relation merchant_7.point_lots does not exist",
        ))
    }

    async fn reverse(
        &self,
        request: tonic::Request<pb::ReverseRequest>,
    ) -> Result<tonic::Response<pb::MutationResponse>, Status> {
        self.record("Reverse", &request);
        Err(status_with_reason(
            Code::AlreadyExists,
            "IDEMPOTENCY_CONFLICT",
            "idempotency key reused",
        ))
    }

    async fn get_entry(
        &self,
        request: tonic::Request<pb::GetEntryRequest>,
    ) -> Result<tonic::Response<pb::Entry>, Status> {
        self.record("GetEntry", &request);
        Err(Status::not_found("entry not found"))
    }

    async fn get_account(
        &self,
        request: tonic::Request<pb::GetAccountRequest>,
    ) -> Result<tonic::Response<pb::Account>, Status> {
        self.record("GetAccount", &request);
        tokio::time::sleep(self.account_delay).await;
        let uid = request.into_inner().uid;
        let expiring = vec![pb::ExpiringPoints {
            points: 40,
            expires_at: Some(prost_types::Timestamp {
                seconds: 1_700_086_400,
                nanos: 0,
            }),
        }];
        Ok(tonic::Response::new(pb::Account {
            uid,
            balance: 100,
            expiring,
            held: 0,
            available: 100,
        }))
    }

    async fn list_accounts(
        &self,
        request: tonic::Request<pb::ListAccountsRequest>,
    ) -> Result<tonic::Response<pb::ListAccountsResponse>, Status> {
        self.record("ListAccounts", &request);
        Err(Status::unimplemented("not faked"))
    }

    async fn list_entries(
        &self,
        request: tonic::Request<pb::ListEntriesRequest>,
    ) -> Result<tonic::Response<pb::ListEntriesResponse>, Status> {
        self.record("ListEntries", &request);
        Ok(tonic::Response::new(pb::ListEntriesResponse {
            items: vec![],
            next_page_token: String::new(),
        }))
    }

    async fn batch(
        &self,
        request: tonic::Request<pb::BatchRequest>,
    ) -> Result<tonic::Response<pb::BatchResponse>, Status> {
        self.record("Batch", &request);
        let results = request
            .into_inner()
            .operations
            .into_iter()
            .enumerate()
            .map(|(index, operation)| match operation.op {
                Some(pb::batch_operation::Op::Earn(earn)) => {
                    let entry = entry_from_earn(&earn);
                    pb::BatchResult {
                        index: index as i32,
                        code: 0,
                        message: "OK".to_owned(),
                        reason: "OK".to_owned(),
                        data: Some(pb::MutationResponse {
                            balance: entry.balance_after,
                            entry: Some(entry),
                            replayed: false,
                        }),
                        hold_data: None,
                    }
                }
                _ => pb::BatchResult {
                    index: index as i32,
                    code: 42201,
                    message: "balance too low".to_owned(),
                    reason: "INSUFFICIENT_POINTS".to_owned(),
                    data: None,
                    hold_data: None,
                },
            })
            .collect();
        Ok(tonic::Response::new(pb::BatchResponse { results }))
    }

    async fn calculate(
        &self,
        request: tonic::Request<pb::CalculateRequest>,
    ) -> Result<tonic::Response<pb::CalculateResponse>, Status> {
        self.record("Calculate", &request);
        Err(Status::unimplemented("calculate"))
    }

    async fn create_hold(
        &self,
        request: tonic::Request<pb::CreateHoldRequest>,
    ) -> Result<tonic::Response<pb::HoldResponse>, Status> {
        self.record("CreateHold", &request);
        Err(Status::unimplemented("not faked"))
    }

    async fn get_hold(
        &self,
        request: tonic::Request<pb::GetHoldRequest>,
    ) -> Result<tonic::Response<pb::Hold>, Status> {
        self.record("GetHold", &request);
        Err(Status::unimplemented("not faked"))
    }

    async fn list_holds(
        &self,
        request: tonic::Request<pb::ListHoldsRequest>,
    ) -> Result<tonic::Response<pb::ListHoldsResponse>, Status> {
        self.record("ListHolds", &request);
        Err(Status::unimplemented("not faked"))
    }

    async fn capture_hold(
        &self,
        request: tonic::Request<pb::CaptureHoldRequest>,
    ) -> Result<tonic::Response<pb::HoldResponse>, Status> {
        self.record("CaptureHold", &request);
        Err(Status::unimplemented("not faked"))
    }

    async fn void_hold(
        &self,
        request: tonic::Request<pb::VoidHoldRequest>,
    ) -> Result<tonic::Response<pb::HoldResponse>, Status> {
        self.record("VoidHold", &request);
        Err(Status::unimplemented("not faked"))
    }
}

/// A running fake server: its URL, the fake (to read what it saw), and its health reporter.
pub struct FakeBackend {
    pub grpc_url: String,
    pub points: FakePoints,
    pub health: tonic_health::server::HealthReporter,
}

/// Starts `points` (plus `grpc.health.v1.Health`, SERVING or NOT_SERVING) on a free port.
pub async fn start_fake_backend(points: FakePoints, serving: bool) -> FakeBackend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = listener.local_addr().expect("local address");
    let (health, health_service) = tonic_health::server::health_reporter();
    if serving {
        health
            .set_serving::<PointsServiceServer<FakePoints>>()
            .await;
    } else {
        health
            .set_not_serving::<PointsServiceServer<FakePoints>>()
            .await;
    }
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(PointsServiceServer::new(points.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    FakeBackend {
        grpc_url: format!("http://{address}"),
        points,
        health,
    }
}
