//! Round trips sign → verify and the refusals of `verify`, `sign_with` and `signer_chains_to`,
//! with keys and certificates made at test time.

mod common;

use common::*;
use nuc_cms::{
    CmsError, DigestAlgorithm, SignatureAlgorithm, ecdsa_signature_from_raw, sign, sign_with,
    signer_chains_to, verify,
};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;

fn assert_verified(v: &nuc_cms::Verified, id: &Identity, digest: DigestAlgorithm) {
    assert_eq!(v.content, PAYLOAD);
    assert_eq!(v.signer_cert_der, id.cert_der());
    assert_eq!(v.digest_algorithm, digest);
    let t = v.signing_time.expect("signingTime is signed");
    assert!((t - now_unix()).abs() < 300, "signing time {t} is not now");
}

#[test]
fn round_trip_attached_and_detached_for_every_key_type() {
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        let attached = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
        let v = verify(&attached, None).unwrap_or_else(|e| panic!("{kind:?} attached: {e}"));
        assert_verified(&v, &id, DigestAlgorithm::Sha256);

        let detached = sign(PAYLOAD, &id.cert_der(), &id.key, true).unwrap();
        assert!(
            !detached.windows(PAYLOAD.len()).any(|w| w == PAYLOAD),
            "{kind:?}: a detached CMS must not carry the content"
        );
        let v = verify(&detached, Some(PAYLOAD)).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_verified(&v, &id, DigestAlgorithm::Sha256);
    }
}

#[test]
fn sign_with_every_signature_algorithm() {
    use SignatureAlgorithm::*;
    let rsa = identity(KeyType::Rsa2048);
    let p384 = identity(KeyType::P384);
    for (id, alg, digest) in [
        (&rsa, RsaPkcs1Sha256, DigestAlgorithm::Sha256),
        (&rsa, RsaPkcs1Sha384, DigestAlgorithm::Sha384),
        (&rsa, RsaPkcs1Sha512, DigestAlgorithm::Sha512),
        (&p384, EcdsaSha256, DigestAlgorithm::Sha256),
        (&p384, EcdsaSha384, DigestAlgorithm::Sha384),
        (&p384, EcdsaSha512, DigestAlgorithm::Sha512),
    ] {
        let md = match digest {
            DigestAlgorithm::Sha256 => MessageDigest::sha256(),
            DigestAlgorithm::Sha384 => MessageDigest::sha384(),
            DigestAlgorithm::Sha512 => MessageDigest::sha512(),
        };
        let signer = |data: &[u8]| -> Result<Vec<u8>, CmsError> {
            let mut s = openssl::sign::Signer::new(md, &id.key).unwrap();
            s.update(data).unwrap();
            Ok(s.sign_to_vec().unwrap())
        };
        for detached in [false, true] {
            let cms = sign_with(PAYLOAD, &id.cert_der(), &signer, alg, detached).unwrap();
            let v = verify(&cms, detached.then_some(PAYLOAD))
                .unwrap_or_else(|e| panic!("{alg:?} detached={detached}: {e}"));
            assert_verified(&v, id, digest);
        }
    }
}

/// A token (PKCS#11 `CKM_ECDSA_SHA256`) gives raw `r || s`: converted, it verifies.
#[test]
fn sign_with_a_token_style_raw_ecdsa_signer() {
    for (kind, half) in [(KeyType::P256, 32), (KeyType::P384, 48)] {
        let id = identity(kind);
        let ec = id.key.ec_key().unwrap();
        let token = |data: &[u8]| -> Result<Vec<u8>, CmsError> {
            let digest = openssl::hash::hash(MessageDigest::sha256(), data).unwrap();
            let sig = openssl::ecdsa::EcdsaSig::sign(&digest, &ec).unwrap();
            let mut raw = sig.r().to_vec_padded(half).unwrap();
            raw.extend(sig.s().to_vec_padded(half).unwrap());
            ecdsa_signature_from_raw(&raw)
        };
        let cms = sign_with(
            PAYLOAD,
            &id.cert_der(),
            &token,
            SignatureAlgorithm::EcdsaSha256,
            false,
        )
        .unwrap();
        assert_verified(&verify(&cms, None).unwrap(), &id, DigestAlgorithm::Sha256);
    }
}

#[test]
fn sign_refuses_a_key_that_is_not_the_certificates() {
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        let other = key(kind);
        let err = sign(PAYLOAD, &id.cert_der(), &other, false).unwrap_err();
        assert!(matches!(err, CmsError::Signing(_)), "{kind:?}: {err:?}");
    }
}

