//! What makes an ID card an ID card and a SIM a SIM: the ATR, the AID, the kind byte; and the
//! key slots both carry.

use serde::{Deserialize, Serialize};

/// The two kinds of card the NUC writes certificates onto at a CON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardKind {
    /// The national ID card with a chip.
    IdCard,
    /// A SIM card of a mobile operator carrying the NUC applet.
    Sim,
}

/// Issuer data in the historical bytes of the ID card's ATR.
const ID_ISSUER_DATA: &[u8] = b"NUCKZ-ID";
/// Issuer data in the historical bytes of the SIM's ATR.
const SIM_ISSUER_DATA: &[u8] = b"NUCKZ-SIM";

/// Proprietary AIDs (category `F`: not registered): `F0 "NUCKZ" "ID" 01` and `F0 "NUCKZ" "SIM" 01`.
const ID_AID: &[u8] = &[0xF0, 0x4E, 0x55, 0x43, 0x4B, 0x5A, 0x49, 0x44, 0x01];
const SIM_AID: &[u8] = &[0xF0, 0x4E, 0x55, 0x43, 0x4B, 0x5A, 0x53, 0x49, 0x4D, 0x01];

impl CardKind {
    /// The kind byte in GET DATA and the FCI.
    pub fn code(self) -> u8 {
        match self {
            CardKind::IdCard => 0x01,
            CardKind::Sim => 0x02,
        }
    }

    /// The applet's AID.
    pub fn aid(self) -> &'static [u8] {
        match self {
            CardKind::IdCard => ID_AID,
            CardKind::Sim => SIM_AID,
        }
    }

    /// The ATR: TS=3B (direct convention), T0 announcing TD1 and the historical bytes, TD1=01
    /// (T=1 only), the historical bytes (category 80, then a compact-TLV "card issuer's data"
    /// object, tag 5), and TCK, the XOR of every byte from T0 on (required when T=1 is offered).
    pub fn atr(self) -> Vec<u8> {
        let issuer = match self {
            CardKind::IdCard => ID_ISSUER_DATA,
            CardKind::Sim => SIM_ISSUER_DATA,
        };
        let mut historical = vec![0x80, 0x50 | issuer.len() as u8];
        historical.extend_from_slice(issuer);
        let mut atr = vec![0x3B, 0x80 | historical.len() as u8, 0x01];
        atr.extend_from_slice(&historical);
        let tck = atr[1..].iter().fold(0u8, |x, b| x ^ b);
        atr.push(tck);
        atr
    }

    pub fn name(self) -> &'static str {
        match self {
            CardKind::IdCard => "ID card",
            CardKind::Sim => "SIM card",
        }
    }
}

/// A key slot: each holds one key pair generated on the card and its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Authentication key (the AUTH certificate).
    Auth,
    /// Signing key (the SIGN certificate, non-repudiation).
    Sign,
}

impl Slot {
    /// The slot's reference in P2 and in the MANAGE SECURITY ENVIRONMENT template.
    pub fn from_ref(byte: u8) -> Option<Slot> {
        match byte {
            0x01 => Some(Slot::Auth),
            0x02 => Some(Slot::Sign),
            _ => None,
        }
    }

    pub fn reference(self) -> u8 {
        match self {
            Slot::Auth => 0x01,
            Slot::Sign => 0x02,
        }
    }

    /// Its bit in the GET DATA bitmaps.
    pub fn bit(self) -> u8 {
        match self {
            Slot::Auth => 0x01,
            Slot::Sign => 0x02,
        }
    }

    pub const ALL: [Slot; 2] = [Slot::Auth, Slot::Sign];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atrs_are_well_formed_and_distinct() {
        let id = CardKind::IdCard.atr();
        let sim = CardKind::Sim.atr();
        assert_ne!(id, sim);
        for atr in [&id, &sim] {
            assert_eq!(atr[0], 0x3B);
            let k = usize::from(atr[1] & 0x0F);
            // TS T0 TD1 + K historical bytes + TCK.
            assert_eq!(atr.len(), 3 + k + 1);
            assert_eq!(atr[1..].iter().fold(0u8, |x, b| x ^ b), 0, "TCK");
        }
        assert_eq!(&id[..5], &[0x3B, 0x8A, 0x01, 0x80, 0x58]);
        assert_eq!(&sim[..5], &[0x3B, 0x8B, 0x01, 0x80, 0x59]);
    }
}
