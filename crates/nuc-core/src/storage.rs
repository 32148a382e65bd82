//! Where an applicant's private keys live. It decides how long their certificates may be
//! valid (SPEC §4: one year for keys in files, up to three years on cards and tokens) and how
//! the CON workstation delivers the certificates (F4: written onto the card).

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
}

impl KeyStorage {
    /// The stored spelling: `file`, `id-card`, `sim-card`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStorage::File => "file",
            KeyStorage::IdCard => "id-card",
            KeyStorage::SimCard => "sim-card",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "file" => KeyStorage::File,
            "id-card" => KeyStorage::IdCard,
            "sim-card" => KeyStorage::SimCard,
            _ => return None,
        })
    }

    /// Whether the keys were generated on a card (and never left it).
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
        for k in [KeyStorage::File, KeyStorage::IdCard, KeyStorage::SimCard] {
            assert_eq!(KeyStorage::parse(k.as_str()), Some(k));
        }
        assert_eq!(KeyStorage::parse("usb"), None);
        assert!(KeyStorage::IdCard.on_card() && !KeyStorage::File.on_card());
    }
}
