//! Lint of a CRL before the HSM signs it: the TBSCertList bytes we are about to sign are
//! decoded again, independently of how they were built, and every field is compared with what
//! this publication means to say. A CRL that fails is never signed (as with certificates: the
//! HSM's signature is the point of no return).
//!
//! The revoked entries are decoded one at a time from the encoded list, so the lint's memory
//! does not grow with the number of revocations either.

use std::collections::HashSet;

use const_oid::AssociatedOid;
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::ID_CE_INVALIDITY_DATE;
use der::asn1::{AnyRef, ContextSpecific};
use der::{Decode, DecodeValue, FixedTag, Header, Reader, SliceReader, Tag, TagNumber};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Version;
use x509_cert::crl::RevokedCert;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BaseCrlNumber, CrlNumber, CrlReason, FreshestCrl,
};
use x509_cert::name::Name;
use x509_cert::time::Time;

/// What the CRL must say.
pub struct Expected<'a> {
    pub issuer: &'a Name,
    pub issuer_key_id: &'a [u8],
    pub signature: &'a AlgorithmIdentifierOwned,
    pub number: u64,
    /// The base CRL number, for a delta.
    pub base: Option<u64>,
    pub this_update: i64,
    pub next_update: i64,
    /// How many revoked certificates it must list.
    pub entries: i64,
    /// Whether it must point to the delta CRLs (FreshestCRL): complete CRLs of the issuing CA.
    pub freshest_crl: bool,
}

/// TBSCertList as RFC 5280 §5.1 lays it out, with the revoked list left encoded (the body of
/// its SEQUENCE OF).
struct TbsCertListIn<'a> {
    version: Version,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    this_update: Time,
    next_update: Option<Time>,
    revoked_certificates: Option<&'a [u8]>,
    crl_extensions: Option<Vec<Extension>>,
}

impl FixedTag for TbsCertListIn<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for TbsCertListIn<'a> {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(r: &mut R, _header: Header) -> der::Result<Self> {
        let version = Version::decode(r)?;
        let signature = AlgorithmIdentifierOwned::decode(r)?;
        let issuer = Name::decode(r)?;
        let this_update = Time::decode(r)?;
        let next_update = Option::<Time>::decode(r)?;
        // The list is the only SEQUENCE that can come here; the extensions are [0].
        let revoked_certificates = if !r.is_finished() && Tag::peek(r)? == Tag::Sequence {
            Some(AnyRef::decode(r)?.value())
        } else {
            None
        };
        let crl_extensions =
            ContextSpecific::<Vec<Extension>>::decode_explicit(r, TagNumber(0))?.map(|c| c.value);
        Ok(Self {
            version,
            signature,
            issuer,
            this_update,
            next_update,
            revoked_certificates,
            crl_extensions,
        })
    }
}

/// A `Uint`'s value (its octets, leading zeros stripped) as a u64, if it fits.
fn uint_u64(bytes: &[u8]) -> Option<u64> {
    (bytes.len() <= 8).then(|| bytes.iter().fold(0u64, |n, x| (n << 8) | u64::from(*x)))
}

