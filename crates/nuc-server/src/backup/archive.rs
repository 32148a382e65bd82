//! The archive's format: a POSIX ustar file (readable with `tar -tvf`) whose first member is
//! the manifest, whose last is the manifest's SHA-256, and whose members between are the
//! files the manifest lists, each with its size and SHA-256.
//!
//! This module owns writing and reading those bytes and checking every one of them (headers,
//! checksums, padding, the end); it never decides what goes into a backup nor writes into a
//! home: the reader hands each member's bytes to its caller.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use super::{
    BackupError, CONFIG, FORMAT, MANIFEST, MANIFEST_SHA256, Manifest, database_member, io,
};

pub(super) const BLOCK: usize = 512;

pub(super) fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finish())))
}

/// One regular file: a ustar header, `size` bytes from `data`, zeros to the next block.
pub(super) fn write_member(
    w: &mut impl Write,
    (name, mtime): (&str, i64),
    data: &mut impl Read,
    size: u64,
) -> std::io::Result<()> {
    w.write_all(&header(name, size, mtime)?)?;
    let copied = std::io::copy(&mut data.take(size), w)?;
    if copied != size {
        return Err(std::io::Error::other(format!(
            "{name}: {copied} bytes where {size} were expected (changed while copied)"
        )));
    }
    w.write_all(&vec![0u8; padding(size)])
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

fn octal(field: &mut [u8], value: u64) {
    let last = field.len() - 1;
    let text = format!("{value:0last$o}");
    field[..last].copy_from_slice(text.as_bytes());
    field[last] = 0;
}

fn header(name: &str, size: u64, mtime: i64) -> std::io::Result<[u8; BLOCK]> {
    if name.len() > 100 || size >= 1 << 33 {
        return Err(std::io::Error::other(format!(
            "{name}: too long a name or too large a file for ustar"
        )));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o600);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], u64::try_from(mtime).unwrap_or(0));
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    Ok(h)
}

/// A member's header as read back: its name and size, after its checksum was checked.
fn parse_header(h: &[u8; BLOCK]) -> Result<(String, u64), String> {
    let field = |r: std::ops::Range<usize>| -> Result<u64, String> {
        let text = std::str::from_utf8(&h[r.clone()]).map_err(|_| "a header field is not text")?;
        let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
        u64::from_str_radix(text, 8).map_err(|_| format!("header field {r:?} is {text:?}"))
    };
    let stored = field(148..156)?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != sum {
        return Err("a header's checksum does not match".into());
    }
    if &h[257..263] != b"ustar\0" || !matches!(h[156], b'0' | 0) {
        return Err("a member is not a ustar regular file".into());
    }
    let end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = std::str::from_utf8(&h[..end])
        .map_err(|_| "a member's name is not UTF-8")?
        .to_owned();
    if h[345] != 0 {
        return Err(format!(
            "{name}: a long name (prefix) this format never writes"
        ));
    }
    Ok((name, field(124..136)?))
}

/// Reads an archive member by member, checking every header and every padding byte.
struct ArchiveReader<R> {
    r: R,
}

impl<R: Read> ArchiveReader<R> {
    /// The next member's name and size, or `None` at the end of the archive (which must be
    /// zeros to the end of the file).
    fn next(&mut self) -> Result<Option<(String, u64)>, String> {
        let mut h = [0u8; BLOCK];
        self.r
            .read_exact(&mut h)
            .map_err(|e| format!("truncated: {e}"))?;
        if h.iter().all(|&b| b == 0) {
            let mut rest = Vec::new();
            self.r
                .read_to_end(&mut rest)
                .map_err(|e| format!("reading the end: {e}"))?;
            if rest.len() < BLOCK || rest.iter().any(|&b| b != 0) {
                return Err("bytes after the end of the archive, or a short end".into());
            }
            return Ok(None);
        }
        parse_header(&h).map(Some)
    }

    /// The member's `size` bytes, each handed to `sink`, with its SHA-256; then its padding.
    fn data(
        &mut self,
        size: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<String, String> {
        let mut h = openssl::sha::Sha256::new();
        let mut left = size;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.r
                .read_exact(&mut buf[..n])
                .map_err(|e| format!("truncated: {e}"))?;
            h.update(&buf[..n]);
            sink(&buf[..n])?;
            left -= n as u64;
        }
        let mut pad = vec![0u8; padding(size)];
        self.r
            .read_exact(&mut pad)
            .map_err(|e| format!("truncated: {e}"))?;
        if pad.iter().any(|&b| b != 0) {
            return Err("a member's padding is not zeros".into());
        }
        Ok(hex::encode(h.finish()))
    }
}

/// A member name a restore may write: relative, inside the home, plain components.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Reads the whole archive, checks it, and hands each member's bytes to `write` (name, chunk).
/// Returns the manifest; any mismatch is an error naming it.
pub(super) fn read_archive(
    archive: &Path,
    mut write: impl FnMut(&str, &[u8]) -> Result<(), String>,
) -> Result<Manifest, String> {
    let file = File::open(archive).map_err(|e| e.to_string())?;
    let mut r = ArchiveReader {
        r: BufReader::new(file),
    };
    let (name, size) = r.next()?.ok_or("an empty archive")?;
    if name != MANIFEST || size > 1 << 24 {
        return Err(format!("its first member is {name:?}, not {MANIFEST}"));
    }
    let mut manifest_json = Vec::new();
    let manifest_sha = r.data(size, |b| {
        manifest_json.extend_from_slice(b);
        Ok(())
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_json).map_err(|e| format!("its manifest: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!("format {:?}, not {FORMAT:?}", manifest.format));
    }
    for m in &manifest.members {
        if !safe_name(&m.path) || m.path == MANIFEST || m.path == MANIFEST_SHA256 {
            return Err(format!("the manifest names {:?}", m.path));
        }
    }
    for expected in &manifest.members {
        let (name, size) = r.next()?.ok_or("members missing")?;
        if name != expected.path || size != expected.size {
            return Err(format!(
                "member {name:?} ({size} bytes) where the manifest has {:?} ({} bytes)",
                expected.path, expected.size
            ));
        }
        let sha = r.data(size, |b| write(&name, b))?;
        if sha != expected.sha256 {
            return Err(format!("{name}: its SHA-256 differs from the manifest's"));
        }
    }
    let (name, size) = r.next()?.ok_or("no manifest checksum")?;
    if name != MANIFEST_SHA256 || size > 1024 {
        return Err(format!(
            "member {name:?} where {MANIFEST_SHA256} was expected"
        ));
    }
    let mut text = Vec::new();
    r.data(size, |b| {
        text.extend_from_slice(b);
        Ok(())
    })?;
    if String::from_utf8_lossy(&text).trim() != manifest_sha {
        return Err("the manifest's SHA-256 differs from the one recorded".into());
    }
    if let Some((name, _)) = r.next()? {
        return Err(format!("an extra member {name:?}"));
    }
    let mut seen = std::collections::HashSet::new();
    if !manifest.members.iter().all(|m| seen.insert(&m.path)) {
        return Err("a member named twice".into());
    }
    // The database member of the manifest's engine: a restore knows which to load.
    let database = database_member(&manifest.store.engine)
        .ok_or_else(|| format!("an unknown store engine {:?}", manifest.store.engine))?;
    if !seen.contains(&database.to_owned()) || !seen.contains(&CONFIG.to_owned()) {
        return Err(format!("no {database} or no {CONFIG}"));
    }
    Ok(manifest)
}
