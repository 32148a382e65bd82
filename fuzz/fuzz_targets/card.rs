//! The card's answers as the workstation parses them (nuc-card): the public key template, the
//! plain signature, the ATR, a certificate read back. The first byte picks the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuc_card::CardKind;
use nuc_card::keys::{certificate_spki, ecdsa_der_from_plain, spki_from_template};

fn atr(issuer: &[u8]) -> Vec<u8> {
    let mut historical = vec![0x80, 0x50 | issuer.len() as u8];
    historical.extend_from_slice(issuer);
    let mut atr = vec![0x3B, 0x80 | historical.len() as u8, 0x01];
    atr.extend_from_slice(&historical);
    atr.push(atr[1..].iter().fold(0, |x, b| x ^ b));
    atr
}

fn seeds() {
    let mut template = vec![
        0, 0x7F, 0x49, 0x51, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x86,
        0x41, 0x04,
    ];
    template.extend([0x5A; 64]);
    let mut plain = vec![1];
    plain.extend([0x80; 32]);
    plain.extend([0x01; 32]);
    let with = |tag: u8, b: Vec<u8>| [vec![tag], b].concat();
    nuc_fuzz::seed(
        "card",
        &[
            template,
            plain,
            with(2, atr(b"NUCKZ-ID")),
            with(2, atr(b"NUCKZ-SIM")),
        ],
    );
}

fuzz_target!(init: seeds(), |data: &[u8]| {
    let Some((which, answer)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            if let Ok(spki) = spki_from_template(answer) {
                assert_eq!(spki.subject_public_key.raw_bytes().len(), 65);
            }
        }
        1 => {
            let _ = ecdsa_der_from_plain(answer);
        }
        2 => {
            let _ = CardKind::from_atr(answer);
            let order = CardKind::selection_order(answer);
            assert_ne!(order[0], order[1]);
        }
        _ => {
            let _ = certificate_spki(answer);
        }
    }
});
