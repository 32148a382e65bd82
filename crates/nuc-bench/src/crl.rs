//! CRL: how long publishing a complete CRL of 100,000 and 1,000,000 revoked certificates takes,
//! how much memory it needs, and how long a delta CRL takes.
//!
//! NUC RK certifies millions of people, and revoked certificates stay on the complete CRL until
//! they expire: a CRL of a million entries is what the service must be able to publish every
//! interval without stalling and without needing a large machine. **Targets: a complete CRL of
//! 1,000,000 entries published in <= 2 s, with a peak memory (the process's VmHWM) <= 64 MiB
//! above its resident size before; a delta CRL alone in <= 10 ms at 1,000,000 revocations.**
//! A CRL is built in constant memory (spooled, hashed while read back, the digest signed in
//! the HSM: `nuc_publisher::crl`), so 10,000,000 entries (`--crl-sizes 10000000`) must show
//! the same peak. Unlike the other benchmarks this one is absolute, not a ratio: the bounds
//! are about what an operator must provision (a publication interval, a memory limit), and
//! none depends much on the HSM (one signature per CRL).
//!
//! How it measures, on each engine of `--engines` (SQLite, and PostgreSQL in a throwaway
//! cluster) and for each size N of `--crl-sizes` (default `100000,1000000`):
//!
//! * A fresh temporary home made by `nuc init` (the release `nuc` next to this binary; RSA-2048
//!   issuing CA in SoftHSM2, the default).
//! * Not timed: N revocations written by `SqliteStore::seed_revocations_unaudited` (one
//!   transaction, each with the placeholder certificate row its foreign key needs, no audit
//!   records: a benchmark home only). Serials of 20 bytes like the CA's own, reasons mixed
//!   (about 40% unspecified, so without a reasonCode, like real lists), some with an
//!   invalidity date, revocation times spread over two years, except `--crl-delta` of them
//!   (default 1000), revoked within the last minute: what the delta CRL lists. On PostgreSQL,
//!   N revoked certificates of the issuance benchmark's seeding (`nuc_store::seed`, binary
//!   COPY), revoked over the past year: the deltas list the few of their window (about 100).
//! * A child process (`SOFTHSM2_CONF` = the home's token; SoftHSM2 reads it once per process)
//!   opens the CA, then times `nuc_publisher::crl::publish`: the complete CRL and its delta
//!   built from the revocations, both signed in the HSM and recorded with their audit
//!   records, durably, i.e. what the service does at each publication. Memory is the child's
//!   `VmHWM` (peak resident set) from `/proc/self/status`, with the peak reset (`clear_refs`)
//!   just before, so it is the peak during the publication; the resident size before it (the
//!   open CA) is reported as the baseline. Then, separately, `publish_delta` (a delta CRL
//!   alone, what the service publishes after a revocation) is timed the same way.
//! * To show where the time goes, the child also times the bare scan of the N revocations
//!   (`RevocationReader::for_each_revocation`), which is not part of the target.
//! * After the measurements the child copies the CRLs out of the store piece by piece, and
//!   counts the entries of the complete CRL from its bytes: it must list N. The parent then
//!   judges the CRLs with a tool that is not ours: `openssl crl -inform DER -CAfile
//!   issuing.pem -noout -crlnumber` must parse each and say `verify OK`.
//!
//! The child's figures are on stdout (human lines, then one JSON line); the parent prints a
//! summary with the verdict for the 1,000,000 row. The temporary home is removed at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use nuc_ca::{Ca, Home};
use nuc_publisher::CrlContext;
use nuc_store::{PublicationStore, RevocationReader as _};
use nuc_store_sqlite::{RevocationSeed, SqliteStore};
use serde_json::{Value, json};

use crate::engine::{Db, Engine, PgServer};
use crate::f1::Proc;
use crate::ocsp::{last_json, nuc_binary, run_nuc_on};
use crate::{Args, round};

