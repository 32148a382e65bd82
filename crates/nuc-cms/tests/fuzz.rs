//! Deterministic fuzzing: random mutations of valid CMS never make `verify` panic, and a
//! mutated CMS that still verifies never yields content other than what was signed.

mod common;

use common::*;
use nuc_cms::{sign, verify};

/// xorshift64: deterministic, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, valid: &[u8]) -> Vec<u8> {
    let mut m = valid.to_vec();
    match rng.below(6) {
        // Overwrite 1 to 4 bytes with random values.
        0..=2 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(m.len());
                m[at] = rng.next() as u8;
            }
        }
        // Flip one bit.
        3 => {
            let at = rng.below(m.len());
            m[at] ^= 1 << rng.below(8);
        }
        // Insert a random byte.
        4 => {
            let at = rng.below(m.len() + 1);
            m.insert(at, rng.next() as u8);
        }
        // Remove a random run of bytes.
        _ => {
            let at = rng.below(m.len());
            let len = 1 + rng.below(8).min(m.len() - at - 1);
            m.drain(at..at + len);
        }
    }
    m
}

fn fuzz(seed: u64, valid: &[u8], detached: Option<&[u8]>) -> (usize, usize) {
    let mut rng = XorShift(seed);
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..2000 {
        let m = mutate(&mut rng, valid);
        match verify(&m, detached) {
            Ok(v) => {
                // Only the unsigned parts can change (e.g. bytes of the certificate's own
                // signature): the content is still exactly what was signed.
                assert_eq!(
                    v.content, PAYLOAD,
                    "mutation {i} changed the verified content"
                );
                accepted += 1;
            }
            Err(_) => refused += 1,
        }
    }
    (refused, accepted)
}

#[test]
fn random_mutations_never_panic_rsa_attached() {
    let id = identity(KeyType::Rsa2048);
    let cms = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
    let (refused, _) = fuzz(0x9e37_79b9_7f4a_7c15, &cms, None);
    assert!(
        refused > 1500,
        "most mutations must be refused, {refused} were"
    );
}

#[test]
fn random_mutations_never_panic_p256_detached() {
    let id = identity(KeyType::P256);
    let cms = sign(PAYLOAD, &id.cert_der(), &id.key, true).unwrap();
    let (refused, _) = fuzz(0x2545_f491_4f6c_dd1d, &cms, Some(PAYLOAD));
    assert!(
        refused > 1500,
        "most mutations must be refused, {refused} were"
    );
}

#[test]
fn random_mutations_never_panic_p384_attached() {
    let id = identity(KeyType::P384);
    let cms = sign(PAYLOAD, &id.cert_der(), &id.key, false).unwrap();
    let (refused, _) = fuzz(0xdead_beef_cafe_f00d, &cms, None);
    assert!(
        refused > 1500,
        "most mutations must be refused, {refused} were"
    );
}
