//! Compiles proto/nuc/v1 with protox (pure Rust: no protoc needed on the machine) and
//! generates the tonic services; the encoded descriptor set is kept for gRPC reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "nuc/v1/payloads.proto",
        "nuc/v1/common.proto",
        "nuc/v1/portal.proto",
        "nuc/v1/operator.proto",
        "nuc/v1/admin.proto",
        "nuc/v1/publisher.proto",
        "nuc/v1/verify.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("nuc_descriptor.bin"), fds.encode_to_vec())?;
    // The signed payloads are nuc-payloads' types: one Rust type per message, whichever crate
    // decodes it.
    let mut config = tonic_prost_build::configure();
    for message in [
        "RevocationReason",
        "OperatorDecision",
        "RevocationOrder",
        "RenewalApplication",
    ] {
        config = config.extern_path(
            format!(".nuc.v1.{message}"),
            format!("::nuc_payloads::v1::{message}"),
        );
    }
    config
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
