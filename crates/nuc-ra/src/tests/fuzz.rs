//! Bounded fuzzing of what the RA takes from outside, through its public flows, with the
//! memory store: applications (their CSRs, IIN and e-mail) and the signed payloads of each
//! flow (operator decision, revocation order at the counter and online, renewal), mutated
//! either in the signed content (then signed properly, so the RA's own checks are reached) or
//! in the CMS around it.
//!
//! The properties: no panic; a refusal carries a reason code that blames the input (never
//! INTERNAL, STORAGE_FAILURE, HSM_FAILURE or CA_STATE); and a refusal leaves no partial row:
//! the whole store (requests, certificates, revocations, used payloads, audit log, notices)
//! is exactly as before the call. An input that is accepted is fine (a mutation of a nonce or
//! a reason is still a valid payload); the fixtures it used up are then made again.
//!
//! Cases per property are fixed below (PROPTEST_CASES overrides them).

#[path = "../../../../fuzz/mutate.rs"]
mod mutate;

use std::cell::RefCell;
use std::fmt::Debug;

use nuc_core::ReasonCode;
use nuc_payloads::{Decision, OperatorDecision, RenewalApplication, RevocationOrder};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::runtime::Runtime;

use super::*;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config).run(&strategy, test).unwrap();
    // What the cases came to, to see that they reach past the first check.
    OUTCOMES.with(|o| println!("{cases} cases: {:?}", o.borrow()));
}

thread_local! {
    static OUTCOMES: RefCell<std::collections::BTreeMap<String, u32>> = RefCell::default();
}

fn count(outcome: String) {
    OUTCOMES.with(|o| *o.borrow_mut().entry(outcome).or_default() += 1);
}

/// Everything the store holds, as text: equal before and after means nothing was written.
fn snapshot(rig: &Rig) -> String {
    format!("{:?}", rig.store)
}

/// The judge of one call: accepted, or refused for the input's sake with the store untouched.
fn judge<T>(rig: &Rig, before: &str, r: Result<T, RaError>) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(v) => {
            count("accepted".into());
            Ok(Some(v))
        }
        Err(e) => {
            count(e.reason.to_string());
            prop_assert!(
                !matches!(
                    e.reason,
                    ReasonCode::Internal
                        | ReasonCode::StorageFailure
                        | ReasonCode::HsmFailure
                        | ReasonCode::CaState
                ),
                "an outside input gave {}: {}",
                e.reason,
                e.message
            );
            prop_assert!(
                snapshot(rig) == before,
                "refused ({}: {}) but the store changed",
                e.reason,
                e.message
            );
            Ok(None)
        }
    }
}

/// Where a case mutates: one field of the signed content or its bytes (signed again
/// properly, so the RA's checks of what it says are reached), or the CMS itself.
#[derive(Debug, Clone)]
enum Target {
    Field(mutate::ProtoEdit),
    Content(Vec<mutate::Mutation>),
    Cms(Vec<mutate::Mutation>),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => mutate::proto_edit().prop_map(Target::Field),
        2 => mutate::mutations().prop_map(Target::Content),
        1 => mutate::mutations().prop_map(Target::Cms),
    ]
}

/// `content` as the signer would send it, with `t` applied.
fn signed(rig: &Rig, t: &Target, content: &[u8], cert: &[u8], key: &PKey<Private>) -> Vec<u8> {
    let now = rig.clock.now();
    match t {
        Target::Field(e) => cms_at(&mutate::apply_proto(content, e), cert, key, now),
        Target::Content(ms) => cms_at(&mutate::apply(content, ms), cert, key, now),
        Target::Cms(ms) => mutate::apply(&cms_at(content, cert, key, now), ms),
    }
}

fn decision(rig: &Rig, op: &Operator, number: &str) -> Vec<u8> {
    OperatorDecision {
        request_number: number.into(),
        decision: Decision::Confirm as i32,
        refusal_reason: String::new(),
        operator_serial_hex: op.serial.clone(),
        signed_at: rig.clock.now(),
        nonce: nonce(),
        payload_type: nuc_payloads::OPERATOR_DECISION.into(),
    }
    .encode_to_vec()
}

