//! Ed25519 keys in a real SoftHSM2 token, and signatures over a digest computed outside it
//! (what a CRL too large to hand over whole is signed by).
//!
//! SoftHSM2 reads SOFTHSM2_CONF once per process, so each test makes a token directory of its
//! own and runs its scenario in a child process: this test binary again, with
//! `NUC_HSM_ED25519_SCENARIO` naming the scenario (see [`child_process_entry`]).

use std::path::PathBuf;
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use nuc_hsm::{Ed25519Key, Hsm, HsmError};
use ring::signature::{ED25519, UnparsedPublicKey};

const SCENARIO: &str = "NUC_HSM_ED25519_SCENARIO";
const TOKEN: &str = "nuc-ed25519-test";
const USER_PIN: &str = "test-user-pin";
const SO_PIN: &str = "test-so-pin";

fn module() -> PathBuf {
    std::env::var_os("NUC_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into())
}

/// Runs `scenario` in a child process over a fresh token in a directory of its own.
fn run(scenario: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a line of this run's own summary, which `make test` adds up.
    let text = text.replace("test result:", "(child) test result:");
    assert!(
        out.status.success(),
        "scenario {scenario} failed ({}):\n{text}",
        out.status
    );
    assert!(
        text.contains("1 passed"),
        "scenario {scenario} did not run:\n{text}"
    );
}

/// Entry point of the child process; a no-op in a normal test run.
#[test]
#[ignore = "the child process of the tests in this file (run by them with --ignored), not a test of its own"]
fn child_process_entry() {
    let Some(scenario) = std::env::var_os(SCENARIO) else {
        return;
    };
    Hsm::create_token(&module(), TOKEN, SO_PIN, USER_PIN).unwrap();
    let hsm = Hsm::open(&module(), TOKEN, USER_PIN).unwrap();
    match scenario.to_str().unwrap() {
        "generate_find_sign_verify" => generate_find_sign_verify(&hsm),
        "private_key_stays_inside" => private_key_stays_inside(&hsm),
        "missing_and_duplicate_labels" => missing_and_duplicate_labels(&hsm),
        "extractable_key_refused" => extractable_key_refused(&hsm),
        "curve_by_name" => curve_by_name(&hsm),
        "digest_signatures" => digest_signatures(&hsm),
        other => panic!("unknown scenario {other}"),
    }
}

fn verify(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(msg, sig)
        .is_ok()
}

fn generate_find_sign_verify(hsm: &Hsm) {
    let key = hsm.generate_ed25519("audit-checkpoint").unwrap();
    assert_eq!(key.label(), "audit-checkpoint");
    let found = hsm.find_ed25519("audit-checkpoint").unwrap();
    assert_eq!(found.label(), "audit-checkpoint");
    assert_eq!(found.public_key(), key.public_key());

    let msg = b"nuc-rk audit log\n42\nsome root hash\n";
    let sig = hsm.sign_ed25519(&key, msg).unwrap();
    assert!(verify(key.public_key(), msg, &sig));
    // Ed25519 is deterministic: the same message, the same signature, by either handle.
    assert_eq!(hsm.sign_ed25519(&found, msg).unwrap(), sig);
    // Another message, or a signature altered by one bit, does not verify.
    assert!(!verify(key.public_key(), b"nuc-rk audit log\n43\n", &sig));
    let mut bad = sig;
    bad[10] ^= 1;
    assert!(!verify(key.public_key(), msg, &bad));
    // The empty message and a long one are signed whole (pure Ed25519, no prehash).
    for msg in [&b""[..], &vec![0xa5; 100_000]] {
        let sig = hsm.sign_ed25519(&key, msg).unwrap();
        assert!(verify(key.public_key(), msg, &sig));
    }

    // A second key is another key; both are found by their labels.
    let other = hsm.generate_ed25519("audit-checkpoint-2").unwrap();
    assert_ne!(other.public_key(), key.public_key());
    assert_eq!(
        hsm.find_ed25519("audit-checkpoint").unwrap().public_key(),
        key.public_key()
    );
    let sig = hsm.sign_ed25519(&other, msg).unwrap();
    assert!(!verify(key.public_key(), msg, &sig));
    assert!(verify(other.public_key(), msg, &sig));

    // A label in use is refused.
    let err = hsm.generate_ed25519("audit-checkpoint").unwrap_err();
    assert!(matches!(err, HsmError::KeyMismatch { .. }), "{err}");

    // Signing works from many threads at once, each on a session of its own.
    std::thread::scope(|t| {
        for i in 0..8u8 {
            let key: &Ed25519Key = &key;
            t.spawn(move || {
                for j in 0..20u8 {
                    let msg = [i, j];
                    let sig = hsm.sign_ed25519(key, &msg).unwrap();
                    assert!(verify(key.public_key(), &msg, &sig));
                }
            });
        }
    });
}

/// A second view of the token through cryptoki directly, beside the Hsm (same process, so
/// the library is initialised already and the sessions are logged in).
fn raw_session() -> cryptoki::session::Session {
    let pkcs11 = Pkcs11::new(module()).unwrap();
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    pkcs11.open_rw_session(slot).unwrap()
}

fn private_key_stays_inside(hsm: &Hsm) {
    hsm.generate_ed25519("audit-checkpoint").unwrap();
    let s = raw_session();
    let private = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"audit-checkpoint".to_vec()),
        ])
        .unwrap();
    assert_eq!(private.len(), 1);
    let attrs = s
        .get_attributes(
            private[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Token,
                AttributeType::Sign,
            ],
        )
        .unwrap();
    for a in &attrs {
        match a {
            Attribute::Sensitive(b)
            | Attribute::NeverExtractable(b)
            | Attribute::AlwaysSensitive(b)
            | Attribute::Token(b)
            | Attribute::Sign(b) => assert!(*b, "{a:?}"),
            Attribute::Extractable(b) => assert!(!*b, "{a:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(attrs.len(), 6);
    // The private value cannot be read.
    let value = s
        .get_attributes(private[0], &[AttributeType::Value])
        .unwrap();
    assert!(
        !value.iter().any(|a| matches!(a, Attribute::Value(_))),
        "{value:?}"
    );
}

fn missing_and_duplicate_labels(hsm: &Hsm) {
    let err = hsm.find_ed25519("no-such-key").unwrap_err();
    assert!(
        matches!(err, HsmError::KeyNotFound(ref l) if l == "no-such-key"),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-key"), "{err}");

    // Two key pairs under one label, as another tool might leave them.
    let key = hsm.generate_ed25519("audit-checkpoint").unwrap();
    hsm.generate_ed25519("other").unwrap();
    let s = raw_session();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let other = s
            .find_objects(&[Attribute::Class(class), Attribute::Label(b"other".to_vec())])
            .unwrap();
        s.update_attributes(other[0], &[Attribute::Label(b"audit-checkpoint".to_vec())])
            .unwrap();
    }
    let err = hsm.find_ed25519("audit-checkpoint").unwrap_err();
    assert!(
        matches!(err, HsmError::AmbiguousLabel { ref label, count: 2 } if label == "audit-checkpoint"),
        "{err}"
    );
    // The key found before still signs.
    let sig = hsm.sign_ed25519(&key, b"m").unwrap();
    assert!(verify(key.public_key(), b"m", &sig));

    // A key of another kind under the label is not taken for an Ed25519 key.
    let ecdsa = hsm
        .generate_key("ecdsa", nuc_hsm::KeyAlgorithm::EcdsaP256)
        .unwrap();
    let err = hsm.find_ed25519(&ecdsa.label).unwrap_err();
    assert!(matches!(err, HsmError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("EC_EDWARDS"), "{err}");
}

fn extractable_key_refused(hsm: &Hsm) {
    // A key pair made with another tool, whose private half could be exported.
    let s = raw_session();
    s.generate_key_pair(
        &Mechanism::EccEdwardsKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(b"leaky".to_vec()),
            Attribute::EcParams(vec![0x06, 0x03, 0x2b, 0x65, 0x70]),
        ],
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Sign(true),
            Attribute::Label(b"leaky".to_vec()),
        ],
    )
    .unwrap();
    let err = hsm.find_ed25519("leaky").unwrap_err();
    assert!(matches!(err, HsmError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("could leave the token"), "{err}");
}

fn curve_by_name(hsm: &Hsm) {
    // A key pair made by another tool naming the curve as PKCS#11 3.0 first did: the
    // PrintableString "edwards25519" rather than the OID.
    let s = raw_session();
    s.generate_key_pair(
        &Mechanism::EccEdwardsKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(b"named".to_vec()),
            Attribute::EcParams(b"\x13\x0cedwards25519".to_vec()),
        ],
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(b"named".to_vec()),
        ],
    )
    .unwrap();
    let key = hsm.find_ed25519("named").unwrap();
    let sig = hsm.sign_ed25519(&key, b"m").unwrap();
    assert!(verify(key.public_key(), b"m", &sig));
}

