//! One entry of a CRL's revokedCertificates list (RFC 5280 §5.1), encoded from a revocation
//! row into a stack buffer: a CRL of ten million entries encodes ten million of them, so this
//! is where a CRL's build time goes, and it allocates nothing.
//!
//! An entry is small and its shape fixed (every length fits one octet), so the framing is
//! written here octet by octet; the times are encoded by `der`. The bytes are those
//! `x509_cert::crl::RevokedCert` gives for the same entry (the tests compare the two on
//! arbitrary rows), and what is signed is checked again by decoding it
//! ([`crate::crl_lint`]).

use std::time::{Duration, UNIX_EPOCH};

use der::Encode;
use der::asn1::GeneralizedTime;
use nuc_core::RevocationReason;
use x509_cert::time::Time;

use crate::crl::PublishError;

/// RFC 5280 §4.1.2.2: a serial number is at most 20 octets (its sign octet included).
const MAX_SERIAL_OCTETS: usize = 20;

/// The longest entry: SEQUENCE header, INTEGER of 20 octets, GeneralizedTime, and both
/// extensions in their SEQUENCE. Every length inside is below 128: one length octet each.
const MAX_ENTRY: usize =
    2 + (2 + MAX_SERIAL_OCTETS) + 17 + 2 + REASON_EXT.len() + 1 + INVALIDITY_EXT.len() + 17;

/// Extension { extnID id-ce-cRLReasons (2.5.29.21), extnValue OCTET STRING { ENUMERATED } }
/// up to the reason code, the one octet that follows.
const REASON_EXT: [u8; 11] = [
    0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01,
];

/// Extension { extnID id-ce-invalidityDate (2.5.29.24), extnValue OCTET STRING {
/// GeneralizedTime } } up to the time, the 17 octets that follow.
const INVALIDITY_EXT: [u8; 9] = [0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11];

pub(crate) fn time(unix: i64) -> Result<Time, der::Error> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

/// Appends `bytes` at `at` in `buf`; the new end.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

/// Encodes one revocation as an entry, appended to `out`.
pub(crate) fn encode_entry(
    out: &mut impl std::io::Write,
    serial_hex: &str,
    reason: RevocationReason,
    revoked_at: i64,
    invalidity_date: Option<i64>,
) -> Result<(), PublishError> {
    let mut buf = [0u8; MAX_ENTRY];
    let len = entry(&mut buf, serial_hex, reason, revoked_at, invalidity_date)?;
    out.write_all(&buf[..len])
        .map_err(|e| PublishError::Spool(e.to_string()))
}

/// Writes the entry into `buf`; its length.
fn entry(
    buf: &mut [u8; MAX_ENTRY],
    serial_hex: &str,
    reason: RevocationReason,
    revoked_at: i64,
    invalidity_date: Option<i64>,
) -> Result<usize, PublishError> {
    let bad = |detail: String| PublishError::BadRevocation {
        serial: serial_hex.to_owned(),
        detail,
    };
    // The serial as a DER INTEGER: leading zero octets dropped, one added before a high bit.
    let mut serial_buf = [0u8; 32];
    if !serial_hex.len().is_multiple_of(2)
        || serial_hex.is_empty()
        || serial_hex.len() / 2 > serial_buf.len()
    {
        return Err(bad(format!(
            "serial is not hex of at most {MAX_SERIAL_OCTETS} octets"
        )));
    }
    let serial = &mut serial_buf[..serial_hex.len() / 2];
    hex::decode_to_slice(serial_hex, serial).map_err(|e| bad(format!("serial is not hex: {e}")))?;
    let first = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len() - 1);
    let serial = &serial[first..];
    let pad = serial[0] & 0x80 != 0;
    let serial_len = serial.len() + usize::from(pad);
    if serial_len > MAX_SERIAL_OCTETS {
        return Err(bad(format!(
            "serial is longer than {MAX_SERIAL_OCTETS} octets"
        )));
    }
    let reason = match crate::reason::entry_reason(reason) {
        // unspecified: RFC 5280 §5.3.1 says to omit the reasonCode rather than send it.
        Some(None) => None,
        // The enumeration's discriminants are the codes (reason.rs checks it).
        Some(Some(r)) => Some(r as u8),
        None => return Err(bad(format!("{reason} is not a reason to revoke"))),
    };
    let mut date = [0u8; 17];
    let date_len = time(revoked_at)?.encode_to_slice(&mut date)?.len();
    let mut invalidity = [0u8; 17];
    if let Some(d) = invalidity_date {
        let t = GeneralizedTime::from_unix_duration(Duration::from_secs(d.max(0) as u64))?;
        if t.encode_to_slice(&mut invalidity)?.len() != invalidity.len() {
            return Err(bad("invalidityDate does not encode in 17 octets".into()));
        }
    }
    let exts_len = reason.map_or(0, |_| REASON_EXT.len() + 1)
        + invalidity_date.map_or(0, |_| INVALIDITY_EXT.len() + invalidity.len());
    let body_len = 2 + serial_len + date_len + if exts_len > 0 { 2 + exts_len } else { 0 };
    // Every length is below 128 (MAX_ENTRY is): one length octet each.
    let mut at = put(buf, 0, &[0x30, body_len as u8, 0x02, serial_len as u8]);
    if pad {
        at = put(buf, at, &[0]);
    }
    at = put(buf, at, serial);
    at = put(buf, at, &date[..date_len]);
    if exts_len > 0 {
        at = put(buf, at, &[0x30, exts_len as u8]);
        if let Some(code) = reason {
            at = put(buf, at, &REASON_EXT);
            at = put(buf, at, &[code]);
        }
        if invalidity_date.is_some() {
            at = put(buf, at, &INVALIDITY_EXT);
            at = put(buf, at, &invalidity);
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use const_oid::AssociatedOid;
    use const_oid::db::rfc5280::ID_CE_INVALIDITY_DATE;
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
