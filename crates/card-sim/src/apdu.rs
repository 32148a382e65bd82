//! C-APDU parsing (ISO 7816-3 §12.1.3, ISO 7816-4 §5.1): the four cases, short and extended.
//!
//! Anything that is not exactly one of the cases is refused with `6700` (wrong length); the
//! parser only borrows from the input and never panics, whatever the bytes.

use crate::sw::{self, Sw};

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    /// The command data field (empty in cases 1 and 2).
    pub data: &'a [u8],
    /// Ne, the number of bytes the host expects at most; `None` when Le is absent.
    pub ne: Option<usize>,
}

impl Command<'_> {
    /// P1 and P2 as one number.
    pub fn p1p2(&self) -> u16 {
        u16::from_be_bytes([self.p1, self.p2])
    }
}

/// Parses one C-APDU.
pub fn parse(apdu: &[u8]) -> Result<Command<'_>, Sw> {
    let [cla, ins, p1, p2, body @ ..] = apdu else {
        return Err(sw::WRONG_LENGTH);
    };
    let (data, ne) = parse_body(body)?;
    Ok(Command {
        cla: *cla,
        ins: *ins,
        p1: *p1,
        p2: *p2,
        data,
        ne,
    })
}

/// The part after the header: nothing (case 1), Le (case 2), Lc+data (case 3), Lc+data+Le
/// (case 4), each short or extended.
fn parse_body(body: &[u8]) -> Result<(&[u8], Option<usize>), Sw> {
    match body {
        [] => Ok((&[], None)),
        // Case 2S.
        [le] => Ok((&[], Some(short_ne(*le)))),
        // Extended lengths start with a 00 byte where a short Lc would be.
        [0, rest @ ..] => parse_extended(rest),
        [lc, rest @ ..] => {
            let lc = usize::from(*lc);
            match rest.len().checked_sub(lc) {
                Some(0) => Ok((rest, None)),
                Some(1) => Ok((&rest[..lc], Some(short_ne(rest[lc])))),
                _ => Err(sw::WRONG_LENGTH),
            }
        }
    }
}

fn parse_extended(rest: &[u8]) -> Result<(&[u8], Option<usize>), Sw> {
    match rest {
        // Case 2E.
        [hi, lo] => Ok((&[], Some(extended_ne(*hi, *lo)))),
        [hi, lo, tail @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            if lc == 0 {
                return Err(sw::WRONG_LENGTH);
            }
            match tail.len().checked_sub(lc) {
                Some(0) => Ok((tail, None)),
                Some(2) => Ok((&tail[..lc], Some(extended_ne(tail[lc], tail[lc + 1])))),
                _ => Err(sw::WRONG_LENGTH),
            }
        }
        _ => Err(sw::WRONG_LENGTH),
    }
}

fn short_ne(le: u8) -> usize {
    if le == 0 { 256 } else { usize::from(le) }
}

fn extended_ne(hi: u8, lo: u8) -> usize {
    match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => usize::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_short_cases() {
        let c = parse(&[0, 0xA4, 4, 0]).unwrap();
        assert_eq!((c.data, c.ne), (&[][..], None));
        let c = parse(&[0, 0xCA, 1, 0, 0]).unwrap();
        assert_eq!(c.ne, Some(256));
        let c = parse(&[0, 0x20, 0, 0x81, 2, 1, 2]).unwrap();
        assert_eq!((c.data, c.ne), (&[1, 2][..], None));
        let c = parse(&[0, 0x2A, 0x9E, 0x9A, 1, 7, 0x40]).unwrap();
        assert_eq!((c.data, c.ne), (&[7][..], Some(0x40)));
    }

    #[test]
    fn extended_cases() {
        assert_eq!(parse(&[0, 0xCA, 1, 0, 0, 0, 0]).unwrap().ne, Some(65536));
        let c = parse(&[0, 0xDB, 0xC1, 1, 0, 0, 2, 9, 9]).unwrap();
        assert_eq!((c.data, c.ne), (&[9, 9][..], None));
        let c = parse(&[0, 0xDB, 0xC1, 1, 0, 0, 1, 9, 1, 0]).unwrap();
        assert_eq!((c.data, c.ne), (&[9][..], Some(256)));
    }

    #[test]
    fn malformed_lengths_are_wrong_length() {
        for bad in [
            &[][..],
            &[0, 1, 2],
            &[0, 0x20, 0, 0x81, 3, 1, 2],
            &[0, 0x20, 0, 0x81, 1, 1, 2, 3],
            &[0, 0xCA, 1, 0, 0, 0],
            &[0, 0xCA, 1, 0, 0, 0, 0, 0],
            &[0, 0xDB, 0xC1, 1, 0, 0, 2, 9],
        ] {
            assert_eq!(parse(bad), Err(sw::WRONG_LENGTH), "{bad:02X?}");
        }
    }
}
