//! Status words, with the meaning an operator can act on.
//!
//! The wording follows ISO 7816-4 and the NUC applet's own use of each word (documented with the
//! emulator, crate `card-sim`); an error names the word and its meaning, e.g.
//! `SW 63C1: wrong PIN, 1 try left`.

use std::fmt;

/// SW1-SW2 of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: StatusWord = StatusWord(0x9000);
    pub const WRONG_LENGTH: StatusWord = StatusWord(0x6700);
    pub const SECURITY_NOT_SATISFIED: StatusWord = StatusWord(0x6982);
    pub const PIN_BLOCKED: StatusWord = StatusWord(0x6983);
    pub const APPLET_NOT_FOUND: StatusWord = StatusWord(0x6A82);
    pub const DATA_NOT_FOUND: StatusWord = StatusWord(0x6A88);

    pub fn from_bytes(sw1: u8, sw2: u8) -> StatusWord {
        StatusWord(u16::from_be_bytes([sw1, sw2]))
    }

    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub fn sw2(self) -> u8 {
        self.0 as u8
    }

    pub fn is_ok(self) -> bool {
        self == StatusWord::OK
    }

    /// `63Cx`: the tries left after a wrong PIN.
    pub fn pin_tries_left(self) -> Option<u8> {
        (self.0 & 0xFFF0 == 0x63C0).then_some(self.sw2() & 0x0F)
    }

    /// What the word means, in words.
    pub fn meaning(self) -> String {
        if let Some(n) = self.pin_tries_left() {
            return match n {
                0 => "wrong PIN, no tries left: the PIN is now blocked".into(),
                1 => "wrong PIN, 1 try left".into(),
                n => format!("wrong PIN, {n} tries left"),
            };
        }
        let text = match self.0 {
            0x9000 => "success",
            0x6100..=0x61FF => "more data to get with GET RESPONSE",
            0x6281 => "part of the returned data may be corrupted",
            0x6581 => "memory failure: the card could not store the change",
            0x6700 => "wrong length",
            0x6881 => "logical channel not supported",
            0x6882 => "secure messaging not supported",
            0x6883 => "last command of the chain expected",
            0x6884 => "command chaining not supported",
            0x6982 => "security status not satisfied (PIN not verified)",
            0x6983 => "PIN blocked, no tries left",
            0x6984 => "reference data not usable",
            0x6985 => "conditions of use not satisfied",
            0x6986 => "command not allowed",
            0x6A80 => "incorrect data",
            0x6A81 => "function not supported",
            0x6A82 => "applet or file not found",
            0x6A84 => "not enough memory on the card",
            0x6A86 => "incorrect P1-P2",
            0x6A88 => "referenced data not found",
            0x6B00 => "wrong parameters P1-P2",
            0x6C00..=0x6CFF => "wrong Le",
            0x6D00 => "instruction not supported",
            0x6E00 => "class not supported",
            0x6F00 => "internal error of the card",
            _ => "unknown status",
        };
        text.into()
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SW {:04X}: {}", self.0, self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_word_and_its_meaning() {
        assert_eq!(
            StatusWord(0x63C1).to_string(),
            "SW 63C1: wrong PIN, 1 try left"
        );
        assert_eq!(
            StatusWord(0x63C2).to_string(),
            "SW 63C2: wrong PIN, 2 tries left"
        );
        assert_eq!(
            StatusWord(0x6983).to_string(),
            "SW 6983: PIN blocked, no tries left"
        );
        assert_eq!(StatusWord(0x63C2).pin_tries_left(), Some(2));
        assert_eq!(StatusWord(0x6300).pin_tries_left(), None);
        assert_eq!(StatusWord(0x1234).to_string(), "SW 1234: unknown status");
    }
}
