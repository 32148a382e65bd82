//! Against an outside judge: the OpenSSL command line tool (`openssl cms`) verifies what
//! `sign_with` produces, and `verify` accepts (or refuses, with the right variant) what
//! `openssl cms -sign` produces.

mod common;

use std::path::Path;

use common::*;
use nuc_cms::{CmsError, DigestAlgorithm, SignatureAlgorithm, sign_with, verify};
use openssl::hash::MessageDigest;

/// `sign_with` with an OpenSSL key in memory (the token path, with the key at hand).
fn sign_with_key(id: &Identity, alg: SignatureAlgorithm, detached: bool) -> Vec<u8> {
    let md = match alg.digest() {
        DigestAlgorithm::Sha256 => MessageDigest::sha256(),
        DigestAlgorithm::Sha384 => MessageDigest::sha384(),
        DigestAlgorithm::Sha512 => MessageDigest::sha512(),
    };
    let signer = |data: &[u8]| -> Result<Vec<u8>, CmsError> {
        let mut s = openssl::sign::Signer::new(md, &id.key).unwrap();
        s.update(data).unwrap();
        Ok(s.sign_to_vec().unwrap())
    };
    sign_with(PAYLOAD, &id.cert_der(), &signer, alg, detached).unwrap()
}

/// `openssl cms -verify -noverify` on `cms` (detached: with `-content payload.bin`); the
/// content it outputs when it accepts.
fn openssl_verify(dir: &Path, cms: &[u8], detached: bool) -> Result<Vec<u8>, String> {
    std::fs::write(dir.join("in.der"), cms).unwrap();
    std::fs::write(dir.join("payload.bin"), PAYLOAD).unwrap();
    let _ = std::fs::remove_file(dir.join("out.bin"));
    let mut args = vec![
        "cms",
        "-verify",
        "-noverify",
        "-inform",
        "DER",
        "-in",
        "in.der",
        "-binary",
        "-out",
        "out.bin",
    ];
    if detached {
        args.extend(["-content", "payload.bin"]);
    }
    let (ok, _, stderr) = openssl(dir, &args);
    if ok {
        Ok(std::fs::read(dir.join("out.bin")).unwrap())
    } else {
        Err(stderr)
    }
}

#[test]
fn openssl_cli_verifies_what_sign_with_produces() {
    use SignatureAlgorithm::*;
    let dir = tempfile::tempdir().unwrap();
    for (kind, algs) in [
        (
            KeyType::Rsa2048,
            [RsaPkcs1Sha256, RsaPkcs1Sha384, RsaPkcs1Sha512],
        ),
        (KeyType::P256, [EcdsaSha256, EcdsaSha384, EcdsaSha512]),
        (KeyType::P384, [EcdsaSha256, EcdsaSha384, EcdsaSha512]),
    ] {
        let id = identity(kind);
        for alg in algs {
            for detached in [false, true] {
                let cms = sign_with_key(&id, alg, detached);
                let out = openssl_verify(dir.path(), &cms, detached).unwrap_or_else(|e| {
                    panic!("openssl refused {kind:?} {alg:?} detached={detached}: {e}")
                });
                assert_eq!(out, PAYLOAD);
            }
        }
        // `sign` (SHA-256, the OpenSSL key) is the same path: the judge accepts it too.
        let cms = nuc_cms::sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
        assert_eq!(openssl_verify(dir.path(), &cms, false).unwrap(), PAYLOAD);
    }
}

/// The judge can say no: a flipped signature byte is refused by `openssl cms -verify` too.
#[test]
fn openssl_cli_refuses_a_flipped_signature() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(KeyType::Rsa2048);
    let cms = sign_with_key(&id, SignatureAlgorithm::RsaPkcs1Sha256, false);
    let sig = signature_of(&cms);
    let at = find(&cms, &sig) + sig.len() - 1;
    assert!(openssl_verify(dir.path(), &flipped(&cms, at), false).is_err());
    let at = find(&cms, PAYLOAD);
    assert!(openssl_verify(dir.path(), &flipped(&cms, at), false).is_err());
}

/// `openssl cms -sign -binary -nodetach -outform DER` for `id` (written as `signer`), with
/// extra arguments.
fn openssl_sign(dir: &Path, id: &Identity, extra: &[&str]) -> Vec<u8> {
    id.write(dir, "signer");
    std::fs::write(dir.join("payload.bin"), PAYLOAD).unwrap();
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-outform",
        "DER",
        "-in",
        "payload.bin",
        "-out",
        "signed.der",
        "-signer",
        "signer.pem",
        "-inkey",
        "signer.key",
    ];
    args.extend(extra);
    openssl_ok(dir, &args);
    std::fs::read(dir.join("signed.der")).unwrap()
}