#[test]
fn sign_with_propagates_the_signers_failure_and_refuses_a_mismatched_algorithm() {
    let id = identity(KeyType::Rsa2048);
    let failing =
        |_: &[u8]| -> Result<Vec<u8>, CmsError> { Err(CmsError::Signing("token removed".into())) };
    let err = sign_with(
        PAYLOAD,
        &id.cert_der(),
        &failing,
        SignatureAlgorithm::RsaPkcs1Sha256,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&err, CmsError::Signing(m) if m == "token removed"),
        "{err:?}"
    );

    let unused = |_: &[u8]| -> Result<Vec<u8>, CmsError> { panic!("must not be asked to sign") };
    let err = sign_with(
        PAYLOAD,
        &id.cert_der(),
        &unused,
        SignatureAlgorithm::EcdsaSha256,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, CmsError::UnsupportedAlgorithm(_)), "{err:?}");

    let err = sign_with(
        PAYLOAD,
        b"not a certificate",
        &unused,
        SignatureAlgorithm::RsaPkcs1Sha256,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, CmsError::Signing(_)), "{err:?}");
}

#[test]
fn sign_refuses_an_unsupported_key_type() {
    let id = identity(KeyType::P256);
    let ed = PKey::generate_ed25519().unwrap();
    let err = sign(PAYLOAD, &id.cert_der(), &ed, false).unwrap_err();
    assert!(matches!(err, CmsError::UnsupportedAlgorithm(_)), "{err:?}");
}

#[test]
fn tampered_encapsulated_content_is_a_digest_mismatch() {
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        let cms = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
        let at = find(&cms, PAYLOAD) + 20;
        let err = verify(&flipped(&cms, at), None).unwrap_err();
        assert!(matches!(err, CmsError::DigestMismatch), "{kind:?}: {err:?}");
    }
}

#[test]
fn flipped_signature_byte_is_signature_invalid() {
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        let cms = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
        let sig = signature_of(&cms);
        let start = find(&cms, &sig);
        // The last byte (for ECDSA: inside `s`, the DER stays well-formed) and the first bytes.
        for at in [start + sig.len() - 1, start + sig.len() / 2, start + 5] {
            let err = verify(&flipped(&cms, at), None).unwrap_err();
            assert!(
                matches!(err, CmsError::SignatureInvalid),
                "{kind:?} @{at}: {err:?}"
            );
        }
    }
}

#[test]
fn flipped_signing_time_is_signature_invalid() {
    // The signed attributes are covered by the signature: changing one that is not the digest
    // (signingTime, a digit of the seconds) breaks the signature.
    let id = identity(KeyType::P256);
    let cms = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
    // id-signingTime (1.2.840.113549.1.9.5), SET { UTCTime "YYMMDDHHMMSSZ" }: the last digit
    // of the seconds.
    let attr = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05, 0x31, 0x0f, 0x17, 0x0d,
    ];
    let at = find(&cms, &attr) + attr.len() + 11;
    let mut tampered = cms.clone();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let err = verify(&tampered, None).unwrap_err();
    assert!(matches!(err, CmsError::SignatureInvalid), "{err:?}");
}

#[test]
fn detached_verify_with_other_content_is_a_digest_mismatch() {
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        let cms = sign(PAYLOAD, &id.cert_der(), &id.key, true).unwrap();
        let mut other = PAYLOAD.to_vec();
        other[10] ^= 1;
        let err = verify(&cms, Some(&other)).unwrap_err();
        assert!(matches!(err, CmsError::DigestMismatch), "{kind:?}: {err:?}");
        let err = verify(&cms, Some(b"")).unwrap_err();
        assert!(matches!(err, CmsError::DigestMismatch), "{kind:?}: {err:?}");
    }
}

#[test]
fn content_missing_and_content_twice() {
    let id = identity(KeyType::P256);
    let attached = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
    let detached = sign(PAYLOAD, &id.cert_der(), &id.key, true).unwrap();
    assert!(matches!(
        verify(&attached, Some(PAYLOAD)),
        Err(CmsError::ContentTwice)
    ));
    assert!(matches!(
        verify(&detached, None),
        Err(CmsError::ContentMissing)
    ));
}

#[test]
fn empty_content_signs_and_verifies() {
    let id = identity(KeyType::P256);
    let cms = sign(b"", &id.cert_der(), &id.key, false).unwrap();
    assert_eq!(verify(&cms, None).unwrap().content, b"");
    let cms = sign(b"", &id.cert_der(), &id.key, true).unwrap();
    assert_eq!(verify(&cms, Some(b"")).unwrap().content, b"");
}

#[test]
fn garbage_and_empty_input_are_malformed() {
    for input in [
        &b""[..],
        b"\x00",
        b"\x30",
        b"\x30\x00",
        b"\x30\x80\x00\x00",
        b"hello, this is not a CMS",
        b"-----BEGIN CMS-----\nMIIB\n-----END CMS-----\n",
        &[0xff; 64],
    ] {
        let err = verify(input, None).unwrap_err();
        assert!(matches!(err, CmsError::Malformed(_)), "{input:?}: {err:?}");
        let err = verify(input, Some(PAYLOAD)).unwrap_err();
        assert!(matches!(err, CmsError::Malformed(_)), "{input:?}: {err:?}");
    }
}

