//! End-to-end robustness tests over gRPC with mutual TLS: malformed protobuf on the wire,
//! garbage in the fields of an application, idempotency keys reused for another application,
//! notifications surviving a failing sink, and signed payloads of the wrong kind or by the
//! wrong kind of signer.

use std::time::{Duration, Instant};

use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use openssl::nid::Nid;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

fn decision_payload(op_serial: &str, number: &str, d: Decision) -> Vec<u8> {
    OperatorDecision {
        request_number: number.into(),
        decision: d as i32,
        refusal_reason: String::new(),
        operator_serial_hex: op_serial.into(),
        signed_at: now(),
        nonce: rand_suffix(),
        payload_type: "nuc.v1.OperatorDecision".into(),
    }
    .encode_to_vec()
}

fn signed(payload: &[u8], by: &Signer) -> Vec<u8> {
    nuc_cms::sign(payload, &by.cert_der, &by.key, false).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

/// Row counts of what a submission may change: (requests, audit_log, notifications,
/// idempotency_keys, certificates).
fn counts(svc: &Service) -> [i64; 5] {
    [
        "requests",
        "audit_log",
        "notifications",
        "idempotency_keys",
        "certificates",
    ]
    .map(|t| svc.home.count(&format!("SELECT COUNT(*) FROM {t}")))
}

// --- A codec that puts raw bytes on the wire and takes raw bytes off it.

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;
#[derive(Debug)]
struct RawEncoder;
#[derive(Debug)]
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

const SUBMIT: &str = "/nuc.v1.PortalService/SubmitApplication";

async fn raw_submit(ch: &Channel, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(SUBMIT),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Bytes that are not a SubmitApplicationRequest reach the service as raw gRPC frames: each is
/// refused, nothing is stored, and the service keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_refused_and_stores_nothing() {
    let svc = Service::start();
    let ch = svc
        .channel(Some(svc.system_identity(Some("portal"))))
        .await
        .unwrap();
    let mut portal = PortalServiceClient::new(ch.clone());
    let before = counts(&svc);

    // Random bytes that do not decode (retried until prost itself refuses them).
    let garbage = loop {
        let g = random_bytes(256);
        if SubmitApplicationRequest::decode(g.as_slice()).is_err() {
            break g;
        }
    };
    // A valid message cut in the middle of its AUTH CSR.
    let whole = application("truncated").0.encode_to_vec();
    let truncated = whole[..whole.len() / 2].to_vec();
    assert!(SubmitApplicationRequest::decode(truncated.as_slice()).is_err());
    // Field 2 (iin, a string: wire type 2) sent as a varint (wire type 0), in an otherwise
    // valid message.
    let mut wrong_wire_type = vec![0x0a, 0x03, b'k', b'e', b'y', 0x10, 0x2a];
    wrong_wire_type.extend_from_slice(
        &SubmitApplicationRequest {
            idempotency_key: String::new(),
            iin: String::new(),
            ..application("wire").0
        }
        .encode_to_vec(),
    );
    assert!(SubmitApplicationRequest::decode(wrong_wire_type.as_slice()).is_err());
    // A tag of field number 0 (never valid).
    let field_zero = vec![0x00, 0x01];
    assert!(SubmitApplicationRequest::decode(field_zero.as_slice()).is_err());

    for (what, body) in [
        ("random garbage", garbage),
        ("a truncated message", truncated),
        ("a wrong wire type for field 2", wrong_wire_type),
        ("field number 0", field_zero),
    ] {
        let e = raw_submit(&ch, body)
            .await
            .expect_err(&format!("{what} was accepted"));
        assert_ne!(e.code(), Code::Ok, "{what}: {e:?}");
        // tonic-prost maps a protobuf decode error to INTERNAL (as gRPC's status code guide
        // says for parse errors); the service never sees the call.
        assert_eq!(
            e.code(),
            Code::Internal,
            "{what}: a decode error, got {e:?}"
        );
        assert!(
            e.message().to_lowercase().contains("decode"),
            "{what}: {e:?}"
        );
        assert_eq!(counts(&svc), before, "{what} left rows behind");
        // The service still answers a valid call, on the same connection.
        let e = portal
            .get_request_status(GetRequestStatusRequest {
                request_number: "NUC-0000-0000-0".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "REQUEST_NOT_FOUND", "{what}: then {e:?}");
    }

    // The same raw path with a valid message works: the codec is not what failed above.
    let ok = raw_submit(&ch, application("valid").0.encode_to_vec())
        .await
        .expect("a valid message through the raw codec");
    let ok = SubmitApplicationResponse::decode(ok.as_slice()).unwrap();
    assert_eq!(ok.state, RequestState::Registered as i32);
    assert_eq!(svc.home.count("SELECT COUNT(*) FROM requests"), 1);
}

/// Garbage in the fields: refused with a code and a message naming the field; nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_fields_is_refused_naming_the_field() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let before = counts(&svc);

    let (good, _, _) = application("good");
    let pem_certificate_label = {
        let der = good.auth_csr.clone();
        let b64 = openssl::base64::encode_block(&der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem.into_bytes()
    };
    type Edit = Box<dyn Fn(&mut SubmitApplicationRequest)>;
    let cases: Vec<(&str, &str, &str, Edit)> = vec![
        (
            "empty AUTH CSR",
            "auth_csr",
            "KEY_REJECTED",
            Box::new(|a| a.auth_csr = vec![]),
        ),
        (
            "empty SIGN CSR",
            "sign_csr",
            "KEY_REJECTED",
            Box::new(|a| a.sign_csr = vec![]),
        ),
        (
            "1 MiB of random bytes as the SIGN CSR",
            "sign_csr",
            "KEY_REJECTED",
            Box::new(|a| a.sign_csr = random_bytes(1 << 20)),
        ),
        (
            "1 MiB of random bytes as the AUTH CSR",
            "auth_csr",
            "KEY_REJECTED",
            Box::new(|a| a.auth_csr = random_bytes(1 << 20)),
        ),
        (
            "a PEM labelled CERTIFICATE as the AUTH CSR",
            "auth_csr",
            "KEY_REJECTED",
            Box::new(move |a| a.auth_csr = pem_certificate_label.clone()),
        ),
        (
            "an e-mail that is not an address",
            "email",
            "INVALID_ARGUMENT",
            Box::new(|a| a.email = "not an address".into()),
        ),
        (
            "an e-mail without a domain",
            "email",
            "INVALID_ARGUMENT",
            Box::new(|a| a.email = "person1@".into()),
        ),
        (
            "an empty e-mail",
            "email",
            "INVALID_ARGUMENT",
            Box::new(|a| a.email = String::new()),
        ),
        (
            "an idempotency key of 200 characters",
            "idempotency_key",
            "INVALID_ARGUMENT",
            Box::new(|a| a.idempotency_key = "k".repeat(200)),
        ),
    ];
    for (what, field, want, edit) in cases {
        let mut app = good.clone();
        edit(&mut app);
        let e = portal
            .submit_application(app)
            .await
            .expect_err(&format!("{what} was accepted"));
        assert_eq!(reason(&e), want, "{what}: {e:?}");
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(
            e.message().contains(field),
            "{what}: the message names {field}: {}",
            e.message()
        );
        assert_eq!(counts(&svc), before, "{what} left rows behind");
    }

    // And the untouched application is fine.
    portal.submit_application(good).await.expect("valid");
    assert_eq!(svc.home.count("SELECT COUNT(*) FROM requests"), 1);
}

/// (iin, email, auth_csr, sign_csr, state) of a request.
fn request_row(svc: &Service, number: &str) -> (String, String, Vec<u8>, Vec<u8>, String) {
    svc.home.db().row(
        "SELECT iin, email, auth_csr, sign_csr, state FROM requests WHERE number = ?1",
        &[&number],
    )
}

/// The same idempotency key with another application: refused naming idempotency_key; the
/// request of the first use is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_application_is_refused() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let (original, _, _) = application("same-key");
    let number = portal
        .submit_application(original.clone())
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let stored = request_row(&svc, &number);
    let before = counts(&svc);

    let (other_keys, _, _) = application("same-key");
    type Edit = Box<dyn Fn(&mut SubmitApplicationRequest)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "other CSRs",
            Box::new(move |a| {
                a.auth_csr = other_keys.auth_csr.clone();
                a.sign_csr = other_keys.sign_csr.clone();
            }),
        ),
        (
            "another SIGN CSR",
            Box::new(|a| a.sign_csr = csr_der(KeySpec::Ec(Nid::X9_62_PRIME256V1)).0),
        ),
        ("another IIN", Box::new(|a| a.iin = "921002310220".into())),
        (
            "a BIN (the same person as an employee)",
            Box::new(|a| a.bin = "120340240006".into()),
        ),
    ];
    for (what, edit) in cases {
        let mut app = original.clone();
        edit(&mut app);
        let e = portal
            .submit_application(app)
            .await
            .expect_err(&format!("{what} under the same key was accepted"));
        assert_eq!(reason(&e), "INVALID_ARGUMENT", "{what}: {e:?}");
        assert_eq!(e.code(), Code::InvalidArgument, "{what}");
        assert!(
            e.message().contains("idempotency_key"),
            "{what}: {}",
            e.message()
        );
        assert_eq!(counts(&svc), before, "{what}");
        assert_eq!(request_row(&svc, &number), stored, "{what}");
    }
    // The original itself, again: the same request.
    let again = portal
        .submit_application(original)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.request_number, number);
    assert_eq!(counts(&svc), before);
}

