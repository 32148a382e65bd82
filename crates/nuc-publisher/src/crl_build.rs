//! One CRL built in constant memory, whatever the number of revocations it lists.
//!
//! DER needs every length before the bytes it covers, and the list's length is known only once
//! the last revocation is read; the signature needs every byte of the TBSCertList. So:
//!
//! 1. **Spool.** The revocations are read in one pass (one read snapshot of the store) and each
//!    is encoded as an entry ([`crate::crl_entry`]) into an anonymous temporary file; the list's
//!    length is then the file's.
//! 2. **Frame.** Every other field of the TBSCertList is encoded in memory (a few hundred
//!    bytes) and linted ([`crate::crl_lint::lint_frame`]).
//! 3. **Hash.** The TBSCertList is hashed as it would be streamed out: header, frame fields,
//!    list header, the spooled list read back piece by piece, extensions. Each entry is cut out
//!    of the very bytes hashed and decoded and linted on one of two threads (runs of whole
//!    entries dealt out in turn; the check costs some twenty times the hash).
//! 4. **Sign.** The HSM signs the digest (`CrlSigner::sign_crl_digest`): the point of no
//!    return, reached only when the frame and every entry passed.
//! 5. **Hand over.** The CRL is the outer header, the TBSCertList and the signature; the
//!    caller gets it as a reader over the prefix, the spooled list and the suffix, and the
//!    store copies it piece by piece. Its SHA-256 is computed by reading the spool once more.
//!
//! Memory: one read buffer and the frame; the list lives in the file (page cache), and the
//! file disappears when the last handle to it is dropped, whatever happens.

use std::io::{BufWriter, Cursor, Read, Seek, SeekFrom};
use std::time::Instant;

use der::asn1::{BitStringRef, ContextSpecific};
use der::{Encode, Header, Length, Tag, TagMode, TagNumber};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Version;
use x509_cert::ext::Extension;
use x509_cert::name::Name;

use crate::crl::PublishError;
use crate::crl_entry::{encode_entry, time};
use crate::crl_lint::{EntryLint, Expected, lint_frame};
use nuc_core::RevocationReason;
use nuc_store::{RevocationEntry, StoreError};

/// How much of the spool is read at a time (and the largest piece handed to the store).
const READ_BYTES: usize = 1 << 20;

/// The fields of a TBSCertList but its revoked list, encoded: what the list goes between.
pub(crate) struct Frame {
    /// version, signature, issuer, thisUpdate, nextUpdate.
    head: Vec<u8>,
    /// The [0] EXPLICIT crlExtensions.
    exts: Vec<u8>,
}

impl Frame {
    pub(crate) fn new(
        signature: &AlgorithmIdentifierOwned,
        issuer: &Name,
        this_update: i64,
        next_update: i64,
        extensions: Vec<Extension>,
    ) -> Result<Self, der::Error> {
        let mut head = Vec::new();
        Version::V2.encode(&mut head)?;
        signature.encode(&mut head)?;
        issuer.encode(&mut head)?;
        time(this_update)?.encode(&mut head)?;
        time(next_update)?.encode(&mut head)?;
        let exts = ContextSpecific {
            tag_number: TagNumber(0),
            tag_mode: TagMode::Explicit,
            value: extensions,
        }
        .to_der()?;
        Ok(Self { head, exts })
    }

    /// The TBSCertList header, and the list's header (none for an empty list: RFC 5280
    /// §5.1.2.6 leaves the field out rather than send an empty one).
    fn headers(&self, list_len: u64) -> Result<(Vec<u8>, Vec<u8>), der::Error> {
        let list_header = if list_len == 0 {
            Vec::new()
        } else {
            Header::new(Tag::Sequence, length(list_len)?).to_der()?
        };
        let body =
            self.head.len() as u64 + list_header.len() as u64 + list_len + self.exts.len() as u64;
        Ok((
            Header::new(Tag::Sequence, length(body)?).to_der()?,
            list_header,
        ))
    }

