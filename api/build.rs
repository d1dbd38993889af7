//! Compiles `proto/points/**/*.proto` once for the whole workspace with protox (pure Rust: no `protoc` binary,
//! nothing downloaded), server and client code both, and writes the file descriptor set server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO_FILES: &[&str] = &[
    "points/v1/merchants.proto",
    "points/v1/api_keys.proto",
    "points/v1/points.proto",
    "points/v1/rules.proto",
    "points/v1/audit.proto",
    "points/v1/reports.proto",
    "points/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let descriptor_set = protox::compile(PROTO_FILES, ["../proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("points_descriptor.bin"),
        descriptor_set.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptor_set)?;
    Ok(())
}
