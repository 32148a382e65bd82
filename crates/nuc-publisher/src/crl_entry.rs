//! One entry of a CRL's revokedCertificates list (RFC 5280 §5.1), encoded from a revocation
//! row without a heap allocation: a CRL of ten million entries encodes ten million of them,
//! so this is where a CRL's build time goes.
//!
//! The bytes are those `x509_cert::crl::RevokedCert` gives for the same entry (the tests
//! compare the two on arbitrary rows); what is signed is then checked again by decoding it
//! ([`crate::crl_lint`]).

use std::time::{Duration, UNIX_EPOCH};

use const_oid::db::rfc5280::{ID_CE_CRL_REASONS, ID_CE_INVALIDITY_DATE};
use der::asn1::{GeneralizedTime, OctetStringRef, UintRef};
use der::{Encode, EncodeValue, FixedTag, Length, Sequence, Tag, Writer};
use nuc_core::RevocationReason;
use x509_cert::time::Time;

use crate::crl::PublishError;

/// RFC 5280 §4.1.2.2: a serial number is at most 20 octets.
const MAX_SERIAL_OCTETS: usize = 20;

/// An extension with `critical` left at its DEFAULT FALSE (every CRL entry extension here).
#[derive(Sequence)]
struct ExtensionOut<'a> {
    extn_id: const_oid::ObjectIdentifier,
    extn_value: &'a OctetStringRef,
}

/// A revokedCertificates entry, borrowing its parts.
pub(crate) struct EntryOut<'a> {
    serial: UintRef<'a>,
    revocation_date: Time,
    /// The DER of the ENUMERATED reasonCode, when the reason is not left out.
    reason: Option<[u8; 3]>,
    /// The DER of the invalidityDate's GeneralizedTime.
    invalidity_date: Option<[u8; 17]>,
}

impl FixedTag for EntryOut<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl EntryOut<'_> {
    fn extensions(&self) -> der::Result<(Option<ExtensionOut<'_>>, Option<ExtensionOut<'_>>)> {
        let reason = match &self.reason {
            Some(r) => Some(ExtensionOut {
                extn_id: ID_CE_CRL_REASONS,
                extn_value: OctetStringRef::new(r)?,
            }),
            None => None,
        };
        let invalidity = match &self.invalidity_date {
            Some(d) => Some(ExtensionOut {
                extn_id: ID_CE_INVALIDITY_DATE,
                extn_value: OctetStringRef::new(d)?,
            }),
            None => None,
        };
        Ok((reason, invalidity))
    }

    fn extensions_len(&self) -> der::Result<Length> {
        let (a, b) = self.extensions()?;
        a.as_ref().map_or(Ok(Length::ZERO), Encode::encoded_len)?
            + b.as_ref().map_or(Ok(Length::ZERO), Encode::encoded_len)?
    }
}

