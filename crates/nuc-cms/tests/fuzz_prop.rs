//! Bounded fuzzing of CMS verification with proptest, beside the deterministic one of
//! `fuzz.rs`: several mutations at once, aimed also at the DER lengths of the CMS's own TLVs
//! (`fuzz/mutate.rs`), of attached and detached CMS by each key type, random bytes, and the
//! chain check of a mutated signer certificate (`signer_chains_to`, which the RA calls next).
//! The properties: no panic, a typed `CmsError`, and whatever still verifies is the content
//! that was signed, by the certificate that signed it.
//!
//! Cases are fixed below (PROPTEST_CASES overrides them); cargo-fuzz runs `verify` unbounded
//! (`fuzz/fuzz_targets/cms.rs`).

mod common;
#[path = "../../../fuzz/mutate.rs"]
mod mutate;

use common::*;
use der::{Decode, Encode};
use nuc_cms::{sign, signer_chains_to, verify};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A CMS, its detached content if any, and its signer's certificate.
type Seed = (Vec<u8>, Option<&'static [u8]>, Vec<u8>);

/// A seed for each key type, attached and detached.
fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    for kind in ALL_KEY_TYPES {
        let id = identity(kind);
        for detached in [false, true] {
            let cms = sign(PAYLOAD, &id.cert_der(), &id.key, detached).unwrap();
            out.push((cms, detached.then_some(PAYLOAD), id.cert_der()));
        }
    }
    out
}

#[test]
fn mutated_cms_is_refused_typed_or_verifies_the_signed_content() {
    let seeds = seeds();
    TestRunner::new(config(6000))
        .run(&(0..seeds.len(), mutate::mutations()), |(which, ms)| {
            let (cms, detached, cert) = &seeds[which];
            if let Ok(v) = verify(&mutate::apply(cms, &ms), *detached) {
                prop_assert_eq!(&v.content[..], PAYLOAD);
                // The signer's certificate may differ only where its own signature is.
                prop_assert_eq!(v.signer_cert_der.len(), cert.len());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_bytes_are_refused_typed() {
    TestRunner::new(config(2000))
        .run(
            &(mutate::random_bytes(400), any::<bool>()),
            |(b, detached)| {
                prop_assert!(verify(&b, detached.then_some(PAYLOAD)).is_err());
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn a_mutated_signer_certificate_chains_only_if_what_the_issuer_signed_is_intact() {
    let ca = identity(KeyType::P256);
    let leaf = certificate(key(KeyType::P256), "leaf", 7, Some((&ca.cert, &ca.key)));
    let (leaf_der, ca_der) = (leaf.cert_der(), ca.cert_der());
    signer_chains_to(&leaf_der, &ca_der).unwrap();
    TestRunner::new(config(3000))
        .run(&(any::<bool>(), mutate::mutations()), |(issuer, ms)| {
            // Mutate the leaf, or the issuer it is checked against.
            if issuer {
                let _ = signer_chains_to(&leaf_der, &mutate::apply(&ca_der, &ms));
                return Ok(());
            }
            let m = mutate::apply(&leaf_der, &ms);
            if signer_chains_to(&m, &ca_der).is_ok() {
                let tbs = |d: &[u8]| {
                    x509_cert::Certificate::from_der(d)
                        .map(|c| c.tbs_certificate().to_der().unwrap())
                        .ok()
                };
                prop_assert_eq!(tbs(&m), tbs(&leaf_der), "a changed certificate chains");
            }
            Ok(())
        })
        .unwrap();
}