/// A signature over a digest is the signature over the data: the same bytes for RSA
/// (deterministic), a signature that verifies over the data for ECDSA; a digest of the wrong
/// length is refused before the token sees it.
fn digest_signatures(hsm: &Hsm) {
    use nuc_hsm::KeyAlgorithm;
    use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1};
    use sha2::Digest;
    let data = b"a TBSCertList streamed through the hash".repeat(1000);
    let rsa = hsm
        .generate_key("digest-rsa", KeyAlgorithm::Rsa { bits: 2048 })
        .unwrap();
    assert_eq!(
        hsm.sign_digest(&rsa, &sha2::Sha256::digest(&data)).unwrap(),
        hsm.sign(&rsa, &data).unwrap()
    );
    for (label, alg, verifier, digest) in [
        (
            "digest-p256",
            KeyAlgorithm::EcdsaP256,
            &ECDSA_P256_SHA256_ASN1,
            sha2::Sha256::digest(&data).to_vec(),
        ),
        (
            "digest-p384",
            KeyAlgorithm::EcdsaP384,
            &ECDSA_P384_SHA384_ASN1,
            sha2::Sha384::digest(&data).to_vec(),
        ),
    ] {
        let key = hsm.generate_key(label, alg).unwrap();
        let sig = hsm.sign_digest(&key, &digest).unwrap();
        UnparsedPublicKey::new(verifier, key.spki.subject_public_key.raw_bytes())
            .verify(&data, &sig)
            .unwrap_or_else(|_| panic!("{label}: the signature over the digest does not verify"));
    }
    assert!(matches!(
        hsm.sign_digest(&rsa, &[0; 48]),
        Err(HsmError::BadDigest {
            len: 48,
            want: 32,
            ..
        })
    ));
}

#[test]
fn a_signature_over_a_digest_is_one_over_the_data() {
    run("digest_signatures");
}

#[test]
fn generate_find_sign_verify_in_softhsm2() {
    run("generate_find_sign_verify");
}

#[test]
fn private_key_is_sensitive_and_not_extractable() {
    run("private_key_stays_inside");
}

#[test]
fn find_refuses_missing_and_ambiguous_labels() {
    run("missing_and_duplicate_labels");
}

#[test]
fn find_takes_a_curve_named_by_string() {
    run("curve_by_name");
}

#[test]
fn find_refuses_an_extractable_key() {
    run("extractable_key_refused");
}