fn order(rig: &Rig, serial: &str, iin: &str, operator_serial: &str) -> Vec<u8> {
    RevocationOrder {
        serial_hex: serial.into(),
        reason: 1,
        iin: iin.into(),
        operator_serial_hex: operator_serial.into(),
        signed_at: rig.clock.now(),
        nonce: nonce(),
        all: false,
        spare_signer: false,
        payload_type: nuc_payloads::REVOCATION_ORDER.into(),
    }
    .encode_to_vec()
}

fn renewal(rig: &Rig, iin: &str) -> Vec<u8> {
    RenewalApplication {
        iin: iin.into(),
        bin: String::new(),
        email: EMAIL.into(),
        auth_csr: key().csr,
        sign_csr: key().csr,
        signed_at: rig.clock.now(),
        nonce: nonce(),
        payload_type: nuc_payloads::RENEWAL_APPLICATION.into(),
    }
    .encode_to_vec()
}

#[test]
fn fuzzed_applications_are_refused_with_a_reason_and_no_partial_row() {
    let rt = runtime();
    let rig = Rig::new();
    let (app, _, _) = rig.application(ABAI);
    let strategy = (0usize..4, mutate::mutations());
    run(600, strategy, |(field, ms)| {
        let mut a = app.clone();
        let text = |s: &str| String::from_utf8_lossy(&mutate::apply(s.as_bytes(), &ms)).into();
        match field {
            0 => a.auth_csr = mutate::apply(&a.auth_csr, &ms),
            1 => a.sign_csr = mutate::apply(&a.sign_csr, &ms),
            2 => a.iin = text(&a.iin),
            _ => a.email = text(&a.email),
        }
        let before = snapshot(&rig);
        judge(
            &rig,
            &before,
            rt.block_on(rig.ra.submit_application(PORTAL, a)),
        )?;
        Ok(())
    });
}

#[test]
fn fuzzed_decisions_are_refused_with_a_reason_and_no_partial_row() {
    let rt = runtime();
    let rig = Rig::new();
    let op = rt.block_on(rig.operator(SHOKAN));
    let fresh = || {
        let (row, _, _) = rt.block_on(rig.registered(ABAI));
        (row.number.clone(), decision(&rig, &op, &row.number))
    };
    let current = RefCell::new(fresh());
    run(500, target(), |t| {
        let (number, content) = current.borrow().clone();
        let cms = signed(&rig, &t, &content, &op.cert, &op.key);
        let before = snapshot(&rig);
        let r = rt.block_on(rig.ra.decide(WORKSTATION, &number, &op.serial, &cms));
        if judge(&rig, &before, r)?.is_some() {
            *current.borrow_mut() = fresh();
        }
        Ok(())
    });
}

#[test]
fn fuzzed_revocation_orders_are_refused_with_a_reason_and_no_partial_row() {
    let rt = runtime();
    let rig = Rig::new();
    let op = rt.block_on(rig.operator(SHOKAN));
    let holder = RefCell::new(rt.block_on(rig.holder(ABAI, &op)));
    // Online (signed by the holder) or at the counter (signed by the operator).
    run(500, (any::<bool>(), target()), |(online, t)| {
        let h = holder.borrow();
        let before = snapshot(&rig);
        let r = if online {
            let content = order(&rig, &h.auth.0, h.iin(), "");
            let cms = signed(&rig, &t, &content, &h.sign.1, &h.sign.2);
            // A single order revokes one certificate.
            rig.ra
                .revoke_online(PORTAL, &cms)
                .map(|rows| rows.into_iter().next().expect("one revocation"))
        } else {
            let content = order(&rig, &h.auth.0, h.iin(), &op.serial);
            let cms = signed(&rig, &t, &content, &op.cert, &op.key);
            rig.ra.revoke_at_counter(WORKSTATION, &op.serial, &cms)
        };
        drop(h);
        if judge(&rig, &before, r)?.is_some() {
            *holder.borrow_mut() = rt.block_on(rig.holder(ABAI, &op));
        }
        Ok(())
    });
}

