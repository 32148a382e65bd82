//! Bounded fuzzing of what the workstation reads from a card (the card is outside: a forged or
//! broken one answers what it likes): the public key template of GENERATE KEY, the plain
//! r ‖ s of PSO, the ATR (historical bytes, kind), and a certificate read back. Structured
//! mutations of valid answers (`fuzz/mutate.rs`) and random bytes; the property: no panic, a
//! typed refusal, and what is accepted is well formed (a 65-byte P-256 point, a DER
//! ECDSA-Sig-Value of the same r and s, a kind only from our own issuer data).
//!
//! The TLV walk over the card information and the FCI (private to `card.rs`) has its own
//! property there (`tlv_reading_takes_any_bytes`). Cases are fixed below (PROPTEST_CASES
//! overrides them); cargo-fuzz runs the same parsers unbounded (`fuzz/fuzz_targets/card.rs`).

#[path = "../../../fuzz/mutate.rs"]
mod mutate;

use der::Decode;
use der::asn1::UintRef;
use nuc_card::CardKind;
use nuc_card::keys::{certificate_spki, ecdsa_der_from_plain, spki_from_template};
use nuc_card::profile::historical_bytes;
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

/// GENERATE KEY's answer: 7F49 { 06 P-256, 86 04 ‖ X ‖ Y }.
fn template() -> Vec<u8> {
    let mut inner = vec![
        0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x86, 65,
    ];
    inner.push(0x04);
    inner.extend((0..64u8).map(|i| i.wrapping_mul(37) | 1));
    let mut t = vec![0x7F, 0x49, 0x81, inner.len() as u8];
    t.extend(inner);
    t
}

/// An ATR as card-sim makes it: TS, T0, TD1, historical bytes (80, issuer data), TCK.
fn atr(issuer: &[u8]) -> Vec<u8> {
    let mut historical = vec![0x80, 0x50 | issuer.len() as u8];
    historical.extend_from_slice(issuer);
    let mut atr = vec![0x3B, 0x80 | historical.len() as u8, 0x01];
    atr.extend_from_slice(&historical);
    atr.push(atr[1..].iter().fold(0, |x, b| x ^ b));
    atr
}

#[derive(der::Sequence)]
struct Sig<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

fn judge(which: usize, b: &[u8]) -> Result<(), TestCaseError> {
    match which {
        0 => {
            if let Ok(spki) = spki_from_template(b) {
                let point = spki.subject_public_key.raw_bytes();
                prop_assert!(point.len() == 65 && point[0] == 4, "{point:02x?}");
            }
        }
        1 => {
            if let Ok(der) = ecdsa_der_from_plain(b) {
                let sig = Sig::from_der(&der).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let strip = |x: &[u8]| x.iter().skip_while(|b| **b == 0).count();
                prop_assert_eq!(sig.r.as_bytes().len(), strip(&b[..32]));
                prop_assert_eq!(sig.s.as_bytes().len(), strip(&b[32..]));
            }
        }
        2 => {
            let kind = CardKind::from_atr(b);
            if let Some(k) = kind {
                let h = historical_bytes(b).unwrap();
                let id = if k == CardKind::IdCard {
                    "NUCKZ-ID"
                } else {
                    "NUCKZ-SIM"
                };
                prop_assert!(h.windows(id.len()).any(|w| w == id.as_bytes()));
            }
            let order = CardKind::selection_order(b);
            prop_assert_ne!(order[0], order[1]);
        }
        _ => {
            let _ = certificate_spki(b);
        }
    }
    Ok(())
}

#[test]
fn mutated_card_answers_are_refused_typed_or_well_formed() {
    let mut plain = vec![0x80; 32];
    plain.extend([0x01; 32]);
    let seeds = [template(), plain, atr(b"NUCKZ-ID"), atr(b"NUCKZ-SIM")];
    TestRunner::new(config(20_000))
        .run(&(0..seeds.len(), mutate::mutations()), |(i, ms)| {
            judge(i.min(2), &mutate::apply(&seeds[i], &ms))
        })
        .unwrap();
}

#[test]
fn random_card_answers_are_refused_typed_or_well_formed() {
    TestRunner::new(config(5_000))
        .run(&(0usize..4, mutate::random_bytes(300)), |(i, b)| {
            judge(i, &b)
        })
        .unwrap();
}