/// An application differing only in its e-mail is another application too: answering with the
/// first request would send its notifications to an address the second caller never gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_with_another_email_is_refused() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let (original, _, _) = application("same-key-email");
    let number = portal
        .submit_application(original.clone())
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let stored = request_row(&svc, &number);
    let before = counts(&svc);
    let r = portal
        .submit_application(SubmitApplicationRequest {
            email: "someone.else@mail.example.kz".into(),
            ..original
        })
        .await;
    let e = r.expect_err("another e-mail under the same key was accepted");
    assert_eq!(reason(&e), "INVALID_ARGUMENT", "{e:?}");
    assert!(e.message().contains("idempotency_key"), "{}", e.message());
    assert_eq!(counts(&svc), before);
    assert_eq!(request_row(&svc, &number), stored);
}

/// Two different applications sent at the same moment under one idempotency key: exactly one
/// is registered, and the other is refused (never answered with the first one's number).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_different_applications_under_one_key() {
    let svc = Service::start();
    let portal = svc.portal().await;
    for round in 0..8 {
        let key = format!("race-{round}");
        let (a, _, _) = application(&key);
        let (b, _, _) = application(&key);
        let (mut pa, mut pb) = (portal.clone(), portal.clone());
        let (ra, rb) = tokio::join!(pa.submit_application(a), pb.submit_application(b));
        let oks = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            oks,
            1,
            "round {round}: {:?} / {:?}",
            ra.as_ref().map(|r| &r.get_ref().request_number),
            rb.as_ref().map(|r| &r.get_ref().request_number)
        );
        let refused = ra.err().or(rb.err()).unwrap();
        assert_eq!(reason(&refused), "INVALID_ARGUMENT", "{refused:?}");
    }
}

