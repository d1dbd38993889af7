//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! Routes and their documentation are registered together (`utoipa_axum::routes!`), so the document cannot list a
//! route the router lacks or miss one it has. `document_conventions` then adds what every `/api/v1` operation shares
//! and would be noise on each handler: the `x-api-key` security requirement, the `x-merchant-id` / `x-request-id`
//! header parameters, the `x-request-id` response header, and one response per error status with an example of every
//! SPEC §8 code that status can carry.

use serde_json::json;
use utoipa::OpenApi;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayItems, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};

use crate::envelope::ErrorEnvelope;
use crate::error::{ErrorCode, INTERNAL_MESSAGE, TIMEOUT_MESSAGE};
use crate::routes::points::{AccountOrder, EntryKind};
use crate::routes::reports::Bucket;

/// The name of the security scheme of the `x-api-key` header.
pub const SECURITY_SCHEME: &str = "api_key";

/// The prefix of the routes that take a key and answer errors as documented here.
const API_PREFIX: &str = "/api/v1/";

const DESCRIPTION: &str = "\
REST gateway of the multi-tenant loyalty points platform. Every response body is the envelope \
`{\"code\": int, \"message\": string, \"data\": object|null}`; `code` 0 is success, any other value is a SPEC error code \
(listed with examples under each error response).

* **Authentication**: the `x-api-key` header. An admin key may act for a merchant with `x-merchant-id`.
* **Request ids**: send `x-request-id` (1–128 visible ASCII characters) or one is generated; it is returned in the \
`x-request-id` response header and recorded in the audit log.
* **Status codes**: 201 when a POST created something (merchant, API key, ledger entry — but 200 when an idempotent \
replay returned the stored result); 200 for everything else, including PUT. Errors use the HTTP status of SPEC §8. \
Bodies over the size limit (1 MiB by default), malformed JSON, a wrong content type, unknown fields and bad path or \
query values are 400 / 40001. A known path called with an undocumented method is 405 / 40001 with an `Allow` header. \
A request running past the gateway's timeout, and a points service that cannot be reached, are 503 / 50301.
* **Lists**: `page_size` (1–500, default 50) and the opaque `page_token` from the previous page's `next_page_token` \
(null on the last page).";

/// The static part of the document; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Points platform REST API", version = "1.0.0", description = DESCRIPTION),
    tags(
        (name = "merchants", description = "Platform administration (scope `admin`) and the calling key."),
        (name = "api-keys", description = "API keys (scope `keys:manage`)."),
        (name = "points", description = "The points ledger (scopes `points:read`, `points:write`)."),
        (name = "holds", description = "Holds: reserve points, then capture or void them (scopes `points:read`, `points:write`)."),
        (name = "rules", description = "Conversion rules (scopes `rules:read`, `rules:write`)."),
        (name = "audit", description = "The tamper-evident audit trail (scope `audit:read`)."),
        (name = "reports", description = "The points liability report (scope `points:read`)."),
        (name = "operations", description = "Health, readiness and metrics; no key."),
    ),
    components(schemas(ErrorEnvelope, EntryKind, AccountOrder, Bucket))
)]
pub struct ApiDoc;

/// One documented error status: its description and an example message for each code it can carry.
struct ErrorResponseDoc {
    status: u16,
    description: &'static str,
    examples: &'static [(ErrorCode, &'static str)],
}

/// Shorthand for the table below.
const fn doc(
    status: u16,
    description: &'static str,
    examples: &'static [(ErrorCode, &'static str)],
) -> ErrorResponseDoc {
    ErrorResponseDoc {
        status,
        description,
        examples,
    }
}

/// The error statuses every `/api/v1` operation documents, with the codes each can carry.
const ERROR_RESPONSES: &[ErrorResponseDoc] = &[
    doc(
        400,
        "Invalid argument: bad JSON, content type, field, size, path or query value, page token.",
        &[(
            ErrorCode::InvalidArgument,
            "invalid request body: missing field `uid`",
        )],
    ),
    doc(
        401,
        "Missing, malformed, unknown, expired or revoked API key.",
        &[(ErrorCode::Unauthenticated, "missing x-api-key")],
    ),
    doc(
        403,
        "The key lacks the scope, its merchant is suspended, or `x-merchant-id` names another merchant.",
        &[(
            ErrorCode::PermissionDenied,
            "the key lacks the scope points:write",
        )],
    ),
    doc(
        404,
        "The resource does not exist.",
        &[(ErrorCode::NotFound, "entry not found")],
    ),
    doc(
        409,
        "The resource exists already, or the idempotency key was used for a different request.",
        &[
            (
                ErrorCode::AlreadyExists,
                "a merchant with this slug exists already",
            ),
            (
                ErrorCode::IdempotencyConflict,
                "idempotency key reused with a different request",
            ),
        ],
    ),
    doc(
        422,
        "The request is valid but cannot be applied.",
        &[
            (ErrorCode::InsufficientPoints, "balance 30 is less than 50"),
            (
                ErrorCode::NoApplicableRule,
                "no rule default in effect for EUR",
            ),
            (ErrorCode::HoldNotActive, "hold 7 is captured"),
        ],
    ),
    doc(
        429,
        "Too many requests; retry later.",
        &[(ErrorCode::RateLimited, "rate limit exceeded, retry later")],
    ),
    doc(
        500,
        "Internal error; details are logged, never returned.",
        &[(ErrorCode::Internal, INTERNAL_MESSAGE)],
    ),
    doc(
        501,
        "The points service does not implement this method (version skew).",
        &[(ErrorCode::Internal, "not implemented by the points service")],
    ),
    doc(
        503,
        "The points service or its database is unavailable, or the request ran past the gateway's timeout; retry.",
        &[
            (ErrorCode::Unavailable, "database unavailable, retry later"),
            (ErrorCode::Unavailable, TIMEOUT_MESSAGE),
        ],
    ),
];