    /// The whole TBSCertList around `list` (the DER of the entries, one after the other): for
    /// CRLs small enough to hold (the root's, tests').
    pub(crate) fn tbs(&self, list: &[u8]) -> Result<Vec<u8>, der::Error> {
        let (header, list_header) = self.headers(list.len() as u64)?;
        Ok([&header, &self.head, &list_header, list, &self.exts].concat())
    }
}

/// A DER length (at most 4 GiB: a CRL of some eighty million entries).
fn length(n: u64) -> Result<Length, der::Error> {
    u32::try_from(n)
        .map(Length::from)
        .map_err(|_| der::ErrorKind::Overlength.into())
}

/// A CRL built and signed, its bytes ready to be handed to the store.
pub(crate) struct Built {
    pub der: Box<dyn Read + Send>,
    pub size: i64,
    pub sha256: String,
    pub entries: i64,
}

/// The hash the issuing key signs over.
enum Hasher {
    Sha256(openssl::sha::Sha256),
    Sha384(openssl::sha::Sha384),
}

impl Hasher {
    fn for_digest_len(len: usize) -> Result<Self, PublishError> {
        match len {
            32 => Ok(Self::Sha256(openssl::sha::Sha256::new())),
            48 => Ok(Self::Sha384(openssl::sha::Sha384::new())),
            other => Err(PublishError::Invalid(format!(
                "no hash gives a digest of {other} bytes"
            ))),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha384(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.finish().to_vec(),
            Self::Sha384(h) => h.finish().to_vec(),
        }
    }
}

/// What the caller knows of the CRL being built.
pub(crate) struct Plan<'a> {
    pub frame: Frame,
    pub expected: Expected<'a>,
    /// `revoked_at >= since` for a delta CRL; every revocation for a complete one.
    pub since: Option<i64>,
}

/// Builds, lints and signs one CRL from the revocations of `ca.store`, in constant memory.
pub(crate) fn build(ca: crate::CrlContext<'_>, plan: Plan<'_>) -> Result<Built, PublishError> {
    let started = Instant::now();
    let spool = |e: std::io::Error| PublishError::Spool(e.to_string());
    // 1. Spool.
    let (mut list, entries) = spool_entries(|f| ca.store.for_each_revocation(plan.since, f))?;
    let list_len = list.stream_position().map_err(spool)?;
    let spooled = started.elapsed();

    // 2. Frame.
    let frame = &plan.frame;
    let (tbs_header, list_header) = frame.headers(list_len)?;
    let frame_findings = lint_frame(&frame.tbs(&[])?, &plan.expected).err();

    // 3. Hash, linting each entry read back.
    let key_digest_len = ca.ca.issuing().algorithm.digest_len();
    let mut hasher = Hasher::for_digest_len(key_digest_len)?;
    for part in [&tbs_header, &frame.head, &list_header] {
        hasher.update(part);
    }
    list.seek(SeekFrom::Start(0)).map_err(spool)?;
    let (read, lint) = read_back(&mut list, &mut |bytes| hasher.update(bytes), &plan.expected)?;
    hasher.update(&frame.exts);
    if read != list_len {
        return Err(PublishError::Spool(format!(
            "{read} bytes read back of the {list_len} spooled"
        )));
    }
    let mut findings = frame_findings.unwrap_or_default();
    if let Err(f) = lint.finish(entries) {
        findings.extend(f);
    }
    if !findings.is_empty() {
        return Err(PublishError::LintFailed(findings.join("; ")));
    }
    let digest = hasher.finish();
    let hashed = started.elapsed();

    // 4. Sign.
    let signature = ca.ca.sign_crl_digest(&digest)?;
    let signed = started.elapsed();

    // 5. Hand over: outer header, TBSCertList, signatureAlgorithm, signatureValue.
    let algorithm = plan.expected.signature.to_der()?;
    let signature = BitStringRef::from_bytes(&signature)?.to_der()?;
    let tbs_len = tbs_header.len() as u64
        + frame.head.len() as u64
        + list_header.len() as u64
        + list_len
        + frame.exts.len() as u64;
    let outer = length(tbs_len + algorithm.len() as u64 + signature.len() as u64)?;
    let prefix = [
        Header::new(Tag::Sequence, outer).to_der()?,
        tbs_header,
        frame.head.clone(),
        list_header,
    ]
    .concat();
    let suffix = [frame.exts.as_slice(), &algorithm, &signature].concat();
    let size = prefix.len() as u64 + list_len + suffix.len() as u64;
    let mut sha256 = openssl::sha::Sha256::new();
    sha256.update(&prefix);
    list.seek(SeekFrom::Start(0)).map_err(spool)?;
    copy_through(&mut list, &mut |bytes| sha256.update(bytes)).map_err(spool)?;
    sha256.update(&suffix);
    list.seek(SeekFrom::Start(0)).map_err(spool)?;
    tracing::info!(
        entries,
        bytes = size,
        spool_ms = spooled.as_millis() as u64,
        hash_ms = (hashed - spooled).as_millis() as u64,
        sign_ms = (signed - hashed).as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "CRL built"
    );
    Ok(Built {
        der: Box::new(Cursor::new(prefix).chain(list).chain(Cursor::new(suffix))),
        size: i64::try_from(size)
            .map_err(|_| PublishError::Invalid(format!("a CRL of {size} bytes")))?,
        sha256: hex::encode(sha256.finish()),
        entries,
    })
}

