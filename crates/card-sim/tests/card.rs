//! The card writer (nuc-card) against the emulated cards (card-sim) through the real pcscd and
//! vpcd. vpcd listens on one fixed port, so every test here holds it in turn (`rig::Rig`): all
//! card tests live in this one binary, serialised.
//!
//! Outside judges: `openssl req -verify` for the requests the card signed, `openssl x509` as the
//! throwaway CA that certifies the card's keys.

mod rig;

use std::time::Instant;

use card_sim::CardKind as SimKind;
use card_sim::vpcd::Removal;
use nuc_card::{CardError, CardKind, KeySlot, PinStatus, StatusWord, WriteOutcome};
use rig::Rig;

const PIN: &str = "1234";

fn pin(s: &str) -> nuc_card::Pin {
    nuc_card::Pin::new(s).unwrap()
}

/// The host's profiles and the emulator's agree (ATR, AID), without any reader.
#[test]
fn host_profiles_match_the_emulator() {
    for (sim, host) in [
        (SimKind::IdCard, CardKind::IdCard),
        (SimKind::Sim, CardKind::Sim),
    ] {
        assert_eq!(CardKind::from_atr(&sim.atr()), Some(host));
        assert_eq!(sim.aid(), host.aid());
        assert_eq!(sim.code(), host.code());
    }
}

#[test]
fn id_card_and_sim_are_told_apart() {
    let mut rig = Rig::new();
    let id = rig.personalise("id.json", SimKind::IdCard, PIN);
    let sim = rig.personalise("sim.json", SimKind::Sim, PIN);

    let mut card = rig.insert(&id);
    assert_eq!(card.kind(), CardKind::IdCard);
    let info = card.info().unwrap();
    assert_eq!(info.kind, CardKind::IdCard);
    assert_eq!(info.serial.len(), 9);
    assert_eq!((info.pin_tries_left, info.pin_max_tries), (3, 3));
    assert!(info.keys.is_empty() && info.certificates.is_empty());
    rig.pull_out(card);

    let mut card = rig.insert(&sim);
    assert_eq!(card.kind(), CardKind::Sim);
    let info = card.info().unwrap();
    assert_eq!(info.kind, CardKind::Sim);
    assert!(info.serial.starts_with("897"), "ICCID {}", info.serial);
    rig.pull_out(card);
}

