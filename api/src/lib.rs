//! The contract of the points platform, shared by the gRPC server (`points`) and the REST gateway
//! (`points-gateway`), so that each is written down once:
//!
//! * [`pb`]: the `points.v1` protos (and `points.gateway.v1`), compiled once for both;
//! * [`ErrorCode`]: the SPEC §8 table — envelope code, HTTP status, gRPC code and `ErrorInfo.reason` of each row —
//!   and [`ErrorCode::of_status`], the one rule for reading a gRPC status back into a row;
//! * [`headers`]: the names of the request and response headers (gRPC metadata keys) both sides use;
//! * [`Scope`]: the names of the key scopes (SPEC §4);
//! * [`metadata`]: metadata objects as JSON and as `google.protobuf.Struct`.

pub mod error;
pub mod headers;
pub mod metadata;
pub mod scope;

pub use error::{ERROR_DOMAIN, ErrorCode};
pub use scope::Scope;

/// Code generated from `proto/points/v1/*.proto` (messages, clients and server traits).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("points.v1");

    /// The encoded file descriptor set of the protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/points_descriptor.bin"));

    /// `points.gateway.v1`: what the REST gateway reports to the service (its own refusals).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod gateway {
        tonic::include_proto!("points.gateway.v1");
    }
}
