//! The signed payloads' decoding (`prost` messages of nuc-payloads, decoded by the RA from a
//! verified CMS): no panic, and a decoded message survives its own re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuc_payloads::{OperatorDecision, RenewalApplication, RevocationOrder};
use prost::Message;

fn stable<P: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(p) = P::decode(data) {
        assert_eq!(P::decode(p.encode_to_vec().as_slice()).unwrap(), p);
    }
}

fn seeds() {
    nuc_fuzz::seed(
        "payloads",
        &[
            OperatorDecision {
                request_number: "0123-4567-89AB".into(),
                decision: 1,
                operator_serial_hex: "7f3a9c01".into(),
                signed_at: 1_780_000_000,
                nonce: "a1b2c3".into(),
                payload_type: nuc_payloads::OPERATOR_DECISION.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            RevocationOrder {
                serial_hex: "41c0ffee".into(),
                reason: 1,
                iin: "860908363012".into(),
                signed_at: 1_780_000_000,
                nonce: "n".into(),
                payload_type: nuc_payloads::REVOCATION_ORDER.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            RenewalApplication {
                iin: "860908363012".into(),
                email: "a@mail.example.kz".into(),
                auth_csr: vec![0x30, 0x03, 0x02, 0x01, 0x01],
                sign_csr: vec![0x30, 0x00],
                signed_at: 1_780_000_000,
                nonce: "b".into(),
                payload_type: nuc_payloads::RENEWAL_APPLICATION.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ],
    );
}

fuzz_target!(init: seeds(), |data: &[u8]| {
    stable::<OperatorDecision>(data);
    stable::<RevocationOrder>(data);
    stable::<RenewalApplication>(data);
});
