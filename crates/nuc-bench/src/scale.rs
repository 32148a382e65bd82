//! **Issuance at the size of a national CA after a year** (issue 15, item 3): does issuance
//! slow down as the database fills? In the issuance benchmark's child, right after the
//! empty-database measurement and in the same process, home, CA, engine and threads, the store
//! is seeded with `--scale-certificates` certificates (`--scale-revocations` of them revoked;
//! rows written directly, see `nuc_store::seed`: random serials, their own IINs and key
//! hashes, a real certificate's DER size, no audit records), then issuance and the bare HSM
//! signature are measured again the same way.
//!
//! Targets: **issuance rate at that size >= 0.95 x the empty database's rate** (the ratio is
//! also given normalised by the raw signing rate measured beside each, which takes out what
//! the machine did meanwhile), and for RSA-2048 **issuance >= 0.9 x the raw HSM rate**.
//! On PostgreSQL the seeded tables are vacuumed and analysed after the load, as autovacuum
//! would do: a year-old database is not one whose rows are being read for the first time.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use nuc_ca::{Home, KeyAlgorithm};
use nuc_store::seed::CertificateSeed;
use serde_json::{Value, json};

use crate::{Args, engine, round, run};

/// Issuance at scale against the empty database's rate.
pub(crate) const SCALE_TARGET: f64 = 0.95;
/// RSA issuance against the raw signing rate.
pub(crate) const RSA_RAW_TARGET: f64 = 0.9;

/// The database's size on disk, for SQLite (the file and its write-ahead log).
fn sqlite_bytes(db: &Path) -> u64 {
    let wal = db.with_extension("db-wal");
    [db, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The figures of the issuance benchmark's empty-database run, to compare with.
pub(crate) struct Empty {
    pub(crate) issue_per_s: f64,
    pub(crate) raw_per_s: f64,
}

/// Seeds the home, then measures `warm` (not counted), the raw signature, issuance (`issue`,
/// one fresh request per call) and the raw signature again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn issuance_at_scale(
    home: &Home,
    url: Option<&str>,
    args: &Args,
    alg: KeyAlgorithm,
    der: &[u8],
    empty: &Empty,
    sign: &(dyn Fn(usize) -> Result<()> + Sync),
    warm: &(dyn Fn(usize) -> Result<()> + Sync),
    issue: &(dyn Fn(usize) -> Result<()> + Sync),
) -> Result<Value> {
    let threads = args.threads.max(1);
    let seed = CertificateSeed {
        count: args.scale_certificates,
        revoked: args.scale_revocations.min(args.scale_certificates),
        now: nuc_core::time::now_unix(),
        seed: 15,
    };
    let started = Instant::now();
    let mut last = Instant::now();
    engine::seed_certificates(home, url, &seed, der, &mut |n| {
        if last.elapsed().as_secs() >= 10 {
            eprintln!("{alg}: seeding: {n} of {} certificates", seed.count);
            last = Instant::now();
        }
    })?;
    let seed_secs = started.elapsed().as_secs_f64();
    let bytes = url.is_none().then(|| sqlite_bytes(&home.db_path()));
    println!(
        "{alg}: setup (not timed): {} certificates ({} revoked, {} B of DER each) seeded in {seed_secs:.1} s{}",
        seed.count,
        seed.revoked,
        der.len(),
        bytes
            .map(|b| format!(", database now {:.0} MiB", b as f64 / 1048576.0))
            .unwrap_or_default()
    );

    run(args.warmup, threads, warm)?;
    let n = args.count;
    let raw_before = run(n, threads, sign)?;
    let activity_before = engine::server_activity(url)?;
    let issued = run(n, threads, issue)?;
    let activity = engine::activity_since(url, activity_before, n)?;
    let raw_after = run(n, threads, sign)?;
    if let Some(activity) = &activity {
        println!(
            "{alg}: PostgreSQL at {} certificates, {activity}",
            seed.count
        );
    }
    let issue_per_s = issued.rate();
    let raw_per_s = (raw_before.rate() + raw_after.rate()) / 2.0;
    let ratio = issue_per_s / empty.issue_per_s;
    let normalised = (issue_per_s / raw_per_s) / (empty.issue_per_s / empty.raw_per_s);
    let to_raw = issue_per_s / raw_per_s;
    // The target is on the rates themselves; the normalised ratio only helps to read them.
    let pass = ratio >= SCALE_TARGET;
    let rsa = matches!(alg, KeyAlgorithm::Rsa { .. });
    let raw_pass = !rsa || to_raw >= RSA_RAW_TARGET;
    println!(
        "{alg}: at {} certificates: issue {issue_per_s:.1}/s vs {:.1}/s empty -> ratio {ratio:.3} \
         ({normalised:.3} normalised by the raw rate beside each; target >= {SCALE_TARGET}: {}); \
         issue/raw {to_raw:.3} ({:.3} empty){}",
        seed.count,
        empty.issue_per_s,
        if pass { "PASS" } else { "MISS" },
        empty.issue_per_s / empty.raw_per_s,
        if rsa {
            format!(
                " (RSA target >= {RSA_RAW_TARGET}: {})",
                if raw_pass { "PASS" } else { "MISS" }
            )
        } else {
            String::new()
        }
    );
    Ok(json!({
        "certificates": seed.count,
        "revoked": seed.revoked,
        "seed_secs": round(seed_secs),
        "sqlite_bytes": bytes,
        "issue_per_s": round(issue_per_s),
        "raw_sign_per_s": round(raw_per_s),
        "empty_issue_per_s": round(empty.issue_per_s),
        "ratio": round(ratio),
        "ratio_normalised": round(normalised),
        "issue_to_raw": round(to_raw),
        "empty_issue_to_raw": round(empty.issue_per_s / empty.raw_per_s),
        "pass": pass,
        "raw_pass": raw_pass,
        "issue_latency_ms": {
            "p50": round(crate::ms(issued.percentile(50.0))),
            "p99": round(crate::ms(issued.percentile(99.0))),
        },
    }))
}

/// The report's cell for one engine and key type.
pub(crate) fn ratio_text(report: &Value) -> String {
    let r = &report["scale"];
    if r.get("ratio").is_none() {
        return "FAILED".into();
    }
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:.1} vs {:.1} ({:.3}, norm. {:.3}, {}); issue/raw {:.3}",
        f("issue_per_s"),
        f("empty_issue_per_s"),
        f("ratio"),
        f("ratio_normalised"),
        if r["pass"].as_bool() == Some(true) {
            "PASS"
        } else {
            "MISS"
        },
        f("issue_to_raw")
    )
}