fn unix(t: &Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn ext_value<T: for<'b> Decode<'b, Error = der::Error>>(e: &Extension) -> Option<T> {
    T::from_der(e.extn_value.as_bytes()).ok()
}

/// Lints the DER TBSCertList. `Ok(())` or every finding.
pub fn lint(tbs_der: &[u8], want: &Expected<'_>) -> Result<(), Vec<String>> {
    let tbs = match TbsCertListIn::from_der(tbs_der) {
        Ok(t) => t,
        Err(e) => return Err(vec![format!("TBSCertList does not decode: {e}")]),
    };
    let mut f = Vec::new();
    if tbs.version != Version::V2 {
        f.push("version is not v2".into());
    }
    if &tbs.signature != want.signature {
        f.push("signature algorithm is not the CA key's".into());
    }
    if &tbs.issuer != want.issuer {
        f.push("issuer is not the CA's subject".into());
    }
    if unix(&tbs.this_update) != want.this_update {
        f.push("thisUpdate is not the publication time".into());
    }
    match &tbs.next_update {
        None => {
            f.push("nextUpdate is missing (RFC 5280 §5.1.2.5: conforming CAs include it)".into())
        }
        Some(n) if unix(n) != want.next_update || unix(n) <= want.this_update => {
            f.push("nextUpdate is not the one configured, or not after thisUpdate".into())
        }
        Some(_) => {}
    }
    lint_extensions(
        tbs.crl_extensions.as_deref().unwrap_or_default(),
        want,
        &mut f,
    );
    match tbs.revoked_certificates {
        None if want.entries != 0 => f.push(format!(
            "no revoked certificates listed, {} expected",
            want.entries
        )),
        None => {}
        Some(list) => lint_entries(list, want, &mut f),
    }
    if f.is_empty() { Ok(()) } else { Err(f) }
}

fn lint_extensions(exts: &[Extension], want: &Expected<'_>, f: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            f.push(format!("extension {} appears twice", e.extn_id));
        }
    }
    let find = |oid: ObjectIdentifier| exts.iter().find(|e| e.extn_id == oid);
    match find(AuthorityKeyIdentifier::OID) {
        Some(e) if !e.critical => match ext_value::<AuthorityKeyIdentifier>(e) {
            Some(aki)
                if aki.key_identifier.as_ref().map(|k| k.as_bytes())
                    == Some(want.issuer_key_id) => {}
            _ => f.push("authorityKeyIdentifier does not name the CA's key".into()),
        },
        _ => f.push("authorityKeyIdentifier missing or critical".into()),
    }
    match find(CrlNumber::OID) {
        Some(e) if !e.critical => match ext_value::<CrlNumber>(e) {
            Some(n) if uint_u64(n.0.as_bytes()) == Some(want.number) => {}
            _ => f.push(format!("cRLNumber is not {}", want.number)),
        },
        _ => f.push("cRLNumber missing or critical (RFC 5280 §5.2.3)".into()),
    }
    match (find(BaseCrlNumber::OID), want.base) {
        (None, None) => {}
        (Some(e), Some(base)) if e.critical => match ext_value::<BaseCrlNumber>(e) {
            Some(b) if uint_u64(b.0.as_bytes()) == Some(base) && base <= want.number => {}
            _ => f.push(format!("deltaCRLIndicator is not base {base}")),
        },
        (Some(_), Some(_)) => f.push("deltaCRLIndicator must be critical (§5.2.4)".into()),
        (Some(_), None) => f.push("a complete CRL carries a deltaCRLIndicator".into()),
        (None, Some(_)) => f.push("a delta CRL without deltaCRLIndicator".into()),
    }
    match (find(FreshestCrl::OID), want.freshest_crl) {
        (Some(e), true) if !e.critical && ext_value::<FreshestCrl>(e).is_some() => {}
        (None, false) => {}
        (_, true) => f.push("freshestCRL missing, critical or malformed".into()),
        (Some(_), false) => f.push("freshestCRL where none belongs".into()),
    }
    let known = [
        AuthorityKeyIdentifier::OID,
        CrlNumber::OID,
        BaseCrlNumber::OID,
        FreshestCrl::OID,
    ];
    for e in exts {
        if !known.contains(&e.extn_id) {
            f.push(format!("unexpected CRL extension {}", e.extn_id));
        }
    }
}

/// Decodes the entries one by one (constant memory) and checks each.
fn lint_entries(list: &[u8], want: &Expected<'_>, f: &mut Vec<String>) {
    if list.is_empty() {
        f.push("an empty revokedCertificates list (§5.1.2.6: leave it out)".into());
        return;
    }
    let mut reader = match SliceReader::new(list) {
        Ok(r) => r,
        Err(e) => {
            f.push(format!("revokedCertificates: {e}"));
            return;
        }
    };
    let mut count = 0i64;
    let mut bad = 0usize;
    while !reader.is_finished() {
        let entry = match RevokedCert::decode(&mut reader) {
            Ok(e) => e,
            Err(e) => {
                f.push(format!("revoked entry {count} does not decode: {e}"));
                return;
            }
        };
        count += 1;
        if let Err(why) = lint_entry(&entry, want) {
            // The first few findings tell enough; a million identical ones would not help.
            if bad < 5 {
                f.push(format!(
                    "revoked entry {} ({}): {why}",
                    count - 1,
                    hex::encode(entry.serial_number.as_bytes())
                ));
            }
            bad += 1;
        }
    }
    if bad > 5 {
        f.push(format!(
            "… and {} more revoked entries with findings",
            bad - 5
        ));
    }
    if count != want.entries {
        f.push(format!(
            "{count} revoked certificates listed, {} expected",
            want.entries
        ));
    }
}

fn lint_entry(e: &RevokedCert, want: &Expected<'_>) -> Result<(), String> {
    let serial = e.serial_number.as_bytes();
    if serial.is_empty() || serial.len() > 21 || serial[0] & 0x80 != 0 {
        return Err("serial is not a positive integer of at most 20 octets".into());
    }
    if unix(&e.revocation_date) > want.this_update {
        return Err("revoked after the CRL's thisUpdate".into());
    }
    let mut seen = HashSet::new();
    for x in e.crl_entry_extensions.iter().flatten() {
        if !seen.insert(x.extn_id) {
            return Err(format!("entry extension {} twice", x.extn_id));
        }
        if x.critical {
            return Err(format!("entry extension {} is critical", x.extn_id));
        }
        if x.extn_id == CrlReason::OID {
            match ext_value::<CrlReason>(x) {
                Some(CrlReason::Unspecified) => {
                    return Err("reasonCode unspecified is to be left out (§5.3.1)".into());
                }
                Some(CrlReason::RemoveFromCRL) if want.base.is_none() => {
                    return Err("removeFromCRL belongs in delta CRLs only".into());
                }
                Some(_) => {}
                None => return Err("reasonCode does not decode".into()),
            }
        } else if x.extn_id == ID_CE_INVALIDITY_DATE {
            if der::asn1::GeneralizedTime::from_der(x.extn_value.as_bytes()).is_err() {
                return Err("invalidityDate is not a GeneralizedTime".into());
            }
        } else {
            return Err(format!("unexpected entry extension {}", x.extn_id));
        }
    }
    Ok(())
}