/// The target is about a CRL of this many entries.
const TARGET_ENTRIES: usize = 1_000_000;
/// A complete CRL of [`TARGET_ENTRIES`] (and its delta) must be published in this many seconds.
const TARGET_SECS: f64 = 2.0;
/// ... with a peak resident memory at most this many MiB above the resident size before.
const TARGET_MIB: f64 = 64.0;
/// A delta CRL alone, at [`TARGET_ENTRIES`] revocations, in this many milliseconds.
const TARGET_DELTA_MS: f64 = 10.0;
/// The recent revocations (what the delta lists) happened within this many seconds before
/// seeding; a delta starts [`nuc_publisher::crl::DELTA_OVERLAP_SECS`] before its base.
const RECENT_SECS: i64 = 60;
/// Validity of the complete CRL and of the delta (the service's defaults).
const FULL_VALIDITY_SECS: i64 = 86_400;
const DELTA_VALIDITY_SECS: i64 = 7_200;
/// Who publishes the delta alone, in the audit log.
const ACTOR: &str = "nuc-bench";

pub(crate) fn bench(args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let nuc = nuc_binary(&exe)?;
    out!(
        "nuc-bench crl: publication of a complete CRL and its delta (nuc_publisher::crl::publish: \
         built from the revocations, signed in SoftHSM2 by the RSA-2048 issuing CA, recorded \
         durably) for {} revoked certificates, {} of them in the delta; then a delta alone \
         (publish_delta); targets: {TARGET_ENTRIES} entries in <= {TARGET_SECS} s and <= \
         {TARGET_MIB} MiB above the resident size before, a delta alone in <= \
         {TARGET_DELTA_MS} ms",
        args.crl_sizes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        args.crl_delta
    );
    let mut rows = Vec::new();
    for engine in args.engines.iter().copied() {
        let server = match PgServer::for_engine(engine, &args.pg_settings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("nuc-bench: crl on {engine}: error: {}", crate::causes(&e));
                rows.extend(args.crl_sizes.iter().map(|&n| (engine, n, None)));
                continue;
            }
        };
        for &n in &args.crl_sizes {
            let measured = Db::new(engine, server.as_ref(), &format!("nuc_crl_{n}"))
                .and_then(|db| one_size(&exe, &nuc, n, args, &db));
            match measured {
                Ok(report) => rows.push((engine, n, Some(report))),
                Err(e) => {
                    eprintln!(
                        "nuc-bench: crl {n} on {engine}: error: {}",
                        crate::causes(&e)
                    );
                    rows.push((engine, n, None));
                }
            }
        }
    }
    print_summary(&rows);
    if rows.iter().any(|(_, _, r)| r.is_none()) {
        bail!("some CRL sizes could not be measured");
    }
    Ok(())
}

