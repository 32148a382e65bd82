//! IIN (ЖСН) and BIN (БСН): 12-digit identifiers with a mod-11 check digit.
//!
//! The rule: weights 1..11 over the first 11 digits, sum mod 11; if that gives 10, weights
//! 3..11,1,2; if 10 again the number cannot be valid. A bad number is refused before anything
//! else happens (SPEC §4), so the types below can only hold numbers that passed the check.

use std::fmt;
use std::str::FromStr;

/// Why a 12-digit identifier was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("{field}: must be exactly 12 digits, got {len} characters")]
    Length { field: &'static str, len: usize },
    #[error("{field}: must contain only digits 0-9")]
    NotDigits { field: &'static str },
    #[error("{field}: check digit is {got}, expected {expected}")]
    CheckDigit {
        field: &'static str,
        got: u8,
        expected: u8,
    },
    #[error("{field}: no valid check digit exists for this number")]
    NoCheckDigit { field: &'static str },
}

/// The check digit the first 11 digits call for, or `None` when the number cannot be valid.
pub fn check_digit(first11: &[u8; 11]) -> Option<u8> {
    let sum = |weights: [u8; 11]| -> u32 {
        first11
            .iter()
            .zip(weights)
            .map(|(d, w)| u32::from(*d) * u32::from(w))
            .sum::<u32>()
            % 11
    };
    let first = sum([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let digit = if first == 10 {
        sum([3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2])
    } else {
        first
    };
    (digit != 10).then_some(digit as u8)
}

fn parse12(field: &'static str, s: &str) -> Result<[u8; 12], IdentError> {
    let len = s.chars().count();
    if len != 12 {
        return Err(IdentError::Length { field, len });
    }
    let mut digits = [0u8; 12];
    for (slot, b) in digits.iter_mut().zip(s.bytes()) {
        if !b.is_ascii_digit() {
            return Err(IdentError::NotDigits { field });
        }
        *slot = b - b'0';
    }
    let first11: [u8; 11] = digits[..11].try_into().expect("11 digits");
    match check_digit(&first11) {
        None => Err(IdentError::NoCheckDigit { field }),
        Some(expected) if expected != digits[11] => Err(IdentError::CheckDigit {
            field,
            got: digits[11],
            expected,
        }),
        Some(_) => Ok(digits),
    }
}

macro_rules! ident_type {
    ($name:ident, $field:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and checks the 12 digits and the check digit.
            pub fn parse(s: &str) -> Result<Self, IdentError> {
                parse12($field, s.trim()).map(|_| Self(s.trim().to_owned()))
            }
            /// The 12 digits.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdentError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ident_type!(Iin, "iin", "Individual identification number (ИИН / ЖСН).");
ident_type!(Bin, "bin", "Business identification number (БИН / БСН).");

/// An IIN (or BIN) as logs and refusal messages may show it: the first four and the last two
/// digits (`8609******12`), enough to tell two people apart at a counter, not enough to be the
/// number. Anything that is not twelve digits is masked whole.
pub fn mask_iin(number: &str) -> String {
    let n = number.trim();
    if n.len() == 12 && n.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}******{}", &n[..4], &n[10..])
    } else {
        "************".to_owned()
    }
}

/// `text` with every IIN-shaped number in it masked as [`mask_iin`] does: any run of exactly
/// twelve digits that no other letter or digit touches (so a hex serial that happens to hold
/// twelve digits in a row is left alone). BINs are masked too: telling them apart would need
/// the registry, and a masked BIN costs a log reader nothing.
///
/// This is the last line of defence for logs (every log line of the binaries goes through
/// it); the places that know they log a person still mask explicitly.
pub fn mask_iins_in(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    // The subject's serialNumber attribute writes the number glued to its kind: `IIN860908363012`.
    let glued_to_kind = |i: usize| {
        i >= 3 && {
            let kind = bytes[i - 3..i].to_ascii_uppercase();
            (kind == b"IIN" || kind == b"BIN") && (i == 3 || !bytes[i - 4].is_ascii_alphanumeric())
        }
    };
    // In a JSON log line a newline or tab before the number is written `\n`, `\t`: the letter
    // of the escape is not a word the number belongs to.
    let after_escape = |i: usize| {
        i >= 2 && bytes[i - 2] == b'\\' && matches!(bytes[i - 1], b'n' | b't' | b'r' | b'b' | b'f')
    };
    let standalone = |i: usize, j: usize| {
        (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() || glued_to_kind(i) || after_escape(i))
            && (j == bytes.len() || !bytes[j].is_ascii_alphanumeric())
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j - i == 12 && standalone(i, j) {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..i]);
            o.push_str(&mask_iin(&text[i..j]));
            copied = j;
        }
        i = j;
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
    }
}

/// A log sink that masks IINs ([`mask_iins_in`]) in everything written through it; the
/// binaries put it between their log formatter and stderr. It does no I/O of its own: each
/// write (one formatted log line) is masked and handed whole to the inner writer.
pub struct MaskIins<W>(pub W);

impl<W: std::io::Write> std::io::Write for MaskIins<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(mask_iins_in(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_number_after_an_escaped_newline_in_a_json_line_is_masked() {
        let line = r#"{"fields":{"detail":"first line\n860908363012 second\t860908363012"}}"#;
        let masked = super::mask_iins_in(line);
        assert!(!masked.contains("860908363012"), "{masked}");
        // A word that merely ends in one of those letters still keeps its digits.
        assert_eq!(super::mask_iins_in("run860908363012"), "run860908363012");
    }

    #[test]
    fn a_log_line_is_written_masked() {
        use std::io::Write;
        let mut sink = super::MaskIins(Vec::new());
        sink.write_all(b"INFO refused message=\"IIN 860908363012 is not a registered operator\"\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(sink.0).unwrap(),
            "INFO refused message=\"IIN 8609******12 is not a registered operator\"\n"
        );
    }

    #[test]
    fn iins_in_text_are_masked_and_nothing_else() {
        use super::mask_iins_in;
        assert_eq!(
            mask_iins_in("the order names IIN 860908363012, the signer is 921002310220"),
            "the order names IIN 8609******12, the signer is 9210******20"
        );
        assert_eq!(
            mask_iins_in("operator:860908363012"),
            "operator:8609******12"
        );
        assert_eq!(
            mask_iins_in("CN=ТЕСТОВ ТЕСТ,SERIALNUMBER=IIN860908363012,C=KZ"),
            "CN=ТЕСТОВ ТЕСТ,SERIALNUMBER=IIN8609******12,C=KZ"
        );
        assert_eq!(mask_iins_in("BIN900726302864"), "BIN9007******64");
        // Not twelve digits, or part of a longer word (hex serials, timestamps): untouched.
        for kept in [
            "serial=1a2b860908363012ff",
            "serial=860908363012ab",
            "XIIN860908363012",
            "at 1764556800 (10 digits)",
            "micros 1234567890123",
            "86090836301",
            "",
        ] {
            assert_eq!(mask_iins_in(kept), kept);
        }
        assert!(matches!(
            mask_iins_in("no digits"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(mask_iins_in("860908363012"), "8609******12");
        assert_eq!(mask_iins_in("«860908363012»"), "«8609******12»");
    }

    #[test]
    fn masked_iins_keep_four_and_two_digits() {
        assert_eq!(super::mask_iin("860908363012"), "8609******12");
        assert_eq!(super::mask_iin(" 860908363012 "), "8609******12");
        assert_eq!(super::mask_iin("86090836301"), "************");
        assert_eq!(super::mask_iin("86090836301x"), "************");
    }

    use super::*;

    #[test]
    fn fixture_numbers_are_valid() {
        for iin in [
            "860908363012",
            "921002310220",
            "900726302864",
            "600716380640",
        ] {
            assert!(Iin::parse(iin).is_ok(), "{iin}");
        }
    }

    #[test]
    fn every_wrong_check_digit_is_refused_with_the_expected_one() {
        let good = "860908363012";
        for d in 0..=9u8 {
            let candidate = format!("{}{}", &good[..11], d);
            if candidate == good {
                continue;
            }
            assert_eq!(
                Iin::parse(&candidate),
                Err(IdentError::CheckDigit {
                    field: "iin",
                    got: d,
                    expected: 2
                })
            );
        }
    }

    #[test]
    fn second_weights_are_used_when_first_sum_gives_ten() {
        // 00000000001 with weights 1..11 gives 11 % 11 = 0; find a prefix whose first pass is 10.
        let mut seen_second_pass = false;
        for n in 0..20_000u32 {
            let s = format!("{n:011}");
            let d: [u8; 11] = s
                .as_bytes()
                .iter()
                .map(|b| b - b'0')
                .collect::<Vec<_>>()
                .try_into()
                .unwrap();
            let first: u32 = d
                .iter()
                .zip(1..=11u32)
                .map(|(x, w)| u32::from(*x) * w)
                .sum::<u32>()
                % 11;
            if first == 10 {
                seen_second_pass = true;
                let second: u32 = d
                    .iter()
                    .zip([3u32, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2])
                    .map(|(x, w)| u32::from(*x) * w)
                    .sum::<u32>()
                    % 11;
                assert_eq!(check_digit(&d), (second != 10).then_some(second as u8));
            }
        }
        assert!(seen_second_pass);
    }

    #[test]
    fn malformed_inputs_name_the_field() {
        assert_eq!(
            Bin::parse("12345"),
            Err(IdentError::Length {
                field: "bin",
                len: 5
            })
        );
        assert_eq!(
            Iin::parse("86090836301x"),
            Err(IdentError::NotDigits { field: "iin" })
        );
        assert_eq!(
            Iin::parse("８６０９０８３６３０１２").unwrap_err(),
            IdentError::NotDigits { field: "iin" }
        );
    }
}
