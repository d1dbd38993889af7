//! Compiles the gRPC client for `proto/points/v1` (the server's own contract) with protox: no `protoc`, no download.
//! The server traits are generated too, only so the gateway's tests can stand up a fake points service.

const PROTO_FILES: &[&str] = &[
    "../proto/points/v1/merchants.proto",
    "../proto/points/v1/api_keys.proto",
    "../proto/points/v1/points.proto",
    "../proto/points/v1/rules.proto",
    "../proto/points/v1/audit.proto",
    "../proto/points/v1/reports.proto",
    "../proto/points/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let descriptor_set = protox::compile(PROTO_FILES, ["../proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptor_set)?;
    Ok(())
}