#[test]
fn fuzzed_renewals_are_refused_with_a_reason_and_no_partial_row() {
    let rt = runtime();
    let rig = Rig::new();
    let op = rt.block_on(rig.operator(SHOKAN));
    let fresh = || {
        let h = rt.block_on(rig.holder(ABAI, &op));
        let content = renewal(&rig, h.iin());
        (h, content)
    };
    let current = RefCell::new(fresh());
    run(300, target(), |t| {
        let cms = {
            let (h, content) = &*current.borrow();
            signed(&rig, &t, content, &h.sign.1, &h.sign.2)
        };
        let before = snapshot(&rig);
        let r = rt.block_on(rig.ra.submit_renewal(PORTAL, None, &cms));
        if judge(&rig, &before, r)?.is_some() {
            *current.borrow_mut() = fresh();
        }
        Ok(())
    });
}

/// `signed_at` values at the edges of i64 and of the window, against a CMS signingTime of now:
/// a payload whose two times disagree by more than the skew is SIGNING_TIME_MISMATCH, however
/// far apart they are (a difference past i64 included).
#[test]
fn signed_at_at_any_distance_from_the_cms_time_is_judged_by_that_distance() {
    let rt = runtime();
    let rig = Rig::new();
    let op = rt.block_on(rig.operator(SHOKAN));
    let (row, _, _) = rt.block_on(rig.registered(ABAI));
    let now = rig.clock.now();
    let skew = RaConfig::default().clock_skew_secs;
    let edges = vec![
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        0,
        -1,
        now.wrapping_add(i64::MIN),
        now.wrapping_add(i64::MIN) + 1,
        now.wrapping_add(i64::MIN) - 1,
        now - skew - 1,
        now + skew + 1,
    ];
    let strategy = prop_oneof![proptest::sample::select(edges), any::<i64>()];
    run(100, strategy, |signed_at| {
        let mut d = OperatorDecision::decode(decision(&rig, &op, &row.number).as_slice()).unwrap();
        d.signed_at = signed_at;
        d.decision = Decision::Refuse as i32;
        d.refusal_reason = "fuzz".into();
        let cms = cms_at(&d.encode_to_vec(), &op.cert, &op.key, now);
        let before = snapshot(&rig);
        let r = rt.block_on(rig.ra.decide(WORKSTATION, &row.number, &op.serial, &cms));
        let far = (i128::from(now) - i128::from(signed_at)).abs() > i128::from(skew);
        let Err(e) = r else {
            return Err(TestCaseError::fail(format!(
                "signed_at {signed_at} accepted"
            )));
        };
        count(e.reason.to_string());
        prop_assert!(snapshot(&rig) == before, "refused, but the store changed");
        if far {
            prop_assert_eq!(
                e.reason,
                ReasonCode::SigningTimeMismatch,
                "signed_at {}: {}",
                signed_at,
                e.message
            );
        }
        Ok(())
    });
}

/// Regression (found by the property above): a `signed_at` 2^63 s before the CMS signingTime
/// made their difference overflow, which wrapped to i64::MIN in a release build (and passed
/// the mismatch check, to be refused later as PAYLOAD_EXPIRED) and panicked in a debug build.
#[tokio::test]
async fn a_signed_at_two_to_the_63_seconds_away_is_a_signing_time_mismatch() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (row, _, _) = rig.registered(ABAI).await;
    let now = rig.clock.now();
    for signed_at in [now.wrapping_add(i64::MIN), i64::MIN, i64::MAX] {
        let mut d = OperatorDecision::decode(decision(&rig, &op, &row.number).as_slice()).unwrap();
        d.signed_at = signed_at;
        let before = snapshot(&rig);
        refused(
            rig.ra
                .decide(
                    WORKSTATION,
                    &row.number,
                    &op.serial,
                    &cms_at(&d.encode_to_vec(), &op.cert, &op.key, now),
                )
                .await,
            ReasonCode::SigningTimeMismatch,
            "more than 120 s apart",
        );
        assert_eq!(snapshot(&rig), before);
    }
}