/// Revocations handed from the store's scan to the encoder at a time.
const BATCH: usize = 4096;

/// Revocations as the scan gave them, owned: the serials one after the other, and for each
/// entry where its serial ends, its reason, time and invalidity date.
struct Batch {
    serials: String,
    entries: Vec<(usize, RevocationReason, i64, Option<i64>)>,
}

impl Batch {
    fn new() -> Self {
        Self {
            serials: String::with_capacity(BATCH * 40),
            entries: Vec::with_capacity(BATCH),
        }
    }
}

/// Step 1: the revocations read in one pass and encoded into an anonymous temporary file, the
/// encoding on a thread of its own so that it overlaps the store's scan (on PostgreSQL the
/// scan is the server's work and the rows' decoding; either costs as much as the encoding).
/// Entries keep the scan's order. Returns the file, written to its end, and the entries.
fn spool_entries(
    scan: impl FnOnce(&mut dyn FnMut(RevocationEntry<'_>)) -> Result<(), StoreError>,
) -> Result<(std::fs::File, i64), PublishError> {
    let spool = |e: std::io::Error| PublishError::Spool(e.to_string());
    let file = tempfile::tempfile().map_err(spool)?;
    std::thread::scope(|scope| {
        // A few batches in flight at most: memory stays constant, whatever the list.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        let encoder = scope.spawn(move || -> Result<(std::fs::File, i64), PublishError> {
            let mut list = BufWriter::with_capacity(1 << 16, file);
            let mut entries = 0i64;
            for batch in rx {
                let mut start = 0;
                for &(end, reason, revoked_at, invalidity_date) in &batch.entries {
                    let serial = batch.serials.get(start..end).unwrap_or_default();
                    encode_entry(&mut list, serial, reason, revoked_at, invalidity_date)?;
                    start = end;
                    entries += 1;
                }
            }
            let list = list.into_inner().map_err(|e| spool(e.into_error()))?;
            Ok((list, entries))
        });
        let mut batch = Batch::new();
        // Once the encoder gave up (its error is the one reported), the scan runs out idle.
        let mut stopped = false;
        let scanned = scan(&mut |e| {
            if stopped {
                return;
            }
            batch.serials.push_str(e.serial_hex);
            batch.entries.push((
                batch.serials.len(),
                e.reason,
                e.revoked_at,
                e.invalidity_date,
            ));
            if batch.entries.len() == BATCH {
                stopped = tx
                    .send(std::mem::replace(&mut batch, Batch::new()))
                    .is_err();
            }
        });
        if !stopped && !batch.entries.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
        let encoded = encoder.join().map_err(|_| {
            PublishError::Invalid("the CRL entry encoder stopped unexpectedly".into())
        })?;
        scanned?;
        encoded
    })
}

