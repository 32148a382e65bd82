//! Lint of a CRL before the HSM signs it: the TBSCertList bytes we are about to sign are
//! decoded again, independently of how they were built, and every field is compared with what
//! this publication means to say. A CRL that fails is never signed (as with certificates: the
//! HSM's signature is the point of no return).
//!
//! The revoked entries are decoded one at a time ([`EntryLint`]), without copying, so the
//! lint's memory does not grow with the number of revocations either. A CRL too large to hold
//! is linted in two parts that together cover every byte signed: its frame (the TBSCertList
//! without the list, [`lint_frame`]) and each entry as it is read back from the spooled list
//! while being hashed.

use std::collections::HashSet;

use const_oid::AssociatedOid;
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::ID_CE_INVALIDITY_DATE;
use der::asn1::{AnyRef, ContextSpecific, OctetStringRef};
use der::{
    Decode, DecodeValue, FixedTag, Header, Reader, Sequence, SliceReader, Tag, TagNumber, Tagged,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Version;
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
    lint_fields(&tbs, want, &mut f);
    match tbs.revoked_certificates {
        None if want.entries != 0 => f.push(format!(
            "no revoked certificates listed, {} expected",
            want.entries
        )),
        None => {}
        Some(list) => lint_list(list, want, &mut f),
    }
    if f.is_empty() { Ok(()) } else { Err(f) }
}

/// Lints the frame of a TBSCertList whose list is spooled elsewhere: the TBSCertList encoded
/// with every field but revokedCertificates, which must be absent. The entries are linted by
/// an [`EntryLint`] as the list is read back.
pub fn lint_frame(frame_der: &[u8], want: &Expected<'_>) -> Result<(), Vec<String>> {
    let tbs = match TbsCertListIn::from_der(frame_der) {
        Ok(t) => t,
        Err(e) => return Err(vec![format!("TBSCertList frame does not decode: {e}")]),
    };
    let mut f = Vec::new();
    lint_fields(&tbs, want, &mut f);
    if tbs.revoked_certificates.is_some() {
        f.push("the frame carries a revoked list of its own".into());
    }
    if f.is_empty() { Ok(()) } else { Err(f) }
}

fn lint_fields(tbs: &TbsCertListIn<'_>, want: &Expected<'_>, f: &mut Vec<String>) {
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
    lint_extensions(tbs.crl_extensions.as_deref().unwrap_or_default(), want, f);
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

/// Decodes the entries of an encoded list one by one and checks each.
fn lint_list(list: &[u8], want: &Expected<'_>, f: &mut Vec<String>) {
    if list.is_empty() {
        f.push("an empty revokedCertificates list (§5.1.2.6: leave it out)".into());
        return;
    }
    let mut entries = EntryLint::new(want);
    let mut reader = match SliceReader::new(list) {
        Ok(r) => r,
        Err(e) => {
            f.push(format!("revokedCertificates: {e}"));
            return;
        }
    };
    while !reader.is_finished() {
        match reader.tlv_bytes() {
            Ok(entry) => entries.entry(entry),
            Err(e) => {
                f.push(format!(
                    "revoked entry {} does not decode: {e}",
                    entries.count
                ));
                return;
            }
        }
    }
    if let Err(found) = entries.finish(want.entries) {
        f.extend(found);
    }
}

/// The entries of a revokedCertificates list, checked one at a time as they come (from an
/// encoded list or read back from a spooled one), in constant memory. A long list may be
/// checked in parts on several threads ([`EntryLint::starting_at`]), the parts then
/// [merged](EntryLint::merge): the findings name each entry by its place in the whole list.
pub struct EntryLint<'a> {
    want: &'a Expected<'a>,
    /// The place in the whole list of the next entry.
    next: i64,
    count: i64,
    bad: usize,
    /// (place, finding), at most FINDINGS_KEPT of them.
    findings: Vec<(i64, String)>,
}

/// Findings kept in full; beyond them, only counted (a million identical ones would not help).
const FINDINGS_KEPT: usize = 5;

impl<'a> EntryLint<'a> {
    pub fn new(want: &'a Expected<'a>) -> Self {
        Self::starting_at(want, 0)
    }

    /// For a part of the list whose first entry is the `first`-th of the whole (from 0).
    pub fn starting_at(want: &'a Expected<'a>, first: i64) -> Self {
        Self {
            want,
            next: first,
            count: 0,
            bad: 0,
            findings: Vec::new(),
        }
    }

    /// Moves on to a part of the list whose first entry is the `first`-th of the whole.
    pub fn skip_to(&mut self, first: i64) {
        self.next = first;
    }

    /// Checks one entry, given as its whole DER (tag, length, value).
    pub fn entry(&mut self, der: &[u8]) {
        if let Err(why) = lint_entry(der, self.want) {
            if self.findings.len() < FINDINGS_KEPT {
                self.findings
                    .push((self.next, format!("revoked entry {}: {why}", self.next)));
            }
            self.bad += 1;
        }
        self.count += 1;
        self.next += 1;
    }