/// The whole document: [`ApiDoc`], the given paths, and the shared conventions.
pub(crate) fn finish(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    document_conventions(&mut openapi);
    bound_timestamps(&mut openapi);
    openapi
}

/// The timestamps the server accepts: RFC 3339 in the years 1970–9999 (protobuf timestamps before 1970 are refused
/// as a guard against mistaken inputs).
const TIMESTAMP_PATTERN: &str = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]\
     ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// Gives every `date-time` string a request can carry (parameters and request bodies, with the schemas they
/// reference) the accepted range as a pattern, so that the document states what the server enforces, in one place.
/// Responses keep plain `date-time`: a report's default start may fall before 1970.
fn bound_timestamps(openapi: &mut utoipa::openapi::OpenApi) {
    let mut request_schemas = std::collections::BTreeSet::new();
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && let Some(schema) = parameter.schema.as_mut()
                {
                    bound_timestamp(schema, &mut request_schemas);
                }
            }
            if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                for content in body.content.values_mut() {
                    if let RefOr::T(content) = content
                        && let Some(schema) = content.schema.as_mut()
                    {
                        bound_timestamp(schema, &mut request_schemas);
                    }
                }
            }
        }
    }
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    // Follow the references: a request body's schema may name others (a batch names its operations).
    let mut done = std::collections::BTreeSet::new();
    while let Some(name) = request_schemas
        .iter()
        .find(|name| !done.contains(*name))
        .cloned()
    {
        done.insert(name.clone());
        if let Some(schema) = components.schemas.get_mut(&name) {
            bound_timestamp(schema, &mut request_schemas);
        }
    }
}

/// Bounds the timestamps of one schema and notes the component schemas it references.
fn bound_timestamp(
    schema: &mut RefOr<Schema>,
    references: &mut std::collections::BTreeSet<String>,
) {
    let schema = match schema {
        RefOr::Ref(reference) => {
            if let Some(name) = reference.ref_location.strip_prefix("#/components/schemas/") {
                references.insert(name.to_owned());
            }
            return;
        }
        RefOr::T(schema) => schema,
    };
    let mut bound = |schema: &mut RefOr<Schema>| bound_timestamp(schema, references);
    match schema {
        Schema::Object(object) => {
            if object.format == Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)) {
                object.pattern = Some(TIMESTAMP_PATTERN.to_owned());
            }
            object.properties.values_mut().for_each(bound);
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                bound(items);
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(bound),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(bound),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(bound),
        _ => {}
    }
}

/// Adds the security scheme, shared header parameters, shared error responses and the `x-request-id` header.
fn document_conventions(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SECURITY_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            "An API key, e.g. `lp_live_…`.",
        ))),
    );
    for error in ERROR_RESPONSES {
        components.responses.insert(
            error_response_name(error.status),
            RefOr::T(error_response(error.description, error.examples)),
        );
    }

    for (path, item) in openapi.paths.paths.iter_mut() {
        let is_api = path.starts_with(API_PREFIX);
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            add_request_id(operation);
            if is_api {
                add_api_conventions(operation);
            }
        }
    }
}

fn add_api_conventions(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(
        SECURITY_SCHEME,
        Vec::<String>::new(),
    )]);
    let merchant_id = ParameterBuilder::new()
        .name("x-merchant-id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "With an admin key: act for this merchant (like Stripe's `Stripe-Account`).",
        ))
        .schema(Some(
            // A merchant id (a UUID, hyphenated); an empty header counts as absent.
            ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$",
            )),
        ))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(merchant_id));
    for error in ERROR_RESPONSES {
        let reference = Ref::from_response_name(error_response_name(error.status));
        operation
            .responses
            .responses
            .insert(error.status.to_string(), RefOr::Ref(reference));
    }
}

/// Documents the optional `x-request-id` request header and the `x-request-id` header of every inline response.
fn add_request_id(operation: &mut Operation) {
    let request_id = ParameterBuilder::new()
        .name("x-request-id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "1–128 visible ASCII characters; generated (a UUID) when absent or unusable.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(request_id));
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert("x-request-id".to_owned(), RefOr::T(request_id_header()));
        }
    }
}

fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("The request id (the client's, or a generated UUID)."))
        .build()
}

fn error_response_name(status: u16) -> String {
    format!("Error{status}")
}

fn error_response(description: &str, codes: &[(ErrorCode, &str)]) -> utoipa::openapi::Response {
    let examples = codes.iter().enumerate().map(|(index, (code, message))| {
        let example = ExampleBuilder::new()
            .summary(format!("{} {}", code.envelope_code(), code.reason()))
            .value(Some(
                json!({"code": code.envelope_code(), "message": message, "data": null}),
            ))
            .build();
        // Examples are keyed by name: a second example of one code gets its position appended.
        let repeated = codes[..index].iter().any(|(earlier, _)| earlier == code);
        let name = if repeated {
            format!("{}_{index}", code.reason())
        } else {
            code.reason().to_owned()
        };
        (name, example)
    });
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
        .examples_from_iter(examples)
        .build();
    ResponseBuilder::new()
        .description(description)
        .header("x-request-id", request_id_header())
        .content("application/json", content)
        .build()
}