/// Reads `from` to its end, handing every byte to `sink` in order.
fn copy_through(from: &mut impl Read, sink: &mut dyn FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; READ_BYTES];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sink(&buf[..n]);
        total += n as u64;
    }
}

/// The length of the DER element at the start of `bytes` (a revoked entry: a SEQUENCE), or
/// `None` when `bytes` does not yet hold its header.
fn element_len(bytes: &[u8]) -> Result<Option<usize>, String> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return Ok(None);
    };
    if tag != 0x30 {
        return Err(format!("a revoked entry starts with tag {tag:#04x}"));
    }
    let Some((&first, rest)) = rest.split_first() else {
        return Ok(None);
    };
    if first < 0x80 {
        return Ok(Some(2 + usize::from(first)));
    }
    let octets = usize::from(first & 0x7f);
    if !(1..=2).contains(&octets) {
        return Err(format!("a revoked entry's length takes {octets} octets"));
    }
    let Some(len) = rest.get(..octets) else {
        return Ok(None);
    };
    let len = len.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    Ok(Some(2 + octets + len))
}

/// Threads that check entries while the reading thread hashes: the check of a million entries
/// costs some twenty times their hash, and the service's other work waits for this one.
const LINT_THREADS: usize = 2;

/// Reads the spooled list back: every byte to `sink` (the hash) on this thread, and every
/// entry, cut out of the very bytes hashed, to one of [`LINT_THREADS`] checkers in runs of
/// whole entries. Returns the number of bytes read and the checkers' findings merged.
fn read_back<'a>(
    list: &mut (impl Read + Send),
    sink: &mut (dyn FnMut(&[u8]) + Send),
    want: &'a Expected<'a>,
) -> Result<(u64, EntryLint<'a>), PublishError> {
    std::thread::scope(|scope| {
        // Checked runs come back to be filled again: a fixed number of buffers, whatever the
        // size of the list (buffers freed on another thread than the one that made them would
        // grow the allocator's heaps instead).
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut runs = Vec::with_capacity(LINT_THREADS);
        let mut checkers = Vec::with_capacity(LINT_THREADS);
        for _ in 0..LINT_THREADS {
            // Two runs queued per checker at most.
            let (tx, rx) = std::sync::mpsc::sync_channel::<(i64, Vec<u8>)>(2);
            runs.push(tx);
            let spare = spare_tx.clone();
            checkers.push(scope.spawn(move || {
                let mut lint = EntryLint::new(want);
                for (first, run) in rx {
                    lint.skip_to(first);
                    let mut at = 0;
                    // The reader cut the run at entry boundaries it measured the same way.
                    while let Ok(Some(n)) = element_len(&run[at..]) {
                        lint.entry(&run[at..at + n]);
                        at += n;
                    }
                    let _ = spare.send(run);
                }
                lint
            }));
        }
        drop(spare_tx);
        let read = read_runs(list, sink, &runs, &spare_rx);
        drop(runs);
        let mut lint = EntryLint::new(want);
        for checker in checkers {
            let part = checker.join().map_err(|_| {
                PublishError::Invalid("a revoked-entry check stopped unexpectedly".into())
            })?;
            lint.merge(part);
        }
        read.map(|total| (total, lint))
    })
}