/// One size on one store: a fresh home, seeded, published in a child, judged by openssl.
fn one_size(exe: &Path, nuc: &Path, n: usize, args: &Args, db: &Db) -> Result<Value> {
    let tmp = tempfile::Builder::new()
        .prefix("nuc-bench-crl-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = std::path::absolute(tmp.path())?;
    let home = dir.join("home");
    let out = dir.join("out");
    std::fs::create_dir(&out)?;

    let started = Instant::now();
    let store_args = db.init_args();
    let mut init: Vec<&std::ffi::OsStr> =
        vec!["init".as_ref(), "--home".as_ref(), home.as_os_str()];
    init.extend(store_args.iter().map(std::ffi::OsStr::new));
    run_nuc_on(nuc, &init, db)?;
    let init_time = started.elapsed();

    let started = Instant::now();
    // PostgreSQL is seeded with revoked certificates of the issuance benchmark's seeding
    // (revoked over the past year): its deltas list the few revoked in their window.
    let delta = match db.engine() {
        Engine::Sqlite => args.crl_delta.min(n),
        Engine::Postgres => 0,
    };
    match db {
        Db::Sqlite => {
            let store =
                SqliteStore::open(&Home::open(&home)?.db_path()).context("opening the database")?;
            store
                .seed_revocations_unaudited(&RevocationSeed {
                    count: n,
                    recent: delta,
                    recent_secs: RECENT_SECS,
                    now: nuc_core::time::now_unix(),
                    seed: n as u64,
                })
                .context("seeding the revocations")?;
            // Closed here: the child reads a settled database.
        }
        Db::Postgres { url, password, .. } => {
            let opts = nuc_store_postgres::PgOptions {
                password: Some(password.clone()),
                ..Default::default()
            };
            nuc_store_postgres::PgStore::open(url, &opts)
                .with_context(|| format!("opening {url}"))?
                .seed_certificates_unaudited(
                    &nuc_store::seed::CertificateSeed {
                        count: n,
                        revoked: n,
                        now: nuc_core::time::now_unix(),
                        seed: n as u64,
                    },
                    b"",
                    &mut |_| {},
                )
                .context("seeding the revoked certificates")?;
        }
    }
    let seed_time = started.elapsed();
    out!(
        "crl {n}: setup (not timed): nuc init {:.2} s, {n} revocations seeded in {:.2} s",
        init_time.as_secs_f64(),
        seed_time.as_secs_f64()
    );

    let mut child = Command::new(exe);
    db.child_args(&mut child);
    let child = child
        .arg("--crl-child-home")
        .arg(&home)
        .arg("--out-dir")
        .arg(&out)
        .arg("--crl-delta")
        .arg(delta.to_string())
        .arg("--crl-sizes")
        .arg(n.to_string())
        .env("SOFTHSM2_CONF", home.join("hsm").join("softhsm2.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the CRL child")?;
    let output = Proc::new(child, "CRL child").finish()?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        out!("{line}");
    }
    ensure!(
        output.status.success(),
        "the CRL child failed ({})",
        output.status
    );
    let mut report = last_json(&output.stdout).context("the CRL child reported nothing")?;

    // Judged by openssl: parsed whole, signature verified with the issuing CA's key.
    let issuing = home.join("ca").join("issuing.pem");
    let mut judged = serde_json::Map::new();
    for (name, file) in [("full", "full.crl"), ("delta", "delta.crl")] {
        let started = Instant::now();
        let verdict = openssl_crl(&out.join(file), &issuing)
            .with_context(|| format!("openssl crl on the {name} CRL of {n} revocations"))?;
        out!(
            "crl {n}: openssl crl -CAfile issuing.pem on the {name} CRL: {verdict} ({:.2} s)",
            started.elapsed().as_secs_f64()
        );
        judged.insert(name.into(), json!(verdict));
    }
    report["openssl_crl"] = Value::Object(judged);
    Ok(report)
}

/// `openssl crl -inform DER -in CRL -CAfile ISSUER -noout -crlnumber`: must succeed and say
/// `verify OK`; returns what it said, on one line.
fn openssl_crl(crl: &Path, issuer: &Path) -> Result<String> {
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-crlnumber", "-in"])
        .arg(crl)
        .arg("-CAfile")
        .arg(issuer)
        .stdin(Stdio::null())
        .output()
        .context("cannot run openssl crl")?;
    let said = format!(
        "{} {}",
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ");
    ensure!(
        out.status.success() && said.contains("verify OK"),
        "openssl crl refused it ({}): {said}",
        out.status
    );
    Ok(said)
}

fn print_summary(rows: &[(Engine, usize, Option<Value>)]) {
    out!();
    out!(
        "summary (complete CRL + its delta, signed and recorded; targets for {TARGET_ENTRIES} \
         entries: <= {TARGET_SECS} s, peak <= {TARGET_MIB} MiB above the resident size before, \
         delta alone <= {TARGET_DELTA_MS} ms):"
    );
    out!(
        "{:>8} {:>9} {:>11} {:>9} {:>10} {:>10} {:>10} {:>13} {:>12}  verdict",
        "engine",
        "entries",
        "publish s",
        "CRL MB",
        "peak MiB",
        "base MiB",
        "above MiB",
        "delta alone",
        "delta MiB"
    );
    for (engine, n, report) in rows {
        let engine = engine.name();
        let Some(r) = report else {
            out!("{engine:>8} {n:>9} {:>11}", "FAILED");
            continue;
        };
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let verdict = if *n == TARGET_ENTRIES {
            if r["pass"].as_bool() == Some(true) {
                "PASS"
            } else {
                "MISS"
            }
        } else {
            "-"
        };
        out!(
            "{engine:>8} {n:>9} {:>11.2} {:>9.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} ms {:>12.1}  {verdict}",
            f("publish_s"),
            f("full_bytes") / 1e6,
            f("publish_peak_mib"),
            f("baseline_rss_mib"),
            f("publish_peak_above_baseline_mib"),
            f("delta_alone_ms"),
            f("delta_alone_peak_mib")
        );
    }
}

// -------------------------------------------------------------------------------- child

/// Writes a recorded CRL to `path` piece by piece, checking its length.
fn copy_crl(store: &dyn PublicationStore, row: &nuc_store::CrlRow, path: &Path) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut seq, mut written) = (0, 0i64);
    while let Some(piece) = store.crl_chunk(row.crl_number, seq)? {
        file.write_all(&piece)?;
        written += piece.len() as i64;
        seq += 1;
    }
    file.flush()?;
    ensure!(
        written == row.size,
        "CRL {}: {written} bytes stored, {} recorded",
        row.crl_number,
        row.size
    );
    Ok(())
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// Resets this process's peak resident size (`VmHWM`) to its current size (Linux >= 4.0).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The number of entries of a DER CRL's revokedCertificates, counted without decoding them.
fn crl_entries(der: &[u8]) -> Option<usize> {
    /// One TLV: (tag, content, rest).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, b) = b.split_first()?;
        let (len, b) = if first & 0x80 == 0 {
            (usize::from(first), b)
        } else {
            let k = usize::from(first & 0x7f);
            if !(1..=8).contains(&k) {
                return None;
            }
            let len = b
                .get(..k)?
                .iter()
                .fold(0usize, |a, x| (a << 8) | usize::from(*x));
            (len, &b[k..])
        };
        Some((tag, b.get(..len)?, &b[len..]))
    }
    let (_, cert_list, _) = tlv(der)?;
    let (_, mut tbs, _) = tlv(cert_list)?;
    // version, signature, issuer, thisUpdate, [nextUpdate], [revokedCertificates], [0] exts:
    // the list is the SEQUENCE that follows the times, if any.
    let mut seen_time = false;
    while !tbs.is_empty() {
        let (tag, content, rest) = tlv(tbs)?;
        match tag {
            0x17 | 0x18 => seen_time = true,
            0x30 if seen_time => {
                let (mut list, mut count) = (content, 0);
                while !list.is_empty() {
                    list = tlv(list)?.2;
                    count += 1;
                }
                return Some(count);
            }
            _ if seen_time => return Some(0),
            _ => {}
        }
        tbs = rest;
    }
    Some(0)
}

