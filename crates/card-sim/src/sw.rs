//! Status words the applet answers with (ISO 7816-4 §5.1.3), and their meaning.
//!
//! The host side (`nuc-card`) keeps its own table of the same words: the two are checked against
//! each other by the tests, never shared, so a real card's applet can be mapped onto the host
//! without this emulator.

/// A status word SW1-SW2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sw(pub u16);

pub const OK: Sw = Sw(0x9000);
pub const MEMORY_FAILURE: Sw = Sw(0x6581);
pub const WRONG_LENGTH: Sw = Sw(0x6700);
pub const CHANNEL_NOT_SUPPORTED: Sw = Sw(0x6881);
pub const SM_NOT_SUPPORTED: Sw = Sw(0x6882);
pub const LAST_OF_CHAIN_EXPECTED: Sw = Sw(0x6883);
pub const CHAINING_NOT_SUPPORTED: Sw = Sw(0x6884);
pub const SECURITY_NOT_SATISFIED: Sw = Sw(0x6982);
pub const PIN_BLOCKED: Sw = Sw(0x6983);
pub const CONDITIONS_NOT_SATISFIED: Sw = Sw(0x6985);
pub const INCORRECT_DATA: Sw = Sw(0x6A80);
pub const APPLET_NOT_FOUND: Sw = Sw(0x6A82);
pub const NOT_ENOUGH_MEMORY: Sw = Sw(0x6A84);
pub const INCORRECT_P1P2: Sw = Sw(0x6A86);
pub const DATA_NOT_FOUND: Sw = Sw(0x6A88);
pub const INS_NOT_SUPPORTED: Sw = Sw(0x6D00);
pub const CLA_NOT_SUPPORTED: Sw = Sw(0x6E00);
pub const INTERNAL_ERROR: Sw = Sw(0x6F00);

impl Sw {
    /// `63Cx`: wrong PIN, `tries` left (at most 15 can be told).
    pub fn wrong_pin(tries: u8) -> Sw {
        Sw(0x63C0 | u16::from(tries.min(0x0F)))
    }

    /// `61xx`: `remaining` bytes wait for GET RESPONSE (`00` stands for 256 or more).
    pub fn more_data(remaining: usize) -> Sw {
        Sw(0x6100 | (remaining.min(256) & 0xFF) as u16)
    }

    /// The two bytes as they go on the wire.
    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// A short meaning, for traces.
    pub fn meaning(self) -> &'static str {
        match self.0 {
            0x9000 => "success",
            0x6100..=0x61FF => "more data",
            0x63C0..=0x63CF => "wrong PIN",
            0x6581 => "memory failure",
            0x6700 => "wrong length",
            0x6881 => "logical channel not supported",
            0x6882 => "secure messaging not supported",
            0x6883 => "last command of the chain expected",
            0x6884 => "command chaining not supported",
            0x6982 => "security status not satisfied",
            0x6983 => "PIN blocked",
            0x6985 => "conditions of use not satisfied",
            0x6A80 => "incorrect data",
            0x6A82 => "applet not found",
            0x6A84 => "not enough memory",
            0x6A86 => "incorrect P1-P2",
            0x6A88 => "referenced data not found",
            0x6D00 => "instruction not supported",
            0x6E00 => "class not supported",
            _ => "internal error",
        }
    }
}

impl std::fmt::Display for Sw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.meaning())
    }
}