#[test]
fn wrong_pin_counts_down_and_blocks_for_good() {
    let mut rig = Rig::new();
    let state = rig.personalise("id.json", SimKind::IdCard, PIN);
    let mut card = rig.insert(&state);

    assert_eq!(
        card.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    // Nothing that needs the PIN works before it.
    let err = card.generate_key(KeySlot::Auth).unwrap_err();
    assert_eq!(
        err.status_word(),
        Some(StatusWord::SECURITY_NOT_SATISFIED),
        "{err}"
    );

    let err = card.verify_pin(&pin("0000")).unwrap_err();
    assert!(
        matches!(err, CardError::WrongPin { tries_left: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "SW 63C2: wrong PIN, 2 tries left");
    assert_eq!(
        card.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 2 }
    );
    // The right PIN restores the counter.
    card.verify_pin(&pin(PIN)).unwrap();
    assert_eq!(card.pin_status().unwrap(), PinStatus::Verified);
    assert_eq!(card.info().unwrap().pin_tries_left, 3);

    let err = card.verify_pin(&pin("0000")).unwrap_err();
    assert!(
        matches!(err, CardError::WrongPin { tries_left: 2, .. }),
        "{err:?}"
    );
    let err = card.verify_pin(&pin("0000")).unwrap_err();
    assert_eq!(err.to_string(), "SW 63C1: wrong PIN, 1 try left");
    let err = card.verify_pin(&pin("0000")).unwrap_err();
    assert!(matches!(err, CardError::PinBlocked { .. }), "{err:?}");
    // Blocked is final: the right PIN does not help, and neither does a new session.
    let err = card.verify_pin(&pin(PIN)).unwrap_err();
    assert!(matches!(err, CardError::PinBlocked { .. }), "{err:?}");
    assert!(err.to_string().starts_with("SW 6983: PIN blocked"), "{err}");
    rig.pull_out(card);

    let mut card = rig.insert(&state);
    assert_eq!(card.pin_status().unwrap(), PinStatus::Blocked);
    assert!(matches!(
        card.verify_pin(&pin(PIN)),
        Err(CardError::PinBlocked { .. })
    ));
    assert!(matches!(
        card.generate_key(KeySlot::Sign),
        Err(CardError::PinBlocked { .. })
    ));
    rig.pull_out(card);
}

/// F4 on the card: keys generated on it, requests it signed (judged by openssl), certificates
/// from a throwaway CA written, read back, checked against the keys, still there after the
/// emulator restarts.
#[test]
fn keys_requests_and_certificates() {
    let mut rig = Rig::new();
    let dir = rig.dir.path().to_path_buf();
    rig::throwaway_ca(&dir);
    let state = rig.personalise("sim.json", SimKind::Sim, PIN);
    let mut card = rig.insert(&state);
    let enrol = Instant::now();
    let apdus_before = card.apdu_count();

    card.verify_pin(&pin(PIN)).unwrap();
    let auth_key = card.generate_key(KeySlot::Auth).unwrap();
    let sign_key = card.generate_key(KeySlot::Sign).unwrap();
    assert_ne!(auth_key, sign_key);
    assert_eq!(card.public_key(KeySlot::Auth).unwrap(), auth_key);

    let subject = nuc_card::csr::minimal_subject(&format!("NUC {}", card.kind())).unwrap();
    let mut certs = Vec::new();
    for (slot, key) in [(KeySlot::Auth, &auth_key), (KeySlot::Sign, &sign_key)] {
        let csr = card.certification_request(slot, &subject).unwrap();
        let name = slot.to_string().to_lowercase();
        let cert = rig::issue(&dir, &name, &csr, 0);
        let out = rig::openssl(
            &[
                "req",
                "-verify",
                "-inform",
                "DER",
                "-in",
                &format!("{name}.csr"),
                "-noout",
            ],
            &dir,
        );
        assert!(
            out.contains("verify OK") || out.contains("Certificate request self-signature ok"),
            "{out}"
        );
        let spki = nuc_card::keys::certificate_spki(&cert).unwrap();
        assert_eq!(&spki, key, "the CA certified the key the card generated");
        assert_eq!(
            card.write_certificate(slot, &cert).unwrap(),
            WriteOutcome::Written
        );
        certs.push(cert);
    }
    let took = enrol.elapsed();
    let apdus = card.apdu_count().apdus - apdus_before.apdus;
    eprintln!(
        "F4 on the card (PIN, 2 keys, 2 CSRs, openssl CA, 2 certificates): {took:?}, {apdus} APDUs"
    );

    // Written again: nothing to do. Into the wrong slot: refused, nothing written.
    assert_eq!(
        card.write_certificate(KeySlot::Auth, &certs[0]).unwrap(),
        WriteOutcome::AlreadyThere
    );
    let err = card
        .write_certificate(KeySlot::Sign, &certs[0])
        .unwrap_err();
    assert!(
        matches!(
            err,
            CardError::KeyMismatch {
                slot: KeySlot::Sign
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        card.write_certificate(KeySlot::Auth, b"not DER"),
        Err(CardError::BadCertificate { .. })
    ));
    rig.pull_out(card);

    // A new emulator process on the same state: the same keys and certificates.
    let mut card = rig.insert(&state);
    let info = card.info().unwrap();
    assert_eq!(info.keys, KeySlot::ALL);
    assert_eq!(info.certificates, KeySlot::ALL);
    assert_eq!(card.public_key(KeySlot::Auth).unwrap(), auth_key);
    assert_eq!(card.public_key(KeySlot::Sign).unwrap(), sign_key);
    assert_eq!(card.check_certificate(KeySlot::Auth).unwrap(), certs[0]);
    assert_eq!(card.check_certificate(KeySlot::Sign).unwrap(), certs[1]);
    // The PIN is asked again in a new session.
    assert_eq!(
        card.pin_status().unwrap(),
        PinStatus::NotVerified { tries_left: 3 }
    );
    rig.pull_out(card);
}

/// The card is pulled out at every point of writing a large certificate (several chained
/// chunks, read back with GET RESPONSE), with the interrupted command lost or executed: the
/// card then holds no certificate or the whole one, and repeating the step completes.
#[test]
fn card_pulled_out_mid_write_then_retry_completes() {
    let mut rig = Rig::new();
    let dir = rig.dir.path().to_path_buf();
    rig::throwaway_ca(&dir);
    let state = rig.personalise("id.json", SimKind::IdCard, PIN);
    let mut card = rig.insert(&state);
    card.verify_pin(&pin(PIN)).unwrap();
    card.generate_key(KeySlot::Auth).unwrap();
    let subject = nuc_card::csr::minimal_subject("NUC ID card").unwrap();
    let csr = card.certification_request(KeySlot::Auth, &subject).unwrap();
    let cert = rig::issue(&dir, "big", &csr, 15);
    assert!(
        cert.len() > 3 * 255,
        "certificate of {} bytes needs a chain",
        cert.len()
    );
    rig.pull_out(card);
    let before = std::fs::read(&state).unwrap();

    // A dry run counts the APDUs: connect + verify, then the write.
    let mut card = rig.insert(&state);
    card.verify_pin(&pin(PIN)).unwrap();
    let start = card.apdu_count().apdus;
    assert_eq!(
        card.write_certificate(KeySlot::Auth, &cert).unwrap(),
        WriteOutcome::Written
    );
    let end = card.apdu_count().apdus;
    rig.pull_out(card);

    // After connect and VERIFY: read the public key, look for a certificate, then the chunks.
    let chunks = cert.len().div_ceil(255) as u64;
    let put_data = start + 2..start + 2 + chunks;
    let mut committed_answer_lost = 0;
    for cut in start..end {
        // Losing the answer matters only where the card changes: the chunks of PUT DATA.
        let variants: &[bool] = if put_data.contains(&cut) {
            &[false, true]
        } else {
            &[false]
        };
        for &lose_answer in variants {
            std::fs::write(&state, &before).unwrap();
            eprintln!("pull out at APDU {cut} of {start}..{end}, lose answer: {lose_answer}");
            let removal = Removal {
                after_apdus: Some(cut),
                lose_answer,
            };
            let mut card = rig.insert_with(&state, removal);
            card.verify_pin(&pin(PIN)).unwrap();
            let err = card.write_certificate(KeySlot::Auth, &cert).unwrap_err();
            assert!(err.is_removal(), "cut at {cut}: {err:?}");
            rig.wait_gone(card);

            let mut card = rig.insert(&state);
            let there = card.read_certificate(KeySlot::Auth).unwrap();
            assert!(
                there.is_none() || there.as_deref() == Some(&cert[..]),
                "cut at {cut}: torn certificate"
            );
            card.verify_pin(&pin(PIN)).unwrap();
            let outcome = card.write_certificate(KeySlot::Auth, &cert).unwrap();
            if there.is_some() && put_data.contains(&cut) {
                committed_answer_lost += 1;
            }
            let expected = if there.is_some() {
                WriteOutcome::AlreadyThere
            } else {
                WriteOutcome::Written
            };
            assert_eq!(outcome, expected, "cut at {cut}");
            assert_eq!(card.check_certificate(KeySlot::Auth).unwrap(), cert);
            rig.pull_out(card);
        }
    }
    // The last chunk executed with its answer lost: the write had happened, the host could not
    // know, and the repeated step found the certificate there.
    assert_eq!(committed_answer_lost, 1);
}

/// APDU round trips through pcscd + vpcd + card-sim. Without TCP_NODELAY on the card's side a
/// round trip waits for a delayed ACK (~40-50 ms): the floor below catches that.
#[test]
fn apdu_round_trips_per_second() {
    let mut rig = Rig::new();
    let state = rig.personalise("id.json", SimKind::IdCard, PIN);
    let mut card = rig.insert(&state);
    let rt = nuc_card::bench::apdu_round_trips(&mut card, 500).unwrap();
    eprintln!(
        "APDU round trips through pcscd+vpcd: {:.0}/s ({:?} each)",
        rt.per_second(),
        rt.mean()
    );
    assert!(rt.per_second() > 100.0, "{rt:?}");
    rig.pull_out(card);
}
