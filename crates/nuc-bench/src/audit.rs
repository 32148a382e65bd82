//! Audit tree: what the Merkle tree over the audit log costs issuance, and how long its proofs
//! take to make at 10 million records.
//!
//! The tree (`nuc_store::AuditTree`, grown and checkpointed by `nuc_publisher::checkpoint`) is
//! kept apart from the issuance path on purpose: a record is written with the change it
//! describes, and the service's checkpointer adds it to the tree later, in its own
//! transactions. What it must not do is slow issuance down, and what it is for (proofs that a
//! record is in the log and that the log only grew) must stay quick however long the log gets.
//! Two targets:
//!
//! * **Issuance with the tree >= 0.95 x issuance without it**, measured inside the issuance
//!   benchmark's child ([`issuance_with_tree`]): the same home, the same CA (the CA key type
//!   of that child), the same engine and the same `--threads`, after the issuance
//!   measurement. Four runs of the same number of issuances, sized to last about
//!   `--audit-secs` seconds each (default 3) by a calibration of about two seconds that also
//!   warms up (the first run after a shorter one came out fast every time): *without*,
//!   *with*, *with*, *without* (so that a drift along the runs, such as a growing database,
//!   weighs the same on both kinds; alternating without/with/without/with would give the
//!   drift to the *with* runs). *With* runs, beside the issuing threads, a
//!   thread doing exactly what the service's checkpointer does (`nuc-server`'s
//!   `audit/checkpointer.rs` with the default `[audit]` settings): every 500 ms, when 1,000
//!   records or more are not yet under a checkpoint (or the last one is 60 s old),
//!   `nuc_publisher::checkpoint::checkpoint_now` (the tree grown to the log through the
//!   store, and its head signed with the CA's audit key in the HSM, Ed25519); else, when the
//!   tree is behind the log, `catch_up`. A *with* run ends when the checkpointer, stopped after
//!   the last issuance, has made its shutdown pass (tree grown to the last record, checkpoint
//!   signed): that pass is timed as part of the run, so all the tree's work for the run's
//!   records is inside the timed window (conservative: this last pass overlaps no issuance).
//!   *Without* runs no such thread: its records are written just the same (two per issuance),
//!   and the tree is grown over them later, outside the timed window. Before every run, untimed,
//!   the tree is brought up to the log and checkpointed, so every run starts from the same
//!   state. Applicant keys are ECDSA P-256 whatever the CA's key type (fresh ones, made before
//!   the runs: thousands are needed, and RSA key generation would take minutes); the same in
//!   both kinds of run, so they cancel. The ratio is the mean of the two pairs' `with /
//!   without` (run 2 / run 1, run 3 / run 4). After the runs the result is checked: the tree
//!   covers the whole log, every checkpoint opens under the audit key's verifier
//!   (`nuc_tlog::note::open_checkpoint`), the latest one's root is the root computed from the
//!   stored nodes (`nuc_tlog::tree::root` over `StoredTree`) and the root recomputed in memory
//!   from the records themselves, and each checkpoint is proven consistent with the one before
//!   it.
//! * **Proof generation < 5 ms (p99) at 10,000,000 records** ([`bench`], `--only audit`, on
//!   SQLite, in this process): a fresh `SqliteStore` (its own migrations) in a temporary
//!   directory; `--audit-records` (default 10,000,000) synthetic audit records written into
//!   its `audit_log` with raw SQL on the same file (one transaction, a recursive CTE; records
//!   shaped like the CA's: actions, `serial:` objects, JSON details of the usual size; the
//!   chain's `prev_hash` and `hash` are placeholders, which the tree does not read — the hash
//!   chain of this file would not verify, and is not what is measured); then the tree grown
//!   over them through the real `grow_audit_tree` in chunks of the service's
//!   `nuc_publisher::checkpoint::GROW_CHUNK` (leaves per second reported). Then, one thread,
//!   each proof timed alone: `--audit-proofs` (default 1,000) inclusion proofs
//!   (`nuc_tlog::tree::inclusion_proof` over `StoredTree`) of random leaves at the full size,
//!   as many at three random smaller sizes, and as many consistency proofs between random
//!   sizes `m < n`. Every proof is then verified (not timed) with `nuc_tlog`'s verifiers:
//!   inclusion against the leaf hash of the record read back from `audit_log` and the root
//!   the growth itself computed at that size (the growth stops at the random sizes for that);
//!   consistency against the roots computed from the stored nodes at `m` and `n`. PASS when
//!   the **p99** of each kind of proof is under 5 ms; p50 and max are printed too. The
//!   database was just written, so it is read from the OS page cache, as a service's hot
//!   database would be. Free space is checked (`df`) first; the directory is removed at the
//!   end.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use nuc_ca::{Ca, IssueRequest, KeyAlgorithm};
use nuc_publisher::checkpoint::{self, GROW_CHUNK, Pass, Schedule};
use nuc_store::{AuditTree, Issuance, ServiceStore, StoredTree, audit_leaf_hash};
use nuc_store_sqlite::SqliteStore;
use nuc_tlog::Hash;
use nuc_tlog::tree;
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::{Args, Figure, Run, make_csrs, ms, request, round, threads_text};

