//! gRPC server reflection as the tools people use speak it: the service answers both
//! `grpc.reflection.v1` (grpcurl, grpcui) and `grpc.reflection.v1alpha` (Python's
//! grpcio-reflection, older tools), over mutual TLS, with the same services in both.

use std::path::Path;
use std::process::Command;

use nuc_e2e::api::Service;
use nuc_e2e::{Run, python};

/// Every service of the gRPC port, as reflection lists them (sorted).
const SERVICES: [&str; 8] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "nuc.v1.AdminService",
    "nuc.v1.OperatorService",
    "nuc.v1.PortalService",
    "nuc.v1.PublisherService",
    "nuc.v1.VerificationService",
];

fn expected() -> Vec<String> {
    SERVICES.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_reflection_v1alpha_lists_the_services_over_mtls() {
    let svc = Service::start();
    let (cert, key) = svc.system_identity(Some("verifier"));
    let cert_path = svc.home.path("reflection-client.pem");
    let key_path = svc.home.path("reflection-client.key");
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reflection_client.py");
    let r: Run = Command::new(python())
        .arg(script)
        .arg(&svc.grpc)
        .arg(svc.home.root_pem())
        .arg(&cert_path)
        .arg(&key_path)
        .output()
        .expect("the python of .venv with grpcio and grpcio-reflection (make deps)")
        .into();
    assert_eq!(
        r.code,
        Some(0),
        "grpcio-reflection (v1alpha) failed: {}{}",
        r.stdout,
        r.stderr
    );
    let listed: Vec<String> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("service "))
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, expected(), "{}", r.stdout);
    // Each listed service resolves to its descriptor through reflection (the file and its
    // dependencies): its methods are there.
    for (service, method) in [
        ("nuc.v1.PortalService", "SubmitApplication"),
        ("grpc.health.v1.Health", "Check"),
        (
            "grpc.reflection.v1alpha.ServerReflection",
            "ServerReflectionInfo",
        ),
    ] {
        let line = format!("method {service}/{method}");
        assert!(
            r.stdout.lines().any(|l| l == line),
            "{line} not in:\n{}",
            r.stdout
        );
    }
    for service in expected() {
        let prefix = format!("method {service}/");
        assert!(
            r.stdout.lines().any(|l| l.starts_with(&prefix)),
            "no method of {service} resolved:\n{}",
            r.stdout
        );
    }

    // v1 (tonic's client, as grpcurl speaks it) lists the same services.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let ch = svc.channel(Some((cert, key))).await.unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected v1 reflection answer {answer:?}")
    };
    let mut v1: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    v1.sort();
    assert_eq!(v1, expected());
}
