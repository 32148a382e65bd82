//! Request numbers: short enough to read over a counter, unambiguous (Crockford base32, no
//! I/L/O/U), with a check character so that a mistyped number is caught before any lookup.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn check_char(body: &[u8]) -> u8 {
    let sum: usize = body
        .iter()
        .enumerate()
        .map(|(i, c)| (i + 1) * value(*c).unwrap_or(0) as usize)
        .sum();
    ALPHABET[sum % 31]
}

fn value(c: u8) -> Option<u8> {
    ALPHABET
        .iter()
        .position(|a| *a == c.to_ascii_uppercase())
        .map(|p| p as u8)
}

/// A new random number, `NUC-XXXX-XXXX-C`.
pub fn generate() -> String {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).expect("system randomness");
    let body: Vec<u8> = raw.iter().map(|b| ALPHABET[(b % 32) as usize]).collect();
    let c = check_char(&body);
    format!(
        "NUC-{}-{}-{}",
        std::str::from_utf8(&body[..4]).expect("ascii"),
        std::str::from_utf8(&body[4..]).expect("ascii"),
        c as char
    )
}

/// Whether `s` is a well-formed number with a correct check character (case-insensitive).
pub fn is_valid(s: &str) -> bool {
    let s = s.trim().to_ascii_uppercase();
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() != 4
        || parts[0] != "NUC"
        || parts[1].len() != 4
        || parts[2].len() != 4
        || parts[3].len() != 1
    {
        return false;
    }
    let body: Vec<u8> = parts[1].bytes().chain(parts[2].bytes()).collect();
    body.iter().all(|c| value(*c).is_some()) && parts[3].as_bytes()[0] == check_char(&body)
}

/// The canonical spelling (upper case, trimmed).
pub fn canonical(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_numbers_are_valid_and_a_typo_is_caught() {
        for _ in 0..1000 {
            let n = super::generate();
            assert!(super::is_valid(&n), "{n}");
            let mut typo = n.clone().into_bytes();
            typo[5] = if typo[5] == b'7' { b'8' } else { b'7' };
            assert!(!super::is_valid(std::str::from_utf8(&typo).unwrap()), "{n}");
        }
        assert!(!super::is_valid("NUC-1234-5678"));
        assert!(!super::is_valid(""));
    }
}