#[test]
fn every_prefix_and_trailing_garbage_is_refused() {
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        for detached in [false, true] {
            let cms = sign(PAYLOAD, &id.cert_der(), &id.key, detached).unwrap();
            let content = detached.then_some(PAYLOAD);
            assert!(verify(&cms, content).is_ok());
            for len in 0..cms.len() {
                let err = verify(&cms[..len], content).unwrap_err();
                assert!(
                    matches!(err, CmsError::Malformed(_)),
                    "{kind:?} prefix {len}/{}: {err:?}",
                    cms.len()
                );
            }
            let mut longer = cms.clone();
            longer.push(0);
            assert!(matches!(
                verify(&longer, content),
                Err(CmsError::Malformed(_))
            ));
        }
    }
}

#[test]
fn the_signer_certificate_returned_is_the_one_that_signed() {
    // Two identities: the CMS of one never reports the other's certificate.
    let a = identity(KeyType::P256);
    let b = identity(KeyType::P256);
    let cms = sign(PAYLOAD, &a.cert_der(), &a.key, false).unwrap();
    let v = verify(&cms, None).unwrap();
    assert_eq!(v.signer_cert_der, a.cert_der());
    assert_ne!(v.signer_cert_der, b.cert_der());
}

#[test]
fn signer_chains_to_accepts_the_issuer_and_refuses_another_key() {
    for kind in ALL_KEY_TYPES {
        let ca = certificate(key(kind), "Test NUC root", 1, None);
        let leaf = certificate(key(KeyType::P256), "Operator", 7, Some((&ca.cert, &ca.key)));
        signer_chains_to(&leaf.cert_der(), &ca.cert_der())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));

        // Same issuer name, another key: the signature does not verify.
        let impostor = certificate(key(kind), "Test NUC root", 1, None);
        let forged = certificate(
            key(KeyType::P256),
            "Operator",
            7,
            Some((&impostor.cert, &impostor.key)),
        );
        let err = signer_chains_to(&forged.cert_der(), &ca.cert_der()).unwrap_err();
        assert!(matches!(err, CmsError::NotIssuedBy(_)), "{kind:?}: {err:?}");
    }
    // Another issuer name altogether.
    let ca = certificate(key(KeyType::P256), "Test NUC root", 1, None);
    let other_ca = certificate(key(KeyType::P256), "Other root", 2, None);
    let leaf = certificate(key(KeyType::P256), "Operator", 9, Some((&ca.cert, &ca.key)));
    let err = signer_chains_to(&leaf.cert_der(), &other_ca.cert_der()).unwrap_err();
    assert!(matches!(err, CmsError::NotIssuedBy(_)), "{err:?}");
    // A self-signed certificate chains to itself; garbage is malformed.
    signer_chains_to(&ca.cert_der(), &ca.cert_der()).unwrap();
    assert!(matches!(
        signer_chains_to(b"junk", &ca.cert_der()),
        Err(CmsError::Malformed(_))
    ));
    assert!(matches!(
        signer_chains_to(&leaf.cert_der(), b""),
        Err(CmsError::Malformed(_))
    ));
}

/// The signer's key is what `verify` trusts for the signature, and a weak RSA key is refused.
#[test]
fn rsa_1024_signer_is_refused() {
    let id = certificate(rsa_key(1024), "weak", 3, None);
    let err = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap_err();
    assert!(matches!(err, CmsError::UnsupportedAlgorithm(_)), "{err:?}");
}

/// The signer identity is the certificate carried: a CMS re-wrapped with another certificate
/// of the same issuer and serial (a forged look-alike) does not verify.
#[test]
fn swapping_in_a_look_alike_certificate_is_signature_invalid() {
    let real = certificate(key(KeyType::P256), "Operator", 5, None);
    let real_der = real.cert_der();
    // Same issuer, serial and shape, another key (ECDSA signatures vary in length: retry).
    let fake_der = (0..100)
        .map(|_| certificate(key(KeyType::P256), "Operator", 5, None).cert_der())
        .find(|d| d.len() == real_der.len())
        .expect("a look-alike certificate of the same length");
    let cms = sign(PAYLOAD, &real.cert_der(), &real.key, false).unwrap();
    let at = find(&cms, &real_der);
    let mut swapped = cms.clone();
    swapped[at..at + real_der.len()].copy_from_slice(&fake_der);
    let err = verify(&swapped, None).unwrap_err();
    assert!(matches!(err, CmsError::SignatureInvalid), "{err:?}");
}
