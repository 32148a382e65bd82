//! Compiles `proto/nuc/v1/payloads.proto` with protox (no protoc needed) into prost messages.
//! nuc-api maps the same messages onto these types (`extern_path`), so the gRPC contract and
//! the signed payloads are one definition.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = "nuc/v1/payloads.proto";
    println!("cargo:rerun-if-changed={}", root.join(file).display());
    let fds = protox::compile([file], [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