impl EncodeValue for EntryOut<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let exts = self.extensions_len()?;
        let exts = if exts == Length::ZERO {
            Length::ZERO
        } else {
            exts.for_tlv(Tag::Sequence)?
        };
        self.serial.encoded_len()? + self.revocation_date.encoded_len()? + exts
    }

    fn encode_value(&self, w: &mut impl Writer) -> der::Result<()> {
        self.serial.encode(w)?;
        self.revocation_date.encode(w)?;
        let len = self.extensions_len()?;
        if len != Length::ZERO {
            der::Header::new(Tag::Sequence, len).encode(w)?;
            let (a, b) = self.extensions()?;
            if let Some(a) = a {
                a.encode(w)?;
            }
            if let Some(b) = b {
                b.encode(w)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn time(unix: i64) -> Result<Time, der::Error> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

/// Encodes one revocation as an entry, appended to `out`.
pub(crate) fn encode_entry(
    out: &mut impl Writer,
    serial_hex: &str,
    reason: RevocationReason,
    revoked_at: i64,
    invalidity_date: Option<i64>,
) -> Result<(), PublishError> {
    let bad = |detail: String| PublishError::BadRevocation {
        serial: serial_hex.to_owned(),
        detail,
    };
    let mut serial_buf = [0u8; 32];
    if !serial_hex.len().is_multiple_of(2) || serial_hex.len() / 2 > serial_buf.len() {
        return Err(bad(format!(
            "serial is not hex of at most {MAX_SERIAL_OCTETS} octets"
        )));
    }
    let serial_bytes = &mut serial_buf[..serial_hex.len() / 2];
    hex::decode_to_slice(serial_hex, serial_bytes)
        .map_err(|e| bad(format!("serial is not hex: {e}")))?;
    let serial = UintRef::new(serial_bytes)?;
    if serial.value_len()? > Length::new(MAX_SERIAL_OCTETS as u32) {
        return Err(bad(format!(
            "serial is longer than {MAX_SERIAL_OCTETS} octets"
        )));
    }
    let reason = match crate::reason::entry_reason(reason) {
        // unspecified: RFC 5280 §5.3.1 says to omit the reasonCode rather than send it.
        Some(None) => None,
        Some(Some(r)) => {
            let mut buf = [0u8; 3];
            let mut w = der::SliceWriter::new(&mut buf);
            r.encode(&mut w)?;
            if w.finish()?.len() != buf.len() {
                return Err(bad(format!(
                    "reasonCode {reason} does not encode in 3 octets"
                )));
            }
            Some(buf)
        }
        None => return Err(bad(format!("{reason} is not a reason to revoke"))),
    };
    let invalidity_date = match invalidity_date {
        None => None,
        Some(d) => {
            let t = GeneralizedTime::from_unix_duration(Duration::from_secs(d.max(0) as u64))?;
            let mut buf = [0u8; 17];
            let mut w = der::SliceWriter::new(&mut buf);
            t.encode(&mut w)?;
            if w.finish()?.len() != buf.len() {
                return Err(bad("invalidityDate does not encode in 17 octets".into()));
            }
            Some(buf)
        }
    };
    EntryOut {
        serial,
        revocation_date: time(revoked_at)?,
        reason,
        invalidity_date,
    }
    .encode(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use const_oid::AssociatedOid;
    use der::asn1::OctetString;
    use proptest::prelude::*;
    use x509_cert::certificate::Rfc5280;
    use x509_cert::crl::RevokedCert;
    use x509_cert::ext::Extension;
    use x509_cert::serial_number::SerialNumber;

    /// The same entry through x509-cert's owned types: the reference the fast path must equal.
    fn reference(
        serial_hex: &str,
        reason: RevocationReason,
        revoked_at: i64,
        invalidity_date: Option<i64>,
    ) -> Vec<u8> {
        let ext = |oid, value: Vec<u8>| Extension {
            extn_id: oid,
            critical: false,
            extn_value: OctetString::new(value).unwrap(),
        };
        let mut exts = Vec::new();
        if let Some(Some(r)) = crate::reason::entry_reason(reason) {
            exts.push(ext(
                x509_cert::ext::pkix::CrlReason::OID,
                r.to_der().unwrap(),
            ));
        }
        if let Some(d) = invalidity_date {
            let t = GeneralizedTime::from_unix_duration(Duration::from_secs(d as u64)).unwrap();
            exts.push(ext(ID_CE_INVALIDITY_DATE, t.to_der().unwrap()));
        }
        RevokedCert {
            serial_number: SerialNumber::<Rfc5280>::new(&hex::decode(serial_hex).unwrap()).unwrap(),
            revocation_date: time(revoked_at).unwrap(),
            crl_entry_extensions: (!exts.is_empty()).then_some(exts),
        }
        .to_der()
        .unwrap()
    }

    fn fast(
        serial_hex: &str,
        reason: RevocationReason,
        revoked_at: i64,
        invalidity_date: Option<i64>,
    ) -> Result<Vec<u8>, PublishError> {
        let mut out = Vec::new();
        encode_entry(&mut out, serial_hex, reason, revoked_at, invalidity_date)?;
        Ok(out)
    }

    /// Every reason that revokes (8, removeFromCRL, does not).
    const REASONS: [i64; 9] = [0, 1, 2, 3, 4, 5, 6, 9, 10];

    proptest! {
        #[test]
        fn the_same_bytes_as_x509_cert(
            serial in proptest::collection::vec(any::<u8>(), 1..=20),
            reason in proptest::sample::select(&REASONS[..]),
            // Both UTCTime (before 2050) and GeneralizedTime revocation dates.
            revoked_at in 0i64..4_102_444_800,
            invalidity in proptest::option::of(0i64..4_102_444_800),
        ) {
            let mut serial = serial;
            serial[0] &= 0x7f; // how the CA draws serials: positive, 20 octets at most
            let hex = hex::encode(&serial);
            let reason = RevocationReason::from_code(reason).unwrap();
            prop_assert_eq!(
                fast(&hex, reason, revoked_at, invalidity).unwrap(),
                reference(&hex, reason, revoked_at, invalidity)
            );
        }
    }

    #[test]
    fn a_bad_serial_or_reason_is_refused_naming_the_serial() {
        let unspecified = RevocationReason::from_code(0).unwrap();
        for serial in ["abc", "zz", &"7f".repeat(21), &"ff".repeat(20)] {
            let err = fast(serial, unspecified, 0, None).unwrap_err().to_string();
            assert!(err.contains(serial), "{err}");
        }
        // Leading zero octets are not part of the integer: 21 given, 20 encoded.
        assert!(fast(&format!("00{}", "7f".repeat(20)), unspecified, 0, None).is_ok());
    }
}
