//! Compiles proto/bursar/v1/*.proto without a system protoc (protox) and writes a
//! file descriptor set for gRPC server reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/bursar/v1/pricing.proto",
        "proto/bursar/v1/placement.proto",
        "proto/bursar/v1/spend.proto",
        "proto/bursar/v1/budgets.proto",
        "proto/bursar/v1/fleet.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // `sqlx::migrate!` embeds migrations/: a new file there must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("bursar_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
