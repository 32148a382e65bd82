//! The applet profiles the card writer knows: the NUC applet on the national ID card and on a
//! SIM card. Each is told by its ATR (historical bytes) and confirmed by selecting its AID.
//!
//! Mapping a real card onto the card writer means adding its ATR and AID here, and keeping the
//! APDU interface of `card-sim`'s documentation (or adapting [`crate::card`] to its differences).

use std::fmt;

/// The kind of card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CardKind {
    /// The national ID card with a chip.
    IdCard,
    /// A SIM card carrying the NUC applet.
    Sim,
}

/// Issuer data (compact-TLV tag 5 after category byte 80) in each kind's ATR.
const ID_ISSUER_DATA: &[u8] = b"NUCKZ-ID";
const SIM_ISSUER_DATA: &[u8] = b"NUCKZ-SIM";

const ID_AID: &[u8] = &[0xF0, 0x4E, 0x55, 0x43, 0x4B, 0x5A, 0x49, 0x44, 0x01];
const SIM_AID: &[u8] = &[0xF0, 0x4E, 0x55, 0x43, 0x4B, 0x5A, 0x53, 0x49, 0x4D, 0x01];

impl CardKind {
    pub const ALL: [CardKind; 2] = [CardKind::IdCard, CardKind::Sim];

    /// The applet's AID.
    pub fn aid(self) -> &'static [u8] {
        match self {
            CardKind::IdCard => ID_AID,
            CardKind::Sim => SIM_AID,
        }
    }

    /// The kind byte in the applet's FCI and card information.
    pub fn code(self) -> u8 {
        match self {
            CardKind::IdCard => 0x01,
            CardKind::Sim => 0x02,
        }
    }

    pub fn from_code(code: u8) -> Option<CardKind> {
        CardKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The kind an ATR announces, if it is one of ours.
    pub fn from_atr(atr: &[u8]) -> Option<CardKind> {
        let issuer = issuer_data(historical_bytes(atr)?)?;
        match issuer {
            ID_ISSUER_DATA => Some(CardKind::IdCard),
            SIM_ISSUER_DATA => Some(CardKind::Sim),
            _ => None,
        }
    }

    fn other(self) -> CardKind {
        match self {
            CardKind::IdCard => CardKind::Sim,
            CardKind::Sim => CardKind::IdCard,
        }
    }

    /// The order in which to try the applets on a card with this ATR: the announced one first.
    pub fn selection_order(atr: &[u8]) -> [CardKind; 2] {
        match CardKind::from_atr(atr) {
            Some(k) => [k, k.other()],
            None => CardKind::ALL,
        }
    }
}

impl fmt::Display for CardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CardKind::IdCard => "ID card",
            CardKind::Sim => "SIM card",
        })
    }
}

/// The historical bytes of an ATR (ISO 7816-3 §8.2): walk T0 and the TDi chain past the
/// interface bytes, then take K bytes.
pub fn historical_bytes(atr: &[u8]) -> Option<&[u8]> {
    let t0 = *atr.get(1)?;
    let k = usize::from(t0 & 0x0F);
    let mut i = 2;
    let mut y = t0 >> 4;
    loop {
        // TAi, TBi, TCi present per bits 5, 6, 7 of the indicator.
        i += (y & 0x7).count_ones() as usize;
        if y & 0x8 == 0 {
            break;
        }
        let td = *atr.get(i)?;
        i += 1;
        y = td >> 4;
    }
    atr.get(i..i.checked_add(k)?)
}

/// The card issuer's data (compact-TLV tag 5) in historical bytes of category 80.
fn issuer_data(historical: &[u8]) -> Option<&[u8]> {
    let [0x80, objects @ ..] = historical else {
        return None;
    };
    let mut rest = objects;
    while let [head, tail @ ..] = rest {
        let len = usize::from(head & 0x0F);
        let value = tail.get(..len)?;
        if head >> 4 == 0x5 {
            return Some(value);
        }
        rest = &tail[len..];
    }
    None
}

/// A key slot: one key pair generated on the card and its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySlot {
    /// The authentication key (AUTH certificate).
    Auth,
    /// The signing key (SIGN certificate, non-repudiation).
    Sign,
}

impl KeySlot {
    pub const ALL: [KeySlot; 2] = [KeySlot::Auth, KeySlot::Sign];

    /// The slot's reference in the applet's commands.
    pub fn reference(self) -> u8 {
        match self {
            KeySlot::Auth => 0x01,
            KeySlot::Sign => 0x02,
        }
    }

    /// Its bit in the card information's bitmaps.
    pub(crate) fn bit(self) -> u8 {
        self.reference()
    }
}

impl fmt::Display for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySlot::Auth => "AUTH",
            KeySlot::Sign => "SIGN",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any ATR, even a lying one, is read without a panic.
        #[test]
        fn any_atr(atr in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Some(h) = historical_bytes(&atr) {
                proptest::prop_assert!(h.len() <= 15);
            }
            let _ = CardKind::from_atr(&atr);
        }
    }

    #[test]
    fn atr_recognition() {
        let id = [
            0x3B, 0x8A, 0x01, 0x80, 0x58, 0x4E, 0x55, 0x43, 0x4B, 0x5A, 0x2D, 0x49, 0x44, 0x2E,
        ];
        assert_eq!(CardKind::from_atr(&id), Some(CardKind::IdCard));
        // With TA1 and a TD1 → TD2 chain before the same historical bytes.
        let mut sim = vec![0x3B, 0x9B, 0x96, 0x80, 0x01, 0x80, 0x59];
        sim.extend_from_slice(b"NUCKZ-SIM");
        sim.push(0);
        assert_eq!(CardKind::from_atr(&sim), Some(CardKind::Sim));
        assert_eq!(
            CardKind::selection_order(&sim),
            [CardKind::Sim, CardKind::IdCard]
        );
        // A card of someone else, and garbage.
        assert_eq!(CardKind::from_atr(&[0x3B, 0x80, 0x80, 0x01, 0x01]), None);
        for junk in [&[][..], &[0x3B], &[0x3B, 0xFF], &[0x3B, 0x8F, 0x80]] {
            assert_eq!(CardKind::from_atr(junk), None);
        }
    }
}