    /// Takes in what another part's check found.
    pub fn merge(&mut self, other: EntryLint<'_>) {
        self.count += other.count;
        self.bad += other.bad;
        self.findings.extend(other.findings);
        self.findings.sort_by_key(|(at, _)| *at);
        self.findings.truncate(FINDINGS_KEPT);
    }

    /// `Ok(())` when every entry passed and there were `entries` of them; else every finding.
    pub fn finish(self, entries: i64) -> Result<(), Vec<String>> {
        let mut findings: Vec<String> = self.findings.into_iter().map(|(_, f)| f).collect();
        if self.bad > FINDINGS_KEPT {
            findings.push(format!(
                "… and {} more revoked entries with findings",
                self.bad - FINDINGS_KEPT
            ));
        }
        if self.count != entries {
            findings.push(format!(
                "{} revoked certificates listed, {entries} expected",
                self.count
            ));
        }
        if findings.is_empty() {
            Ok(())
        } else {
            Err(findings)
        }
    }
}

/// An extension as it is encoded, borrowed.
#[derive(Sequence)]
struct ExtensionIn<'a> {
    extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    critical: bool,
    extn_value: &'a OctetStringRef,
}

/// One entry: SEQUENCE { userCertificate INTEGER, revocationDate Time, crlEntryExtensions
/// Extensions OPTIONAL }, decoded without copying.
fn lint_entry(der: &[u8], want: &Expected<'_>) -> Result<(), String> {
    let decode = || -> der::Result<(AnyRef<'_>, Time, Option<AnyRef<'_>>)> {
        let mut r = SliceReader::new(der)?;
        let parts = r.sequence(|r| {
            let serial = AnyRef::decode(r)?;
            let date = Time::decode(r)?;
            let exts = Option::<AnyRef<'_>>::decode(r)?;
            Ok::<_, der::Error>((serial, date, exts))
        })?;
        r.finish()?;
        Ok(parts)
    };
    let (serial, date, exts) = decode().map_err(|e| format!("does not decode: {e}"))?;
    let serial_hex = || hex::encode(serial.value());
    let bytes = serial.value();
    if serial.tag() != Tag::Integer || bytes.is_empty() || bytes.len() > 21 || bytes[0] & 0x80 != 0
    {
        return Err(format!(
            "serial {} is not a positive integer of at most 20 octets",
            serial_hex()
        ));
    }
    if unix(&date) > want.this_update {
        return Err(format!(
            "{}: revoked after the CRL's thisUpdate",
            serial_hex()
        ));
    }
    let Some(exts) = exts else { return Ok(()) };
    lint_entry_extensions(exts, want).map_err(|why| format!("{}: {why}", serial_hex()))
}

fn lint_entry_extensions(exts: AnyRef<'_>, want: &Expected<'_>) -> Result<(), String> {
    if exts.tag() != Tag::Sequence {
        return Err(format!(
            "entry extensions are a {}, not a SEQUENCE",
            exts.tag()
        ));
    }
    let mut reader = SliceReader::new(exts.value()).map_err(|e| e.to_string())?;
    let (mut reason_seen, mut invalidity_seen) = (false, false);
    while !reader.is_finished() {
        let x = ExtensionIn::decode(&mut reader)
            .map_err(|e| format!("entry extension does not decode: {e}"))?;
        if x.critical {
            return Err(format!("entry extension {} is critical", x.extn_id));
        }
        if x.extn_id == CrlReason::OID {
            if std::mem::replace(&mut reason_seen, true) {
                return Err(format!("entry extension {} twice", x.extn_id));
            }
            match CrlReason::from_der(x.extn_value.as_bytes()) {
                Ok(CrlReason::Unspecified) => {
                    return Err("reasonCode unspecified is to be left out (§5.3.1)".into());
                }
                Ok(CrlReason::RemoveFromCRL) if want.base.is_none() => {
                    return Err("removeFromCRL belongs in delta CRLs only".into());
                }
                Ok(_) => {}
                Err(_) => return Err("reasonCode does not decode".into()),
            }
        } else if x.extn_id == ID_CE_INVALIDITY_DATE {
            if std::mem::replace(&mut invalidity_seen, true) {
                return Err(format!("entry extension {} twice", x.extn_id));
            }
            if der::asn1::GeneralizedTime::from_der(x.extn_value.as_bytes()).is_err() {
                return Err("invalidityDate is not a GeneralizedTime".into());
            }
        } else {
            return Err(format!("unexpected entry extension {}", x.extn_id));
        }
    }
    if !reason_seen && !invalidity_seen {
        return Err("an empty crlEntryExtensions (leave it out)".into());
    }
    Ok(())
}