#[test]
fn verify_accepts_what_openssl_cli_produces() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        for (md, digest) in [
            ("sha256", DigestAlgorithm::Sha256),
            ("sha384", DigestAlgorithm::Sha384),
            ("sha512", DigestAlgorithm::Sha512),
        ] {
            // Attached, signer named by issuerAndSerialNumber.
            let cms = openssl_sign(dir.path(), &id, &["-nodetach", "-md", md]);
            let v = verify(&cms, None).unwrap_or_else(|e| panic!("{kind:?} {md}: {e}"));
            assert_eq!(v.content, PAYLOAD);
            assert_eq!(v.signer_cert_der, id.cert_der());
            assert_eq!(v.digest_algorithm, digest);
            let t = v.signing_time.expect("openssl signs signingTime");
            assert!((t - now_unix()).abs() < 300);

            // Attached, signer named by subjectKeyIdentifier.
            let cms = openssl_sign(dir.path(), &id, &["-nodetach", "-keyid", "-md", md]);
            let v = verify(&cms, None).unwrap_or_else(|e| panic!("{kind:?} {md} keyid: {e}"));
            assert_eq!(v.content, PAYLOAD);
            assert_eq!(v.signer_cert_der, id.cert_der());

            // Detached.
            let cms = openssl_sign(dir.path(), &id, &["-md", md]);
            let v = verify(&cms, Some(PAYLOAD))
                .unwrap_or_else(|e| panic!("{kind:?} {md} detached: {e}"));
            assert_eq!(v.content, PAYLOAD);
            assert!(matches!(
                verify(&cms, Some(b"another request")),
                Err(CmsError::DigestMismatch)
            ));
        }
    }
}

#[test]
fn openssl_output_with_two_signers_is_multiple_signers() {
    let dir = tempfile::tempdir().unwrap();
    let a = identity(KeyType::P256);
    let b = identity(KeyType::Rsa2048);
    b.write(dir.path(), "second");
    let cms = openssl_sign(
        dir.path(),
        &a,
        &["-nodetach", "-signer", "second.pem", "-inkey", "second.key"],
    );
    let err = verify(&cms, None).unwrap_err();
    assert!(matches!(err, CmsError::MultipleSigners), "{err:?}");
}

#[test]
fn openssl_output_without_certificates_is_no_signer_certificate() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        let cms = openssl_sign(dir.path(), &id, &["-nodetach", "-nocerts"]);
        let err = verify(&cms, None).unwrap_err();
        assert!(
            matches!(err, CmsError::NoSignerCertificate),
            "{kind:?}: {err:?}"
        );
    }
}

#[test]
fn openssl_output_carrying_only_another_certificate_is_no_signer_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(KeyType::P256);
    let other = certificate(key(KeyType::P256), "Someone else", 2, None);
    other.write(dir.path(), "other");
    let cms = openssl_sign(
        dir.path(),
        &id,
        &["-nodetach", "-nocerts", "-certfile", "other.pem"],
    );
    let err = verify(&cms, None).unwrap_err();
    assert!(matches!(err, CmsError::NoSignerCertificate), "{err:?}");
}

#[test]
fn openssl_output_without_signed_attributes_is_attribute_missing() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(KeyType::Rsa2048);
    let cms = openssl_sign(dir.path(), &id, &["-nodetach", "-noattr"]);
    let err = verify(&cms, None).unwrap_err();
    assert!(
        matches!(err, CmsError::AttributeMissing("signedAttrs")),
        "{err:?}"
    );
}

#[test]
fn openssl_output_with_sha1_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(KeyType::Rsa2048);
    let cms = openssl_sign(dir.path(), &id, &["-nodetach", "-md", "sha1"]);
    let err = verify(&cms, None).unwrap_err();
    assert!(matches!(err, CmsError::UnsupportedAlgorithm(_)), "{err:?}");
}

#[test]
fn openssl_output_signed_with_rsa_1024_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let id = certificate(rsa_key(1024), "weak", 4, None);
    let cms = openssl_sign(dir.path(), &id, &["-nodetach"]);
    let err = verify(&cms, None).unwrap_err();
    assert!(matches!(err, CmsError::UnsupportedAlgorithm(_)), "{err:?}");
}

#[test]
fn not_signed_data_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload.bin"), PAYLOAD).unwrap();
    openssl_ok(
        dir.path(),
        &[
            "cms",
            "-data_create",
            "-binary",
            "-outform",
            "DER",
            "-in",
            "payload.bin",
            "-out",
            "data.der",
        ],
    );
    let cms = std::fs::read(dir.path().join("data.der")).unwrap();
    let err = verify(&cms, None).unwrap_err();
    assert!(
        matches!(&err, CmsError::Malformed(m) if m.contains("not id-signedData")),
        "{err:?}"
    );
}

#[test]
fn every_prefix_of_openssl_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(KeyType::P384);
    let cms = openssl_sign(dir.path(), &id, &["-nodetach"]);
    assert!(verify(&cms, None).is_ok());
    for len in 0..cms.len() {
        let err = verify(&cms[..len], None).unwrap_err();
        assert!(
            matches!(err, CmsError::Malformed(_)),
            "prefix {len}: {err:?}"
        );
    }
}
