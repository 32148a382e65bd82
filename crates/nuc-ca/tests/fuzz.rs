//! Bounded fuzzing of the PKCS#10 parser (`nuc_ca::csr::check`), the first thing the RA does
//! with the bytes of an applicant: structured mutations of real requests (P-256, P-384,
//! RSA-2048, DER and PEM) and random bytes. The property: no panic, a typed CSR refusal, and a
//! request that is still accepted after a mutation carries the very key that signed the seed
//! (proof of possession cannot be forged by a mutation).
//!
//! Cases are fixed below (PROPTEST_CASES overrides them); cargo-fuzz runs the same parser
//! unbounded (`fuzz/fuzz_targets/csr.rs`).

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

use nuc_ca::CaError;
use nuc_ca::csr::check;
use nuc_ca::policy::{DEFAULT_PROFILES, Policy, Profile};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509ReqBuilder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn csr(key: &PKey<Private>, md: MessageDigest) -> Vec<u8> {
    let mut req = X509ReqBuilder::new().unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "fuzz").unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(key).unwrap();
    req.sign(key, md).unwrap();
    req.build().to_der().unwrap()
}

fn ec(nid: Nid) -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap()
}

/// The seeds: one request per accepted key kind, and one in PEM.
fn seeds() -> Vec<Vec<u8>> {
    let p256 = csr(&ec(Nid::X9_62_PRIME256V1), MessageDigest::sha256());
    let pem = der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, &p256)
        .unwrap()
        .into_bytes();
    vec![
        p256,
        csr(&ec(Nid::SECP384R1), MessageDigest::sha384()),
        csr(
            &PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(),
            MessageDigest::sha256(),
        ),
        pem,
    ]
}

fn profile() -> Profile {
    Policy::from_toml(DEFAULT_PROFILES)
        .unwrap()
        .end_entity("individual-auth")
        .unwrap()
        .clone()
}

/// The judge: a typed CSR refusal, or the seed's own key.
fn judge(input: &[u8], seed_key: &str, profile: &Profile) -> Result<(), TestCaseError> {
    match check(input, profile) {
        Ok(c) => prop_assert_eq!(&c.spki_sha256, seed_key, "a mutation changed the key"),
        Err(
            CaError::CsrMalformed(_) | CaError::CsrSignatureInvalid(_) | CaError::KeyRejected(_),
        ) => {}
        Err(other) => {
            return Err(TestCaseError::fail(format!("not a CSR refusal: {other:?}")));
        }
    }
    Ok(())
}

const CASES: u32 = 4000;

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

#[test]
fn mutated_requests_are_refused_with_a_reason_or_keep_their_key() {
    let profile = profile();
    let seeds = seeds();
    let keys: Vec<String> = seeds
        .iter()
        .map(|s| check(s, &profile).expect("seed").spki_sha256)
        .collect();
    TestRunner::new(config(CASES))
        .run(&(0..seeds.len(), mutate::mutations()), |(which, ms)| {
            judge(&mutate::apply(&seeds[which], &ms), &keys[which], &profile)
        })
        .unwrap();
}

#[test]
fn random_bytes_are_refused_with_a_reason() {
    let profile = profile();
    TestRunner::new(config(CASES / 4))
        .run(&mutate::random_bytes(600), |b| {
            judge(&b, "no key comes out of random bytes", &profile)
        })
        .unwrap();
}