/// The child's side: open the seeded home's CA, time `publish` (complete CRL + delta) and
/// then `publish_delta` alone, each with its peak memory; time the scan and the signature
/// alone; write the CRLs into `OUT` and report on stdout.
pub(crate) fn child(home: &Path, out: &Path, args: &Args) -> Result<()> {
    let n = *args.crl_sizes.first().context("no CRL size given")?;
    // The publisher's own account of each CRL (`CRL built`: entries, bytes, time by step), on
    // stderr beside the figures.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("nuc_publisher=info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let home = Home::open(home)?;
    let store = crate::engine::open(&home, args.store_url.as_deref())?;
    let ca = Ca::open(&home, &*store).context("opening the CA of the CRL home")?;
    let crls = CrlContext {
        ca: &ca,
        store: &store,
    };

    // The complete CRL and its delta, as the service's timer publishes them.
    let baseline_rss = status_kib("VmRSS");
    let peak_before_open = status_kib("VmHWM");
    let reset = reset_peak();
    let started = Instant::now();
    let published =
        nuc_publisher::crl::publish(crls, nuc_core::time::now_unix(), FULL_VALIDITY_SECS)
            .context("publishing the complete CRL and its delta")?;
    let publish_time = started.elapsed();
    let publish_peak = status_kib("VmHWM");

    // A delta alone, against the complete CRL just published.
    let delta_rss = status_kib("VmRSS");
    let reset_delta = reset_peak();
    let started = Instant::now();
    let delta = nuc_publisher::crl::publish_delta(
        crls,
        nuc_core::time::now_unix(),
        DELTA_VALIDITY_SECS,
        ACTOR,
    )
    .context("publishing a delta CRL alone")?
    .context("no complete CRL to base the delta on")?;
    let delta_time = started.elapsed();
    let delta_peak = status_kib("VmHWM");

    // Where the time goes: the bare scan.
    let started = Instant::now();
    let mut scanned = 0usize;
    store
        .for_each_revocation(None, &mut |_| scanned += 1)
        .context("scanning the revocations")?;
    let scan_time = started.elapsed();

    // Out of the store, piece by piece, for the judges; counted from the bytes.
    for (row, file) in [
        (&published.full, "full.crl"),
        (&published.delta, "delta.crl"),
        (&delta.row, "delta-alone.crl"),
    ] {
        copy_crl(&*store, row, &out.join(file))?;
    }
    let count = |file: &str| -> Result<usize> {
        crl_entries(&std::fs::read(out.join(file))?).with_context(|| format!("{file} is not DER"))
    };
    let full_entries = count("full.crl")?;
    let delta_entries = count("delta.crl")?;
    let delta_alone_entries = count("delta-alone.crl")?;
    ensure!(
        full_entries == n && scanned == n,
        "the complete CRL lists {full_entries} entries, the scan saw {scanned}, of {n} revocations"
    );
    // Only SQLite's seeding puts a known number of revocations in the delta's window.
    let sqlite = args.store_url.is_none();
    if sqlite && (delta_entries != args.crl_delta || delta_alone_entries != args.crl_delta) {
        eprintln!(
            "nuc-bench: crl {n}: the deltas list {delta_entries} and {delta_alone_entries} \
             entries instead of {} (the seeding took longer than the delta's window?)",
            args.crl_delta
        );
    }

    let publish_s = publish_time.as_secs_f64();
    let peak_mib = if reset {
        mib(publish_peak)
    } else {
        // Without the reset the peak may be that of opening the CA: still an upper bound.
        mib(publish_peak).max(mib(peak_before_open))
    };
    let above = peak_mib - mib(baseline_rss);
    let delta_ms = delta_time.as_secs_f64() * 1e3;
    let pass = publish_s <= TARGET_SECS && above <= TARGET_MIB && delta_ms <= TARGET_DELTA_MS;
    let full_mb = published.full.size as f64 / 1e6;
    println!(
        "crl {n}: complete CRL of {full_entries} entries ({full_mb:.1} MB) + delta of \
         {delta_entries}, built, signed and recorded in {publish_s:.2} s; peak memory {peak_mib:.1} \
         MiB, {above:.1} MiB above the resident size before ({:.1} MiB{})",
        mib(baseline_rss),
        if reset {
            ""
        } else {
            "; the peak could not be reset, so it may be an older one"
        }
    );
    println!(
        "crl {n}: delta CRL alone ({delta_alone_entries} entries, {} bytes): {:.1} ms, peak \
         memory {:.1} MiB (resident before: {:.1} MiB{})",
        delta.row.size,
        delta_ms,
        if reset_delta {
            mib(delta_peak)
        } else {
            f64::NAN
        },
        mib(delta_rss),
        if reset_delta { "" } else { "; peak unknown" }
    );
    println!(
        "crl {n}: so the complete CRL alone takes about {:.2} s; of which, measured apart: \
         scanning the {scanned} revocations {:.2} s",
        (publish_time.saturating_sub(delta_time)).as_secs_f64(),
        scan_time.as_secs_f64(),
    );
    if n == TARGET_ENTRIES {
        println!(
            "crl {n}: targets <= {TARGET_SECS} s, <= {TARGET_MIB} MiB above the resident size \
             before, delta alone <= {TARGET_DELTA_MS} ms: {}",
            if pass { "PASS" } else { "MISS" }
        );
    }
    println!(
        "{}",
        json!({
            "bench": "crl-publication",
            "revocations": n,
            "full_entries": full_entries,
            "full_bytes": published.full.size,
            "full_number": published.full_number,
            "delta_entries": delta_entries,
            "publish_s": round(publish_s),
            "publish_peak_mib": round(peak_mib),
            "publish_peak_above_baseline_mib": round(above),
            "baseline_rss_mib": round(mib(baseline_rss)),
            "peak_reset": reset,
            "full_alone_s_estimate": round(publish_time.saturating_sub(delta_time).as_secs_f64()),
            "delta_alone_entries": delta_alone_entries,
            "delta_alone_bytes": delta.row.size,
            "delta_alone_ms": round(delta_time.as_secs_f64() * 1e3),
            "delta_alone_peak_mib": reset_delta.then(|| round(mib(delta_peak))),
            "scan_s": round(scan_time.as_secs_f64()),
            "target_entries": TARGET_ENTRIES,
            "target_s": TARGET_SECS,
            "target_mib_above_baseline": TARGET_MIB,
            "target_delta_ms": TARGET_DELTA_MS,
            "pass": (n == TARGET_ENTRIES).then_some(pass),
        })
    );
    Ok(())
}
