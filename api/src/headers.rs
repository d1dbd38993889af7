//! Header names (gRPC metadata keys on the server side, HTTP headers on the gateway's), lowercase as HTTP/2 sends
//! them.

/// The caller's API key.
pub const API_KEY: &str = "x-api-key";
/// The merchant an admin key acts for (SPEC §9), or a merchant key's own id.
pub const MERCHANT_ID: &str = "x-merchant-id";
/// The request id: the caller's when it looks like one, else generated; echoed on every response.
pub const REQUEST_ID: &str = "x-request-id";
/// Set by the REST gateway on the calls it makes: `rest`. Believed only with [`GATEWAY_TOKEN`].
pub const TRANSPORT: &str = "x-points-transport";
/// The address of the gateway's client. Believed only from a loopback peer.
pub const CLIENT_ADDR: &str = "x-points-client-addr";
/// The gateway's proof that a call is its own: the server's gateway token (`POINTS_GATEWAY_TOKEN`, or one the
/// server draws at start for its in-process gateway). A client cannot claim the REST transport without it.
pub const GATEWAY_TOKEN: &str = "x-points-gateway-token";
/// The IETF `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
/// The IETF `RateLimit` header: what is left of the policy's quota.
pub const RATE_LIMIT: &str = "ratelimit";
/// Seconds a limited client should wait.
pub const RETRY_AFTER: &str = "retry-after";