/// Issuance with the tree must keep at least this fraction of the rate without it.
pub(crate) const RATIO_TARGET: f64 = 0.95;
/// Every kind of proof must be made in less than this many milliseconds, at the p99.
pub(crate) const PROOF_TARGET_MS: f64 = 5.0;
/// The log's name: `nuc-server`'s default `[audit] origin`.
const ORIGIN: &str = "pki.gov.kz/nuc-rk/audit";
/// The service's checkpointer: its tick, and the default `[audit] checkpoint_every_records`
/// and `checkpoint_every_secs`.
const TICK: Duration = Duration::from_millis(500);
const EVERY_RECORDS: u64 = 1_000;
const EVERY_SECS: u64 = 60;
/// The runs of the comparison, in order: `true` with the checkpointer. Without, with, with,
/// without: a drift along the runs (a database that grows, a machine that warms up) weighs the
/// same on both kinds.
const RUNS: [bool; 4] = [false, true, true, false];
/// Seconds of issuance (at the issuance measurement's rate) that calibrate the runs' length
/// and warm up: after one second only, the first run was the fastest of the four every time.
const CALIBRATION_SECS: f64 = 2.0;
/// Random sizes (below the full one) at which inclusion proofs are also made.
const SMALLER_SIZES: usize = 3;
/// Bytes of disk a synthetic record needs, with its share of the tree and some headroom.
const BYTES_PER_RECORD: u64 = 650;
/// The pseudo-random leaves and sizes are the same from run to run.
const SEED: u64 = 0x6e75_635f_6175_6469;

// ------------------------------------------------------------- issuance with the tree

/// What the checkpointer thread did during a run.
#[derive(Default, Clone, Copy)]
struct Passes {
    passes: u64,
    /// Passes that signed a checkpoint (after growing the tree to the log).
    signed: u64,
    /// Passes that only grew the tree.
    caught_up: u64,
    /// Time spent in passes.
    busy: Duration,
}

/// One pass of `nuc-server`'s checkpointer (the same function), with the default settings;
/// `force` is its pass at shutdown.
fn pass(store: &dyn AuditTree, ca: &Ca, force: bool) -> Result<Pass> {
    let schedule = Schedule {
        every_records: EVERY_RECORDS,
        every_secs: EVERY_SECS,
    };
    Ok(checkpoint::pass(store, ca, ORIGIN, schedule, force)?)
}

/// The checkpointer's loop: a pass every [`TICK`] (after the previous one), until `stop` is
/// dropped.
fn checkpointer(store: &dyn AuditTree, ca: &Ca, stop: &mpsc::Receiver<()>) -> Result<Passes> {
    let mut p = Passes::default();
    loop {
        match stop.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return Ok(p),
        }
        let started = Instant::now();
        let done = pass(store, ca, false).context("a pass of the checkpointer")?;
        p.busy += started.elapsed();
        p.passes += 1;
        match done {
            Pass::Signed => p.signed += 1,
            Pass::CaughtUp => p.caught_up += 1,
            Pass::Idle => {}
        }
    }
}

