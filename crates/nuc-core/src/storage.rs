//! Where an applicant's private keys live. It decides how long their certificates may be
//! valid (SPEC §4: one year for keys in files, up to three years on cards and tokens) and how
//! the CON workstation delivers the certificates (F4: written onto the card or the USB token).
//!
//! Every storage but [`KeyStorage::File`] is *hardware*: the keys were generated at a CON on a
//! device that never lets them out (an ID card, a SIM card, or a PKCS#11 USB token such as
//! Kaztoken, JaCarta, eToken PRO or AKey). The CA gives all of them the same validity, the
//! profile's `validity_days_on_card` (ca-policy/profiles.toml): the law sets one limit for
//! cards and tokens alike.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyStorage {
    /// A file or a token the applicant keeps (F1 online, F2).
    #[default]
    File,
    /// Generated on the chip of an ID card at a CON (F4).
    IdCard,
    /// Generated on a SIM card at a CON (F4).
    SimCard,
    /// Generated on a PKCS#11 USB token (Kaztoken, JaCarta, eToken PRO, AKey) at a CON (F4).
    Token,
}

impl KeyStorage {
    /// Every storage, in the order of its proto number.
    pub const ALL: [KeyStorage; 4] = [
        KeyStorage::File,
        KeyStorage::IdCard,
        KeyStorage::SimCard,
        KeyStorage::Token,
    ];

    /// The stored spelling: `file`, `id-card`, `sim-card`, `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStorage::File => "file",
            KeyStorage::IdCard => "id-card",
            KeyStorage::SimCard => "sim-card",
            KeyStorage::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "file" => KeyStorage::File,
            "id-card" => KeyStorage::IdCard,
            "sim-card" => KeyStorage::SimCard,
            "token" => KeyStorage::Token,
            _ => return None,
        })
    }

    /// Whether the keys were generated on hardware at a CON (an ID card, a SIM card or a USB
    /// token) and never left it: such certificates get the profile's `validity_days_on_card`
    /// and are registered at the counter. The name is historical: a token counts as a card.
    pub fn on_card(self) -> bool {
        !matches!(self, KeyStorage::File)
    }
}

impl fmt::Display for KeyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for k in KeyStorage::ALL {
            assert_eq!(KeyStorage::parse(k.as_str()), Some(k));
        }
        assert_eq!(KeyStorage::parse("usb"), None);
        assert!(KeyStorage::IdCard.on_card() && !KeyStorage::File.on_card());
        // A USB token is hardware: its certificates get the validity of keys on cards.
        assert!(KeyStorage::Token.on_card());
        assert_eq!(KeyStorage::Token.as_str(), "token");
    }
}
