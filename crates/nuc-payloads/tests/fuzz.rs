//! Bounded fuzzing of the decoding of the signed payloads (the content of an operator's or a
//! holder's CMS): structured mutations of valid encodings of each message and random bytes,
//! decoded as each of the three types. The property: no panic, a `prost::DecodeError` or a
//! message, and a decoded message survives its own re-encoding unchanged (what the RA hashes
//! and what it reads cannot drift apart).
//!
//! The RA's checks of what a decoded payload says are fuzzed in `nuc-ra` (`src/tests/fuzz.rs`);
//! cargo-fuzz runs the same decoding unbounded (`fuzz/fuzz_targets/payloads.rs`).

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

use nuc_payloads::{
    OPERATOR_DECISION, OperatorDecision, RENEWAL_APPLICATION, REVOCATION_ORDER, RenewalApplication,
    RevocationOrder, SignedPayload,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

fn seeds() -> Vec<Vec<u8>> {
    let csr = |n: u8| {
        let mut b = vec![0x30, 0x81, 0x90];
        b.extend((0..0x90u8).map(|i| i ^ n));
        b
    };
    vec![
        OperatorDecision {
            request_number: "0123-4567-89AB".into(),
            decision: 1,
            refusal_reason: "документы не совпадают".into(),
            operator_serial_hex: "7f3a9c01d2e4".into(),
            signed_at: 1_780_000_000,
            nonce: "a1b2c3d4e5f60718293a4b5c".into(),
            payload_type: OPERATOR_DECISION.into(),
        }
        .encode_to_vec(),
        RevocationOrder {
            serial_hex: "41c0ffee".into(),
            reason: 1,
            iin: "860908363012".into(),
            operator_serial_hex: "7f3a9c01d2e4".into(),
            signed_at: -1,
            nonce: "n".into(),
            all: false,
            spare_signer: false,
            payload_type: REVOCATION_ORDER.into(),
        }
        .encode_to_vec(),
        RenewalApplication {
            iin: "860908363012".into(),
            bin: "120340240006".into(),
            email: "applicant@mail.example.kz".into(),
            auth_csr: csr(1),
            sign_csr: csr(2),
            signed_at: i64::MAX,
            nonce: "b".repeat(24),
            payload_type: RENEWAL_APPLICATION.into(),
        }
        .encode_to_vec(),
    ]
}

fn stable<P: SignedPayload + PartialEq + std::fmt::Debug>(
    input: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(p) = P::decode(input) {
        let again = P::decode(p.encode_to_vec().as_slice())
            .map_err(|e| TestCaseError::fail(format!("{} re-encoded fails: {e}", P::TYPE)))?;
        prop_assert_eq!(again, p);
    }
    Ok(())
}

fn judge(input: &[u8]) -> Result<(), TestCaseError> {
    stable::<OperatorDecision>(input)?;
    stable::<RevocationOrder>(input)?;
    stable::<RenewalApplication>(input)
}

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
fn mutated_payloads_decode_or_fail_typed_and_reencode_stably() {
    let seeds = seeds();
    TestRunner::new(config(20_000))
        .run(&(0..seeds.len(), mutate::mutations()), |(which, ms)| {
            judge(&mutate::apply(&seeds[which], &ms))
        })
        .unwrap();
}

#[test]
fn random_bytes_decode_or_fail_typed() {
    TestRunner::new(config(5_000))
        .run(&mutate::random_bytes(300), |b| judge(&b))
        .unwrap();
}