/// Issues each of `reqs` once on `threads` threads.
fn issue_all(
    ca: &Ca,
    store: &dyn ServiceStore,
    reqs: &[IssueRequest],
    threads: usize,
) -> Result<Run> {
    crate::run(reqs.len(), threads, |i| {
        ca.issue(std::slice::from_ref(&reqs[i]), &Issuance::alone(store))
            .map(drop)
            .map_err(Into::into)
    })
}

/// One run, with the checkpointer beside the issuing threads or without it. With it, the run
/// ends when the tree covers the run's last record under a checkpoint: the checkpointer is
/// stopped after the last issuance and its shutdown pass is timed as part of the run, so all
/// the tree's work for the run's records is inside the timed window (conservative: that last
/// pass overlaps no issuance).
fn one_run(
    ca: &Ca,
    store: &dyn ServiceStore,
    reqs: &[IssueRequest],
    threads: usize,
    with_tree: bool,
) -> Result<(Run, Option<Passes>)> {
    if !with_tree {
        return Ok((issue_all(ca, store, reqs, threads)?, None));
    }
    let tree: &dyn AuditTree = store;
    let (stop, stopped) = mpsc::channel::<()>();
    let started = Instant::now();
    let (run, mut passes) = std::thread::scope(|s| {
        let cp = s.spawn(move || checkpointer(tree, ca, &stopped));
        let run = issue_all(ca, store, reqs, threads);
        drop(stop);
        let passes = cp
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the checkpointer thread panicked")));
        Ok::<_, anyhow::Error>((run?, passes?))
    })?;
    let last = Instant::now();
    if let Pass::Signed = settle(tree, ca)? {
        passes.signed += 1;
    }
    passes.passes += 1;
    passes.busy += last.elapsed();
    let run = Run {
        elapsed: started.elapsed(),
        latencies: run.latencies,
    };
    Ok((run, Some(passes)))
}

/// Brings the tree up to the log and checkpoints it, as the service does at shutdown.
fn settle(store: &dyn AuditTree, ca: &Ca) -> Result<Pass> {
    pass(store, ca, true).context("bringing the audit tree up to the log")
}