/// A notification survives a sink that fails: it stays queued, its attempts and last error are
/// recorded, and it is delivered once the sink works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_survive_a_failing_sink() {
    let mut svc = Service::start();
    // Retried every second while the sink fails (the default waits 30 s, then longer).
    let config = svc.home.home().join("nuc.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("retry_base_secs = 30\nretry_max_secs = 3600"),
        "{text}"
    );
    std::fs::write(
        &config,
        text.replace(
            "retry_base_secs = 30\nretry_max_secs = 3600",
            "retry_base_secs = 1\nretry_max_secs = 1",
        ),
    )
    .unwrap();
    svc.restart(&[]);
    let outbox = svc.home.home().join("outbox");
    if outbox.is_dir() {
        std::fs::remove_dir_all(&outbox).unwrap();
    }
    std::fs::write(&outbox, b"a file where the outbox directory should be").unwrap();

    let mut portal = svc.portal().await;
    let number = portal
        .submit_application(application("mail").0)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let row = || -> (Option<i64>, i64, Option<String>) {
        svc.home.db().row(
            "SELECT sent_at, attempts, last_error FROM notifications WHERE request_number = ?1 AND kind = 'application'",
            &[&number],
        )
    };
    // The sender passes every 2 s: wait for at least two failed attempts.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (sent_at, attempts, last_error) = row();
        assert_eq!(sent_at, None, "delivered although the outbox is a file");
        if attempts >= 2 {
            let err = last_error.expect("the last error is recorded");
            assert!(err.contains("outbox"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "attempts stayed at {attempts}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let attempts_while_failing = row().1;
    assert_eq!(
        svc.home.count("SELECT COUNT(*) FROM notifications"),
        1,
        "the message is kept, not duplicated"
    );

    // The sink works again: delivered within ~10 s.
    std::fs::remove_file(&outbox).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent_at = loop {
        if let (Some(t), _, _) = row() {
            break t;
        }
        assert!(Instant::now() < deadline, "not delivered after the fix");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!((sent_at - now()).abs() < 60);
    let (_, attempts, last_error) = row();
    assert!(attempts > attempts_while_failing, "{attempts}");
    assert_eq!(last_error, None, "the error is cleared on delivery");
    let mails: Vec<(String, String)> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (name, text) = &mails[0];
    assert!(name.ends_with("-application.eml"), "{name}");
    assert!(text.contains(&number), "{text}");
    assert!(text.contains(&format!("To: {EMAIL}")), "{text}");
}

/// An applicant who went through F1: their SIGN certificate and key.
async fn issued_applicant(
    portal: &mut PortalServiceClient<Channel>,
    ws: &mut nuc_api::v1::operator_service_client::OperatorServiceClient<Channel>,
    op: &Signer,
) -> Signer {
    let (app, _, sign_key) = application("applicant");
    let number = portal
        .submit_application(app)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let decided = ws
        .decide_application(DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: signed(
                &decision_payload(&op.serial, &number, Decision::Confirm),
                op,
            ),
        })
        .await
        .expect("issued")
        .into_inner();
    let c = &decided.certificates[1];
    assert_eq!(c.profile, "individual-sign");
    Signer {
        serial: c.serial_hex.clone(),
        cert_der: c.der.clone(),
        key: sign_key,
    }
}

/// Decision counts: (requests still registered, certificates, revocations, used_payloads,
/// audit_log).
fn decision_counts(svc: &Service, number: &str) -> [i64; 5] {
    [
        format!("SELECT COUNT(*) FROM requests WHERE number = '{number}' AND state = 'registered'"),
        "SELECT COUNT(*) FROM certificates".into(),
        "SELECT COUNT(*) FROM revocations".into(),
        "SELECT COUNT(*) FROM used_payloads".into(),
        "SELECT COUNT(*) FROM audit_log".into(),
    ]
    .map(|q| svc.home.count(&q))
}

/// DecideApplication with a CMS whose content is not an OperatorDecision, or whose signer is
/// not an operator: OPERATOR_SIGNATURE_INVALID, nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_of_the_wrong_kind_or_by_a_non_operator_is_refused() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let applicant = issued_applicant(&mut portal, &mut ws, &op).await;
    let number = portal
        .submit_application(application("to-decide").0)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let before = decision_counts(&svc, &number);
    assert_eq!(before[0], 1);
    let decide = |session: &str, cms: Vec<u8>| DecideApplicationRequest {
        request_number: number.clone(),
        operator_serial_hex: session.into(),
        signed_decision: cms,
    };

    let revocation_order = RevocationOrder {
        serial_hex: applicant.serial.clone(),
        reason: RevocationReason::KeyCompromise as i32,
        iin: IIN.into(),
        operator_serial_hex: op.serial.clone(),
        signed_at: now(),
        nonce: rand_suffix(),
        all: false,
        spare_signer: false,
        payload_type: "nuc.v1.RevocationOrder".into(),
    }
    .encode_to_vec();
    let not_protobuf = b"\xff\xff\xff\xff this is not a protobuf message".to_vec();
    let wrong: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "a RevocationOrder signed by the operator",
            op.serial.clone(),
            signed(&revocation_order, &op),
        ),
        (
            "bytes that are no protobuf, signed by the operator",
            op.serial.clone(),
            signed(&not_protobuf, &op),
        ),
        (
            "an empty content, signed by the operator",
            op.serial.clone(),
            signed(b"", &op),
        ),
        (
            "a decision signed by an applicant's certificate, as its own session",
            applicant.serial.clone(),
            signed(
                &decision_payload(&applicant.serial, &number, Decision::Confirm),
                &applicant,
            ),
        ),
        (
            "a decision signed by an applicant's certificate, in the operator's session",
            op.serial.clone(),
            signed(
                &decision_payload(&op.serial, &number, Decision::Confirm),
                &applicant,
            ),
        ),
    ];
    for (what, session, cms) in wrong {
        let e = ws
            .decide_application(decide(&session, cms))
            .await
            .expect_err(&format!("{what} was accepted"));
        assert_eq!(reason(&e), "OPERATOR_SIGNATURE_INVALID", "{what}: {e:?}");
        assert_eq!(e.code(), Code::PermissionDenied, "{what}");
        assert_eq!(decision_counts(&svc, &number), before, "{what}");
    }

    // The operator's own decision is still accepted: none of the above consumed anything.
    let ok = ws
        .decide_application(decide(
            &op.serial,
            signed(
                &decision_payload(&op.serial, &number, Decision::Confirm),
                &op,
            ),
        ))
        .await
        .expect("the operator's decision")
        .into_inner();
    assert_eq!(ok.state, RequestState::Issued as i32);
}

/// A RevocationOrder and an OperatorDecision have the same field numbers and wire types, and the
/// CMS content type is id-data for both: a revocation order whose serial_hex is a request number
/// and whose reason is keyCompromise (1) decodes as "confirm this request". It must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_revocation_order_never_confirms_an_application() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let number = portal
        .submit_application(application("confused").0)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let before = decision_counts(&svc, &number);
    let order = RevocationOrder {
        serial_hex: number.clone(),
        reason: RevocationReason::KeyCompromise as i32,
        iin: String::new(),
        operator_serial_hex: op.serial.clone(),
        signed_at: now(),
        nonce: rand_suffix(),
        all: false,
        spare_signer: false,
        payload_type: "nuc.v1.RevocationOrder".into(),
    }
    .encode_to_vec();
    let r = ws
        .decide_application(DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: signed(&order, &op),
        })
        .await;
    let e = r.map(|r| r.into_inner().state).expect_err(
        "a signed RevocationOrder was taken for an OperatorDecision (state of the request)",
    );
    assert_eq!(reason(&e), "OPERATOR_SIGNATURE_INVALID", "{e:?}");
    assert_eq!(decision_counts(&svc, &number), before);
}
