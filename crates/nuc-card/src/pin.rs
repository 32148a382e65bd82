//! The card PIN as the applicant enters it: checked for form before it goes anywhere, wiped from
//! memory when dropped, and never printed (its `Debug` shows nothing of it).

use std::fmt;

use zeroize::Zeroizing;

use crate::error::CardError;

/// A card PIN: 4 to 12 ASCII digits.
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    pub fn new(digits: &str) -> Result<Pin, CardError> {
        let bytes = digits.as_bytes();
        if !(4..=12).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(CardError::BadPinFormat);
        }
        Ok(Pin(Zeroizing::new(bytes.to_vec())))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_redaction() {
        let pin = Pin::new("123456").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
        for bad in ["123", "1234567890123", "12a4", "", "１２３４"] {
            assert!(
                matches!(Pin::new(bad), Err(CardError::BadPinFormat)),
                "{bad}"
            );
        }
    }
}