/// After the runs: the tree covers the log, every checkpoint opens under the audit key and
/// extends the one before, and the latest root is both the stored tree's and the records'.
/// Gives (log size, checkpoints).
fn verify_tree(store: &dyn AuditTree, ca: &Ca) -> Result<(u64, usize)> {
    let log = store.audit_log_size()?;
    let size = store.audit_tree_size()?;
    ensure!(size == log, "the audit tree covers {size} records of {log}");
    let latest = store
        .latest_checkpoint()?
        .context("no checkpoint was signed")?;
    ensure!(
        latest.size == log,
        "the latest checkpoint covers {} records of {log}",
        latest.size
    );
    let signer = ca.checkpoint_signer(ORIGIN)?;
    let key = signer.verifier();
    let stored = tree::root(log, &StoredTree(store))?;
    ensure!(
        stored == latest.root,
        "the latest checkpoint's root is not the stored tree's root"
    );
    // The root of the records themselves, recomputed in memory from the log.
    let mut frontier = tree::Frontier::new();
    let mut seq = 1i64;
    loop {
        let page = store.audit_records_from(seq, 10_000)?;
        let Some(last) = page.last() else {
            break;
        };
        seq = last.seq + 1;
        for r in &page {
            frontier
                .append(audit_leaf_hash(r))
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    ensure!(
        frontier.size() == log && frontier.root() == latest.root,
        "the latest checkpoint's root is not the root of the records"
    );
    let checkpoints = store.checkpoints()?;
    let mut before: Option<(u64, Hash)> = None;
    for c in &checkpoints {
        let opened = nuc_tlog::note::open_checkpoint(c.note.as_bytes(), key, &[])
            .with_context(|| format!("the checkpoint of size {} does not open", c.size))?;
        ensure!(
            opened.checkpoint.origin == ORIGIN
                && opened.checkpoint.size == c.size
                && opened.checkpoint.root == c.root,
            "the checkpoint of size {} says another size or root than its row",
            c.size
        );
        if let Some((m, old)) = before {
            let proof = tree::consistency_proof(m, c.size, &StoredTree(store))?;
            tree::verify_consistency(m, c.size, &old, &c.root, &proof).with_context(|| {
                format!(
                    "the checkpoint of size {} does not extend the one of {m}",
                    c.size
                )
            })?;
        }
        before = Some((c.size, c.root));
    }
    Ok((log, checkpoints.len()))
}

/// Issuance with the service's checkpointer running beside it against issuance without it,
/// in the issuance benchmark's child (its CA and store, after its own measurement). Prints its
/// lines; gives its JSON for the child's report.
pub(crate) fn issuance_with_tree(
    ca: &Ca,
    store: &dyn ServiceStore,
    args: &Args,
    issue_rate: f64,
) -> Result<Value> {
    let alg = ca.issuing().algorithm;
    let secs = args.audit_secs;
    let threads = args.threads.max(1);
    let tree: &dyn AuditTree = store;

    // Calibration, which is also the warm-up of the new applicants' path (not counted): about
    // two seconds of issuances, to size the runs.
    let started = Instant::now();
    let n_cal = ((issue_rate * CALIBRATION_SECS).ceil() as usize).max(args.warmup.max(1));
    let calibration: Vec<IssueRequest> = make_csrs(n_cal, KeyAlgorithm::EcdsaP256)?
        .into_iter()
        .map(request)
        .collect();
    let mut csr_time = started.elapsed();
    let calibrated = issue_all(ca, store, &calibration, threads)?.rate();
    let per_run = ((calibrated * secs).ceil() as usize).max(threads);
    let started = Instant::now();
    let reqs: Vec<IssueRequest> = make_csrs(RUNS.len() * per_run, KeyAlgorithm::EcdsaP256)?
        .into_iter()
        .map(request)
        .collect();
    csr_time += started.elapsed();

    let mut settle_time = Duration::ZERO;
    let mut results = Vec::new();
    let mut passes = Passes::default();
    let mut leaves_during = 0u64;
    for (with_tree, chunk) in RUNS.into_iter().zip(reqs.chunks(per_run)) {
        let t = Instant::now();
        settle(tree, ca)?;
        settle_time += t.elapsed();
        let tree_before = tree.audit_tree_size()?;
        let (run, p) = one_run(ca, store, chunk, threads, with_tree)?;
        if let Some(p) = p {
            passes.passes += p.passes;
            passes.signed += p.signed;
            passes.caught_up += p.caught_up;
            passes.busy += p.busy;
            leaves_during += tree.audit_tree_size()? - tree_before;
        }
        results.push((with_tree, run));
    }
    let t = Instant::now();
    settle(tree, ca)?;
    settle_time += t.elapsed();
    let (log, checkpoints) = verify_tree(tree, ca).context("checking the audit tree")?;

    let rate = |k: usize| results[k].1.rate();
    // Runs 0 and 3 without, 1 and 2 with: a drift along the four runs cancels.
    let ratios = [rate(1) / rate(0), rate(2) / rate(3)];
    let ratio = (ratios[0] + ratios[1]) / 2.0;
    let (with_rate, without_rate) = ((rate(1) + rate(2)) / 2.0, (rate(0) + rate(3)) / 2.0);
    let pass_ = ratio >= RATIO_TARGET;
    let verdict = if pass_ { "PASS" } else { "MISS" };
    let runs_text: Vec<String> = results
        .iter()
        .map(|(w, r)| {
            format!(
                "{} {:.1}/s in {:.2} s",
                if *w { "with" } else { "without" },
                r.rate(),
                r.elapsed.as_secs_f64()
            )
        })
        .collect();
    println!(
        "{alg}: audit tree: issue {with_rate:.1}/s with the checkpointer vs {without_rate:.1}/s \
         without ({}; {per_run} issuances each, {}, P-256 applicants) -> with/without {ratio:.3} \
         (mean of the pairs' {:.3} and {:.3}; target >= {RATIO_TARGET}: {verdict})",
        runs_text.join(", "),
        threads_text(threads),
        ratios[0],
        ratios[1]
    );
    let lat = |k: usize, p: f64| ms(results[k].1.percentile(p));
    println!(
        "{alg}: audit tree: issuance latency p50/p99 without {:.2}/{:.2} and {:.2}/{:.2} ms, \
         with {:.2}/{:.2} and {:.2}/{:.2} ms",
        lat(0, 50.0),
        lat(0, 99.0),
        lat(3, 50.0),
        lat(3, 99.0),
        lat(1, 50.0),
        lat(1, 99.0),
        lat(2, 50.0),
        lat(2, 99.0)
    );
    println!(
        "{alg}: audit tree: in the 'with' runs the checkpointer made {} passes ({:.2} s busy; \
         the last one, after the last issuance, timed as part of the run), signed {} checkpoints \
         in the HSM and grew the tree by {leaves_during} leaves ({} passes grew it only); after \
         the 'without' runs the tree was grown untimed",
        passes.passes,
        passes.busy.as_secs_f64(),
        passes.signed,
        passes.caught_up
    );
    println!(
        "{alg}: audit tree: checked after the runs: the tree covers all {log} records, its root \
         is the records' (recomputed in memory) and the latest checkpoint's, {checkpoints} \
         checkpoints open under the audit key and each extends the one before"
    );
    println!(
        "{alg}: audit tree: setup (not timed): {} P-256 applicant CSRs in {:.2} s, calibration \
         {n_cal} issuances at {calibrated:.1}/s, tree brought up to the log and checkpointed \
         before each run and after: {:.2} s in all",
        n_cal + reqs.len(),
        csr_time.as_secs_f64(),
        settle_time.as_secs_f64()
    );
    Ok(json!({
        "secs_per_run": secs,
        "issuances_per_run": per_run,
        "threads": threads,
        "applicant_keys": "ecdsa-p256",
        "runs": results.iter().map(|(w, r)| json!({
            "tree": w,
            "secs": round(r.elapsed.as_secs_f64()),
            "per_s": round(r.rate()),
            "p50_ms": round(ms(r.percentile(50.0))),
            "p99_ms": round(ms(r.percentile(99.0))),
        })).collect::<Vec<_>>(),
        "with_per_s": round(with_rate),
        "without_per_s": round(without_rate),
        "pair_ratios": [round_3(ratios[0]), round_3(ratios[1])],
        "ratio": round_3(ratio),
        "target_ratio": RATIO_TARGET,
        "pass": pass_,
        "checkpointer": {
            "passes": passes.passes,
            "signed": passes.signed,
            "caught_up": passes.caught_up,
            "busy_s": round(passes.busy.as_secs_f64()),
            "leaves": leaves_during,
        },
        "verified": { "records": log, "checkpoints": checkpoints },
    }))
}

fn round_3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The child's `audit_tree` report as one cell of the side-by-side table.
pub(crate) fn ratio_text(report: &Value) -> String {
    let r = &report["audit_tree"];
    if r.get("ratio").is_none() {
        return "FAILED".into();
    }
    format!(
        "{:.1} vs {:.1} ({:.3}, {})",
        r["with_per_s"].as_f64().unwrap_or(f64::NAN),
        r["without_per_s"].as_f64().unwrap_or(f64::NAN),
        r["ratio"].as_f64().unwrap_or(f64::NAN),
        if r["pass"].as_bool() == Some(true) {
            "PASS"
        } else {
            "MISS"
        }
    )
}

// ------------------------------------------------------------------ proofs at 10M records

/// Random leaves and sizes, the same in every run (the seeding's SplitMix64).
struct Rng(nuc_store::seed::SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[lo, hi]`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Free space where the database goes, against what it will need (`df -Pk`).
fn check_disk(dir: &Path, records: u64) -> Result<()> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .context("running df")?;
    ensure!(out.status.success(), "df failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let free_kib: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|f| f.parse().ok())
        .context("cannot read df's output")?;
    let free = free_kib * 1024;
    let need = records * BYTES_PER_RECORD + (1 << 30);
    out!(
        "audit: disk: {:.1} GiB free in the temporary directory, about {:.1} GiB needed",
        gib(free),
        gib(need)
    );
    ensure!(
        free >= need,
        "not enough disk for {records} audit records: {:.1} GiB free, about {:.1} GiB needed",
        gib(free),
        gib(need)
    );
    Ok(())
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

/// Writes `records` synthetic audit records into the (closed) database at `path`, with raw SQL
/// in one transaction, unjournaled (a throwaway file); gives the time taken.
fn fill(path: &Path, records: u64) -> Result<Duration> {
    const STEP: u64 = 1_000_000;
    let started = Instant::now();
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let placeholder = "0".repeat(64);
    let now = nuc_core::time::now_unix();
    let tx = conn.transaction()?;
    {
        // Two records per certificate, as the CA writes them: its reservation, its issuance.
        let mut insert = tx.prepare(
            "WITH RECURSIVE s(seq) AS (SELECT ?1 UNION ALL SELECT seq + 1 FROM s WHERE seq < ?2)
             INSERT INTO audit_log (seq, at, actor, action, object, details, prev_hash, hash)
             SELECT seq, ?3 - (?4 - seq) / 100, 'bench',
                    CASE seq % 2 WHEN 1 THEN 'certificate.reserved' ELSE 'certificate.issued' END,
                    'serial:' || lower(hex(randomblob(20))),
                    CASE seq % 2
                      WHEN 1 THEN '{\"profile\":\"individual-auth\",\"spki_sha256\":\"'
                                  || lower(hex(randomblob(32))) || '\"}'
                      ELSE '{\"profile\":\"individual-auth\",\"sha256\":\"'
                           || lower(hex(randomblob(32)))
                           || '\",\"subject\":\"SERIALNUMBER=IIN860908363012,SURNAME=ТЕСТОВ,GIVENNAME=ТЕСТ,CN=ТЕСТОВ ТЕСТ,C=KZ\"}'
                    END,
                    ?5, ?5
             FROM s",
        )?;
        let mut from = 1u64;
        while from <= records {
            let to = (from + STEP - 1).min(records);
            let n = insert.execute(rusqlite::params![
                i64::try_from(from)?,
                i64::try_from(to)?,
                now,
                i64::try_from(records)?,
                placeholder
            ])?;
            ensure!(
                n as u64 == to - from + 1,
                "{n} records written of {}",
                to - from + 1
            );
            from = to + 1;
        }
    }
    tx.commit()?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    drop(conn);
    Ok(started.elapsed())
}

/// Latencies of one kind of proof, with the hashes per proof.
struct Proofs {
    what: String,
    run: Run,
    hashes: (usize, usize),
}

impl Proofs {
    fn new(what: String) -> Self {
        Self {
            what,
            run: Run {
                elapsed: Duration::ZERO,
                latencies: Vec::new(),
            },
            hashes: (usize::MAX, 0),
        }
    }

    fn add(&mut self, took: Duration, hashes: usize) {
        self.run.elapsed += took;
        self.run.latencies.push(took);
        self.hashes = (self.hashes.0.min(hashes), self.hashes.1.max(hashes));
    }

    fn stats(&mut self) -> (f64, f64, f64) {
        self.run.latencies.sort();
        (
            ms(self.run.percentile(50.0)),
            ms(self.run.percentile(99.0)),
            ms(self.run.percentile(100.0)),
        )
    }
}

/// The leaf hash of leaf `index`, from its record as stored.
fn leaf(store: &dyn AuditTree, index: u64) -> Result<Hash> {
    let seq = i64::try_from(index + 1)?;
    let record = store
        .audit_records_from(seq, 1)?
        .pop()
        .filter(|r| r.seq == seq)
        .with_context(|| format!("no audit record {seq}"))?;
    Ok(audit_leaf_hash(&record))
}

/// Proof generation at `--audit-records` records on SQLite (see the module's documentation).
pub(crate) fn bench(args: &Args, figures: &mut Vec<Figure>) -> Result<()> {
    let n = args.audit_records;
    let count = args.audit_proofs;
    out!(
        "nuc-bench audit: inclusion and consistency proofs (nuc_tlog::tree over the stored \
         perfect subtrees) at {n} audit records on SQLite, {count} of each kind, one thread; \
         target: proof generation p99 < {PROOF_TARGET_MS} ms"
    );
    let tmp = tempfile::Builder::new()
        .prefix("nuc-bench-audit-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = std::path::absolute(tmp.path())?;
    check_disk(&dir, n)?;
    let path = dir.join("nuc.db");
    drop(SqliteStore::open(&path).context("creating the database")?);
    let fill_time = fill(&path, n).context("writing the synthetic audit records")?;
    let file_size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    out!(
        "audit: setup: {n} synthetic audit records written with raw SQL in {:.1} s ({:.0} \
         records/s; {:.2} GiB; chain hashes are placeholders, which the tree does not read)",
        fill_time.as_secs_f64(),
        n as f64 / fill_time.as_secs_f64(),
        gib(file_size(&path))
    );

    let sqlite = SqliteStore::open(&path).context("opening the database")?;
    let store: &dyn AuditTree = &sqlite;
    let mut rng = Rng(nuc_store::seed::SplitMix64(SEED));
    let mut smaller: Vec<u64> = (0..SMALLER_SIZES).map(|_| rng.between(1, n - 1)).collect();
    smaller.sort_unstable();
    smaller.dedup();

    // The tree grown through the store, stopping at the smaller sizes to keep the roots the
    // growth computed there (from the records' leaf hashes).
    let started = Instant::now();
    let mut heads: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut size = store.audit_tree_size()?;
    for stop in smaller.iter().copied().chain([n]) {
        while size < stop {
            let head = store.grow_audit_tree(GROW_CHUNK.min(stop - size))?;
            ensure!(
                head.size > size,
                "the tree stopped growing at {size} leaves"
            );
            size = head.size;
            if size == stop {
                heads.insert(stop, head.root);
            }
        }
    }
    let grow_time = started.elapsed();
    let leaves_per_s = n as f64 / grow_time.as_secs_f64();
    let wal = dir.join("nuc.db-wal");
    out!(
        "audit: tree grown over {n} records through grow_audit_tree, {GROW_CHUNK} leaves per \
         transaction: {:.1} s, {leaves_per_s:.0} leaves/s ({:.2} GiB with the tree, {:.2} GiB WAL)",
        grow_time.as_secs_f64(),
        gib(file_size(&path)),
        gib(file_size(&wal))
    );

    let src = StoredTree(store);
    for (&s, root) in &heads {
        ensure!(
            tree::root(s, &src)? == *root,
            "the root of the stored tree at {s} is not the one its growth computed"
        );
    }

    // Inclusion at the full size and at the smaller sizes.
    let mut at_full = Proofs::new(format!("inclusion at n = {n}"));
    let mut at_smaller = Proofs::new(format!(
        "inclusion at n = {}",
        smaller
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for k in 0..2 * count {
        let (size, into) = if k < count {
            (n, &mut at_full)
        } else {
            (smaller[k % smaller.len()], &mut at_smaller)
        };
        let index = rng.between(0, size - 1);
        let t = Instant::now();
        let proof = tree::inclusion_proof(index, size, &src)?;
        let took = t.elapsed();
        into.add(took, proof.len());
        tree::verify_inclusion(&leaf(store, index)?, index, size, &proof, &heads[&size])
            .with_context(|| format!("the inclusion proof of leaf {index} at {size}"))?;
    }

    // Consistency between random sizes m < n.
    let mut consistency = Proofs::new(format!("consistency, {count} random (m, n)"));
    for _ in 0..count {
        let new = rng.between(2, n);
        let old = rng.between(1, new - 1);
        let t = Instant::now();
        let proof = tree::consistency_proof(old, new, &src)?;
        let took = t.elapsed();
        consistency.add(took, proof.len());
        let (old_root, new_root) = (tree::root(old, &src)?, tree::root(new, &src)?);
        tree::verify_consistency(old, new, &old_root, &new_root, &proof)
            .with_context(|| format!("the consistency proof from {old} to {new}"))?;
    }
    drop(sqlite);
    drop(tmp);
    out!(
        "audit: every proof verified (inclusion against the stored record's leaf hash and the \
         root the growth computed; consistency against the roots at m and n); the database was \
         removed"
    );

    out!();
    out!(
        "summary (audit proofs at {n} records, SQLite, one thread, OS page cache warm; target: \
         p99 < {PROOF_TARGET_MS} ms for each kind):"
    );
    out!(
        "{:<44} {:>6} {:>8} {:>8} {:>8} {:>7}  verdict",
        "proof",
        "count",
        "p50 ms",
        "p99 ms",
        "max ms",
        "hashes"
    );
    let mut all_pass = true;
    let mut kinds = Vec::new();
    for p in [&mut at_full, &mut at_smaller, &mut consistency] {
        let (p50, p99, max) = p.stats();
        let pass = p99 < PROOF_TARGET_MS;
        all_pass &= pass;
        let verdict = if pass { "PASS" } else { "MISS" };
        out!(
            "{:<44} {:>6} {p50:>8.3} {p99:>8.3} {max:>8.3} {:>7}  {verdict}",
            p.what,
            p.run.latencies.len(),
            format!("{}-{}", p.hashes.0, p.hashes.1)
        );
        figures.push(Figure {
            what: format!(
                "audit proofs: {} p50/p99/max ms (target p99 < {PROOF_TARGET_MS} ms)",
                p.what
            ),
            engine: Engine::Sqlite,
            text: format!("{p50:.3}/{p99:.3}/{max:.3} ({verdict})"),
        });
        kinds.push(json!({
            "what": p.what,
            "count": p.run.latencies.len(),
            "p50_ms": round_3(p50),
            "p99_ms": round_3(p99),
            "max_ms": round_3(max),
            "hashes": [p.hashes.0, p.hashes.1],
            "pass": pass,
        }));
    }
    out!(
        "setup (not timed): {n} records in {:.1} s; tree growth {:.1} s ({leaves_per_s:.0} leaves/s)",
        fill_time.as_secs_f64(),
        grow_time.as_secs_f64()
    );
    figures.push(Figure {
        what: format!("audit tree growth over {n} records (grow_audit_tree)"),
        engine: Engine::Sqlite,
        text: format!(
            "{leaves_per_s:.0} leaves/s ({:.1} s)",
            grow_time.as_secs_f64()
        ),
    });
    out!(
        "{}",
        json!({
            "bench": "audit-proofs",
            "engine": "sqlite",
            "records": n,
            "fill_s": round(fill_time.as_secs_f64()),
            "grow_s": round(grow_time.as_secs_f64()),
            "grow_leaves_per_s": round(leaves_per_s),
            "grow_chunk": GROW_CHUNK,
            "proofs": kinds,
            "target_p99_ms": PROOF_TARGET_MS,
            "pass": all_pass,
        })
    );
    if !all_pass {
        out!("audit: some proofs missed the target");
    }
    Ok(())
}

/// Refuses arguments this benchmark cannot use.
pub(crate) fn check_args(args: &Args) -> Result<()> {
    ensure!(
        args.audit_secs == 0.0 || (0.5..=600.0).contains(&args.audit_secs),
        "--audit-secs must be 0 (no comparison) or in [0.5, 600]"
    );
    ensure!(
        (2..=i64::MAX as u64).contains(&args.audit_records),
        "--audit-records must be at least 2"
    );
    ensure!(args.audit_proofs >= 1, "--audit-proofs must be at least 1");
    Ok(())
}