/// The reading side of [`read_back`]: reads, hashes, cuts runs of whole entries and deals
/// them out in turn.
fn read_runs(
    list: &mut impl Read,
    sink: &mut dyn FnMut(&[u8]),
    runs: &[std::sync::mpsc::SyncSender<(i64, Vec<u8>)>],
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<u64, PublishError> {
    // Each checker holds one run and has two queued: no more buffers are ever needed.
    let most = runs.len() * 3 + 1;
    let mut made = 0usize;
    let stopped = || PublishError::Invalid("a revoked-entry check stopped unexpectedly".into());
    let mut buf = vec![0u8; READ_BYTES];
    let (mut end, mut total, mut dealt, mut turn) = (0usize, 0u64, 0i64, 0usize);
    loop {
        let n = match list.read(&mut buf[end..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PublishError::Spool(e.to_string())),
        };
        if n == 0 {
            break;
        }
        sink(&buf[end..end + n]);
        end += n;
        total += n as u64;
        // Every whole entry in the buffer.
        let (mut cut, mut whole) = (0usize, 0i64);
        loop {
            let len = element_len(&buf[cut..end]).map_err(|why| {
                PublishError::LintFailed(format!(
                    "revoked list at byte {}: {why}",
                    total - (end - cut) as u64
                ))
            })?;
            match len {
                Some(n) if cut + n <= end => {
                    cut += n;
                    whole += 1;
                }
                Some(n) if n > buf.len() => {
                    return Err(PublishError::LintFailed(format!(
                        "a revoked entry of {n} bytes"
                    )));
                }
                _ => break,
            }
        }
        if whole > 0 {
            let mut run = match spare.try_recv() {
                Ok(run) => run,
                Err(_) if made < most => {
                    made += 1;
                    Vec::with_capacity(READ_BYTES)
                }
                Err(_) => spare.recv().map_err(|_| stopped())?,
            };
            run.clear();
            run.extend_from_slice(&buf[..cut]);
            runs[turn % runs.len()]
                .send((dealt, run))
                .map_err(|_| stopped())?;
            dealt += whole;
            turn += 1;
        }
        // Keep the partial entry, read what follows it.
        buf.copy_within(cut..end, 0);
        end -= cut;
    }
    if end != 0 {
        return Err(PublishError::LintFailed(format!(
            "the revoked list ends inside an entry ({end} bytes left)"
        )));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spooled list of some 3 MiB (runs for both checkers) with three bad entries: every
    /// byte reaches the hash in order, every entry is checked once, and the findings name the
    /// bad ones by their place in the whole list, in order, whichever checker saw them.
    #[test]
    fn read_back_checks_every_entry_once_and_places_findings() {
        use std::str::FromStr;
        let this_update = 1_800_000_000;
        let bad = [7usize, 40_000, 61_234];
        let n = 70_000usize;
        let mut spool = Vec::new();
        for i in 0..n {
            let at = if bad.contains(&i) {
                this_update + 60
            } else {
                this_update - 3600
            };
            let serial = format!("{:040x}", 0x1000_0000u64 + i as u64);
            encode_entry(
                &mut spool,
                &serial,
                nuc_core::RevocationReason::KeyCompromise,
                at,
                None,
            )
            .unwrap();
        }
        assert!(spool.len() > 2 * READ_BYTES, "runs for both checkers");
        let issuer = Name::from_str("CN=test").unwrap();
        let signature = nuc_hsm::KeyAlgorithm::EcdsaP256.signature_algorithm();
        let want = Expected {
            issuer: &issuer,
            issuer_key_id: &[1; 20],
            signature: &signature,
            number: 1,
            base: None,
            this_update,
            next_update: this_update + 86_400,
            entries: n as i64,
            freshest_crl: true,
        };
        let mut hashed = Vec::new();
        let (read, lint) = read_back(
            &mut Cursor::new(spool.clone()),
            &mut |b| hashed.extend_from_slice(b),
            &want,
        )
        .unwrap();
        assert_eq!(read, spool.len() as u64);
        assert_eq!(hashed, spool);
        let findings = lint.finish(n as i64).unwrap_err();
        assert_eq!(findings.len(), 3, "{findings:?}");
        for (f, i) in findings.iter().zip(bad) {
            assert!(
                f.starts_with(&format!("revoked entry {i}: "))
                    && f.contains("after the CRL's thisUpdate"),
                "{f}"
            );
        }

        // Every entry was counted once: one more expected is a finding; a list cut inside an
        // entry is refused.
        let (_, lint) = read_back(&mut Cursor::new(spool.clone()), &mut |_| {}, &want).unwrap();
        let findings = lint.finish(n as i64 + 1).unwrap_err();
        assert!(
            findings.last().unwrap()
                == &format!("{n} revoked certificates listed, {} expected", n + 1),
            "{findings:?}"
        );
        let cut = read_back(
            &mut Cursor::new(spool[..spool.len() - 1].to_vec()),
            &mut |_| {},
            &want,
        );
        assert!(
            matches!(&cut, Err(PublishError::LintFailed(why)) if why.contains("ends inside an entry")),
            "{:?}",
            cut.err()
        );
    }

    /// A scan handing out `serials` in order, with the reasons and times the test expects.
    fn scan_of(serials: &[String], f: &mut dyn FnMut(RevocationEntry<'_>)) {
        for (i, s) in serials.iter().enumerate() {
            f(RevocationEntry {
                serial_hex: s,
                reason: RevocationReason::Superseded,
                revoked_at: 1_700_000_000 + i as i64,
                invalidity_date: (i % 3 == 0).then_some(1_690_000_000),
            });
        }
    }

    /// The spool written on the encoder's thread holds every entry in the scan's order, byte
    /// for byte what encoding them one after the other gives; a serial the encoder refuses
    /// fails the spool with its reason, whatever batch it is in; a failed scan fails it too.
    #[test]
    fn spool_keeps_order_and_reports_the_first_failure() {
        let n = 3 * BATCH + 17;
        let serials: Vec<String> = (0..n).map(|i| format!("{:040x}", 0x5000 + i)).collect();
        let (mut file, entries) = spool_entries(|f| {
            scan_of(&serials, f);
            Ok(())
        })
        .unwrap();
        assert_eq!(entries, n as i64);
        let mut spooled = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut spooled).unwrap();
        let mut want = Vec::new();
        for (i, s) in serials.iter().enumerate() {
            encode_entry(
                &mut want,
                s,
                RevocationReason::Superseded,
                1_700_000_000 + i as i64,
                (i % 3 == 0).then_some(1_690_000_000),
            )
            .unwrap();
        }
        assert!(
            spooled == want,
            "the spool differs from the entries in order"
        );

        let mut bad = serials.clone();
        bad[2 * BATCH + 5] = "not a serial".into();
        let e = spool_entries(|f| {
            scan_of(&bad, f);
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("serial"), "{e}");

        let e = spool_entries(|f| {
            scan_of(&serials, f);
            Err(StoreError::Database("connection lost".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("connection lost"), "{e}");
    }

    #[test]
    fn element_lengths_in_every_form() {
        assert_eq!(element_len(&[]), Ok(None));
        assert_eq!(element_len(&[0x30]), Ok(None));
        assert_eq!(element_len(&[0x30, 0x05]), Ok(Some(7)));
        assert_eq!(element_len(&[0x30, 0x81]), Ok(None));
        assert_eq!(element_len(&[0x30, 0x81, 0x90]), Ok(Some(3 + 0x90)));
        assert_eq!(element_len(&[0x30, 0x82, 0x01, 0x00]), Ok(Some(4 + 256)));
        assert!(element_len(&[0x31, 0x05]).is_err());
        assert!(element_len(&[0x30, 0x80]).is_err());
        assert!(element_len(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }
}
