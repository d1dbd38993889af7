//! placeholder
pub mod pb { tonic::include_proto!("points.v1"); }
