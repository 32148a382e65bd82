//! `nuc-bench`: what a certificate issuance costs, as a ratio against the HSM's own limit, and
//! with the audit tree against without it; F1 end to end; cached OCSP against `openssl ocsp`;
//! CRLs of a million entries; audit proofs at 10 million records; F4 enrollment onto a card
//! over pcscd+vpcd.
//!
//! The CA's throughput is bounded by its HSM: every certificate needs one signature with the
//! issuing key, and the HSM makes only so many per second. What the service adds around that
//! signature (checking the CSR, building and linting the TBS, reserving the serial and
//! recording the certificate with their audit records, durably) must not become the bottleneck.
//! The target: **an issuance through `Ca::issue` costs at most 25% more time than the bare
//! HSM signature with the same key**, i.e. `raw_sign_rate / issue_rate - 1 <= 0.25`.
//!
//! Absolute numbers depend on the machine, the disk and the HSM (SoftHSM2 here, whose "signing
//! hardware" is the same CPU the service runs on); the ratio is what is comparable across
//! machines and what the target is about.
//!
//! How it measures, for each CA key type (`--algs`, default `rsa-2048,ecdsa-p256`):
//!
//! * The parent makes a fresh temporary home and runs itself again as a child (`--child ALG
//!   --home DIR`) with `SOFTHSM2_CONF` pointing at that home's token: SoftHSM2 reads the
//!   variable once, when its module loads, so each key type needs its own process.
//! * The child runs `nuc init` there (root and issuing key of that type), opens the CA, and
//!   makes one applicant CSR per issuance *before* timing (a key can be certified only once),
//!   with an applicant key of the CA's type: RSA-2048 under an RSA CA (what NUC RK applicants
//!   use today), ECDSA P-256 under an ECDSA CA.
//! * After a warm-up (not counted) it measures, with `--threads` threads sharing one `Ca`:
//!   (a) bare `Hsm::sign_raw` with the issuing key, `--count` times (a ~1 KB message for RSA,
//!   which the mechanism hashes; a 32-byte digest for ECDSA); (b) `--count` issuances of the
//!   `individual-auth` profile; (a) again. The raw rate is the mean of the two (a) runs.
//! * It prints one line per key type with the ratio, PASS or MISS, the per-issuance p50/p99
//!   latency, and a JSON line for machines; then it removes its home. It writes nothing
//!   outside that home.
//!
//! `--breakdown` also times each step of an issuance on one thread, through the same public
//! pieces `Ca::issue` is made of, to show where the time goes when the target is missed.
//!
//! **Issuance with the audit tree** ([`audit`]): then, in the same child (same home, CA, engine
//! and threads), issuance without and with the service's checkpointer running beside it (the
//! Merkle tree over the audit log grown and its checkpoints signed in the HSM every 1,000
//! records, checked every 500 ms), four runs of about `--audit-secs` seconds each: without,
//! with, with, without. Target: **issuance rate with the tree >= 0.95 x the rate without it**
//! (the mean of the two pairs' ratios). `--audit-secs 0` leaves it out.
//!
//! **Issuance at a national CA's size** ([`scale`]): last, in the same child, the home is
//! seeded with `--scale-certificates` certificates (1,000,000; `--scale-revocations` 100,000 of
//! them revoked) and issuance is measured again against the raw signature. Targets: **issuance
//! at that size >= 0.95 x the empty database's rate**, and for RSA-2048 **>= 0.9 x the raw HSM
//! rate**. `--scale-certificates 0` leaves it out.
//!
//! Six more benchmarks follow, each in its module:
//!
//! * [`f1`]: **F1 end to end over gRPC with mutual TLS**, the real `nuc serve` and
//!   `nuc-registry` driven by concurrent clients (submit, then an operator-confirmed issuance
//!   of an AUTH+SIGN pair), against the raw signing rate of the same token and issuing key
//!   measured in the same run (target: F1 rate >= 70% of raw rate / 2). With `--f1-profile`,
//!   [`profile`] then splits `nuc serve`'s CPU per F1 by step from `perf record` call stacks
//!   (TLS, gRPC, CMS verification, storage, audit, HSM signatures...; target: **<= 1 ms per
//!   F1 outside the HSM signatures**).
//! * [`ocsp`]: **cached OCSP responses over loopback HTTP**, the real `nuc serve` (which signs a
//!   response once and serves it again while the status holds) against `openssl ocsp -index`
//!   (which signs every response) measured side by side in the same run: the same serials,
//!   the same request shape (one SHA-1 CertID, no nonce), the same load generator and
//!   concurrency, every response checked. Target: **ours >= 20 x openssl's responses per
//!   second**. It is a ratio for the same reason as above: both responders run on the same
//!   machine as the load, so the machine cancels out, and a well-known responder is a bar
//!   anyone can reproduce; 20x is what caching must buy once the path around the cache is
//!   lean. Also printed: p50/p99 latency, and the ratio with one connection per request on
//!   both sides (openssl supports nothing else; ours is measured with keep-alive for the
//!   target). And against the **HTTP floor** ([`ocsp_floor`]): nginx serving the very bytes
//!   of one of our responses as a static file, with the same load generator, POST and GET, at
//!   16 and 64 connections. Target: **ours >= 0.9 x nginx's rate with a p99 < 1 ms at 16
//!   connections**: what an answer costs beyond one HTTP exchange.
//! * [`crl`]: **CRL publication** (`nuc_publisher::crl::publish`: complete CRL and delta, signed
//!   in the HSM and recorded) with 100,000 and 1,000,000 revoked certificates seeded in a fresh
//!   home, time and peak memory (VmHWM) in a child process, then a delta CRL alone; every CRL
//!   judged by `openssl crl`. Target: **1,000,000 entries in < 5 s and < 300 MiB** (absolute:
//!   it is what an operator provisions, and one signature per CRL makes the HSM irrelevant).
//! * [`audit`]: **audit proofs at 10 million records** on SQLite: `--audit-records` synthetic
//!   audit records written into a fresh database, the tree grown over them through the store's
//!   `grow_audit_tree` (leaves per second), then `--audit-proofs` inclusion proofs at the full
//!   size, as many at smaller random sizes and as many consistency proofs between random
//!   sizes, each timed alone and verified. Target: **proof generation p99 < 5 ms** for each
//!   kind (absolute: it is what an auditor or a monitor waits for, per proof).
//! * [`f4`]: **F4 enrollment at the counter over pcscd+vpcd**: `--f4-count` full `nuc-station
//!   enroll` runs against the real `nuc serve`, each onto a freshly personalised emulated card
//!   (`card-sim`, ID card and SIM alternating) in vpcd's reader, timed as wall time and as
//!   *machine time* (the CPU time nuc-station, nuc serve, card-sim and pcscd used during it),
//!   with the station's own steps; and the APDU round trips per second of pcscd+vpcd+card-sim.
//!   Target: **one enrollment in < 2 s of machine time** (absolute: it is the counter's budget;
//!   every enrollment measured must be under it). Needs pcscd (started as root if none runs)
//!   and vpcd (`vsmartcard-vpcd`).
//!
//! * [`ocsp_flood`]: **OCSP under attack**: F1 p50/p99 without and with a concurrent OCSP nonce
//!   flood, in the same service and run, and the peak RSS (VmHWM) of `nuc serve` after 100,000
//!   OCSP requests with unique CertIDs, half with 2,000-octet serials. No target: figures.
//!
//! **Storage engines.** The issuance, F1 and OCSP benchmarks run once per engine of
//! `--engines` (default `sqlite,postgres`), one after the other in the same run, with the same
//! load, counts and durations: on SQLite each home has its file; on PostgreSQL the bench starts
//! a throwaway cluster of its own (`pg-cluster`: initdb and pg_ctl in a temporary directory,
//! fsync on, stopped by its pid at the end), a fresh database per benchmark, and hands it to
//! `nuc init --store-url` and to its own children (`--store-url`, the password only in
//! `NUC_STORE_PASSWORD`). The issuance benchmark's children and the F1 raw-signing child open
//! the store through [`engine`] as an `Arc<dyn ServiceStore>`. At the end, a table puts every
//! engine's figures side by side (the issuance benchmark's ratio with the audit tree too). CRL,
//! the audit proofs, F4 and the OCSP flood stay on SQLite.
//!
//! All run by default, in this order; `--only issue|f1|ocsp|crl|audit|f4|ocsp-flood` selects
//! some (comma-separated). The ones that run the service need the release `nuc` (and for F1
//! and F4 `nuc-registry`; for F4 `nuc-station` and `card-sim`) next to this binary, which
//! `make bench` builds first.
//!
//! The exit code is 0 whether the targets are met or not (this is a benchmark, not a test); it
//! is 1 only when a measurement could not be made.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use nuc_ca::{Ca, Home, InitOptions, IssueRequest, KeyAlgorithm};
use nuc_core::{Iin, SubjectInfo};
use nuc_store::{Issuance, ServiceStore};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameBuilder, X509ReqBuilder};
use serde_json::{Value, json};

use crate::engine::{Db, Engine, PgServer};

/// Issuance may cost at most this much more than the bare HSM signature, in percent.
const TARGET_PCT: f64 = 25.0;
/// The profile issued: the commonest certificate of the NUC (an individual's AUTH).
const PROFILE: &str = "individual-auth";
/// Size of the message given to the HSM for RSA (CKM_SHA256_RSA_PKCS hashes it): about a TBS.
const RSA_MESSAGE_LEN: usize = 1024;
/// Issuances per step in `--breakdown` (capped by `--count`).
const BREAKDOWN_MAX: usize = 200;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "nuc-bench",
    about = "Issuance rate of the NUC RK core against the bare HSM signature with the same CA key \
             and with the audit tree against without it, F1 end to end over gRPC with mutual TLS \
             against the same limit, cached OCSP against openssl ocsp and nginx, CRL publication time and \
             memory for up to a million entries, audit proof generation at 10 million records, \
             and F4 enrollment onto an emulated card over pcscd+vpcd"
)]
struct Args {
    /// Run only these benchmarks, comma-separated: `issue` (Ca::issue vs the bare signature,
    /// then with the audit tree vs without), `f1` (F1 over gRPC with mutual TLS vs raw rate /
    /// 2), `ocsp` (cached OCSP vs openssl ocsp and the HTTP floor), `crl` (CRL publication
    /// time and memory), `audit` (audit proofs at 10 million records), `f4` (enrollment onto a card over
    /// pcscd+vpcd, APDU round trips) or `ocsp-flood` (F1 latency under an OCSP nonce flood,
    /// memory under unique CertIDs). Default: all seven, in that order.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "BENCH")]
    only: Vec<Bench>,
    /// Storage engines the issuance, F1 and OCSP benchmarks run on, comma-separated, each
    /// measured the same way in the same run and reported side by side at the end; PostgreSQL
    /// in a throwaway cluster the bench starts and stops (`pg-cluster`). The CRL benchmark
    /// runs on these too; F4 and the OCSP flood run on SQLite.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    engines: Vec<Engine>,
    /// A setting of the benchmark's PostgreSQL cluster, as a line of `postgresql.conf`
    /// (`shared_buffers=1GB`); repeat for several. For sizing a production server: the
    /// default cluster is Debian's stock configuration, as the tests use it.
    #[arg(long = "pg-setting", value_name = "NAME=VALUE")]
    pg_settings: Vec<String>,
    /// CA key types to measure, comma-separated; each runs in its own process and fresh home.
    #[arg(long, value_delimiter = ',', default_value = "rsa-2048,ecdsa-p256")]
    algs: Vec<String>,
    /// Issuances measured per key type (and raw signatures per raw measurement).
    #[arg(long, default_value_t = 400)]
    count: usize,
    /// Threads sharing one CA, for both the raw and the issuance measurements (and for the raw
    /// measurement of the F1 benchmark). The service serves many callers at once, and an
    /// issuance waits on fsync where a raw signature does not, so the default is well above the
    /// core count (the raw rate is flat past it).
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Issuances measured under an ECDSA CA, at least (its issuances are about eight times
    /// faster than under an RSA one: 400 would last a tenth of a second, shorter than the
    /// machine's own hiccups; its CSRs cost nothing to make).
    #[arg(long, default_value_t = 4000)]
    ecdsa_count: usize,
    /// Issuances and raw signatures made before measuring, not counted.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Also time each step of an issuance (one thread) to show where the time goes.
    #[arg(long)]
    breakdown: bool,
    /// Issuance benchmark, with the audit tree vs without: about how many seconds each of the
    /// four runs lasts (without, with, with, without); 0 leaves the comparison out. Runs of
    /// 3 s gave ratios from 0.87 to 1.04 on a 2-core machine; 10 s settles within ~1%.
    #[arg(long, default_value_t = 10.0)]
    audit_secs: f64,
    /// Issuance benchmark at a national CA's size after a year: certificates seeded into the
    /// home after the empty-database measurement (no audit records: `nuc_store::seed`), then
    /// issuance measured again in the same process (target: >= 0.95 x the empty rate); 0
    /// leaves it out.
    #[arg(long, default_value_t = 1_000_000)]
    scale_certificates: usize,
    /// Of the seeded certificates, how many are revoked.
    #[arg(long, default_value_t = 100_000)]
    scale_revocations: usize,
    /// Audit proofs benchmark: synthetic audit records the tree is grown over.
    #[arg(long, default_value_t = 10_000_000)]
    audit_records: u64,
    /// Audit proofs benchmark: proofs timed of each kind (inclusion at the full size,
    /// inclusion at smaller sizes, consistency).
    #[arg(long, default_value_t = 1000)]
    audit_proofs: usize,
    /// F1 benchmark: concurrent gRPC clients, each with its own mTLS connections.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// F1 benchmark: F1s measured (each one submit + one confirmed issuance of AUTH+SIGN).
    #[arg(long, default_value_t = 200)]
    f1_count: usize,
    /// F1 benchmark: F1s made before measuring, not counted.
    #[arg(long, default_value_t = 10)]
    f1_warmup: usize,
    /// F1 benchmark: then `--f1-count` (at least 1,000) more F1s under `perf record` (DWARF
    /// call stacks) on `nuc serve`, to split its CPU per F1 by step (TLS, gRPC, CMS
    /// verification, storage, audit, HSM signatures...). The profiled run's rate is not a
    /// figure: sampling slows it.
    #[arg(long)]
    f1_profile: bool,
    /// F1 benchmark: raw signatures per raw measurement (one before, one after the F1s), on
    /// `--threads` threads; more than `--count` because a short run is noisy.
    #[arg(long, default_value_t = 2000)]
    f1_raw_count: usize,
    /// OCSP benchmark: certificates our CA issues for it (the openssl peer's test CA issues the
    /// same number, with the same serials); one pre-built request per certificate.
    #[arg(long, default_value_t = 300)]
    ocsp_certs: usize,
    /// OCSP benchmark: how many of those certificates are revoked (on both sides).
    #[arg(long, default_value_t = 30)]
    ocsp_revoked: usize,
    /// OCSP benchmark: concurrent connections of the load generator, the same for both
    /// responders.
    #[arg(long, default_value_t = 16)]
    ocsp_concurrency: usize,
    /// OCSP benchmark: the wider load, ours and the HTTP floor (nginx serving the same
    /// response bytes) also measured with this many connections.
    #[arg(long, default_value_t = 64)]
    ocsp_wide_concurrency: usize,
    /// OCSP benchmark: rounds, each measuring every responder once, one after the other.
    #[arg(long, default_value_t = 2)]
    ocsp_rounds: usize,
    /// OCSP benchmark: seconds measured per responder per round.
    #[arg(long, default_value_t = 4.0)]
    ocsp_secs: f64,
    /// OCSP benchmark: seconds of load before each run, not counted.
    #[arg(long, default_value_t = 1.0)]
    ocsp_warmup_secs: f64,
    /// CRL benchmark: numbers of revoked certificates, each measured in its own fresh home.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    crl_sizes: Vec<usize>,
    /// CRL benchmark: of those, how many were revoked within the last minute: what the delta
    /// CRL lists.
    #[arg(long, default_value_t = 1000)]
    crl_delta: usize,
    /// F4 benchmark: enrollments measured (`nuc-station enroll`, one fresh card each, ID card
    /// and SIM alternating), after one checked enrollment not counted.
    #[arg(long, default_value_t = 10)]
    f4_count: usize,
    /// OCSP flood benchmark: F1s measured without the flood, and as many with it.
    #[arg(long, default_value_t = 100)]
    flood_f1_count: usize,
    /// OCSP flood benchmark: HTTP clients flooding `/ocsp` (nonce requests, then the unique
    /// CertIDs).
    #[arg(long, default_value_t = 16)]
    flood_clients: usize,
    /// OCSP flood benchmark: requests with unique CertIDs (no nonce) before peak RSS is read.
    #[arg(long, default_value_t = 100_000)]
    flood_unique: usize,
    /// OCSP flood benchmark: octets of the long serials (one request in two).
    #[arg(long, default_value_t = 2000)]
    flood_long_octets: usize,
    /// F4 benchmark: APDU round trips measured through pcscd+vpcd+card-sim.
    #[arg(long, default_value_t = 5000)]
    f4_apdus: u32,
    /// Internal: issue and revoke the OCSP benchmark's certificates in this home (the parent
    /// sets SOFTHSM2_CONF), writing them into `--out-dir`.
    #[arg(long, hide = true, value_name = "DIR", requires = "out_dir")]
    ocsp_setup_home: Option<PathBuf>,
    /// Internal: publish the CRLs of this seeded home (the parent sets SOFTHSM2_CONF), report
    /// time and memory, write the CRLs into `--out-dir`.
    #[arg(long, hide = true, value_name = "DIR", requires = "out_dir")]
    crl_child_home: Option<PathBuf>,
    /// Internal: where an OCSP or CRL child writes what the parent checks.
    #[arg(long, hide = true, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Internal: measure this key type in this process (the parent sets SOFTHSM2_CONF).
    #[arg(long, hide = true, value_name = "ALG", requires = "home")]
    child: Option<String>,
    /// Internal: the PostgreSQL database a child opens (password from NUC_STORE_PASSWORD)
    /// instead of the home's SQLite file.
    #[arg(long, hide = true, value_name = "URL")]
    store_url: Option<String>,
    /// Internal: the applicant CSRs the child issues for (DER in hex, one a line), made once by
    /// the parent for every engine: each engine has its own CA, so a key certified once per CA.
    #[arg(long, hide = true, value_name = "FILE", requires = "child")]
    csr_file: Option<PathBuf>,
    /// Internal: the temporary home of the child, removed when it ends.
    #[arg(long, hide = true, value_name = "DIR", requires = "child")]
    home: Option<PathBuf>,
    /// Internal: measure the raw HSM signing rate with the issuing key of this home, which a
    /// running service holds too (the parent sets SOFTHSM2_CONF); the home is left as it is.
    #[arg(long, hide = true, value_name = "DIR", conflicts_with = "child")]
    raw_sign_home: Option<PathBuf>,
}

impl Args {
    /// The arguments of the issuance benchmark's child for a CA key `alg`: `--count` raised to
    /// `--ecdsa-count` for ECDSA.
    fn for_alg(&self, alg: KeyAlgorithm) -> Args {
        let mut args = self.clone();
        if matches!(alg, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) {
            args.count = args.count.max(args.ecdsa_count);
        }
        args
    }
}

/// The benchmarks `--only` chooses from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Bench {
    /// `Ca::issue` against the bare HSM signature, per CA key type.
    Issue,
    /// F1 end to end over gRPC with mutual TLS against raw HSM rate / 2.
    F1,
    /// Cached OCSP responses over HTTP: `nuc serve` against `openssl ocsp` and against nginx
    /// serving the same bytes (the HTTP floor), same load.
    Ocsp,
    /// Complete and delta CRL generation time and peak memory, 100k and 1M revocations.
    Crl,
    /// Audit tree growth and inclusion/consistency proof generation at 10M records (SQLite).
    Audit,
    /// F4 enrollment onto an emulated card over pcscd+vpcd, and APDU round trips per second.
    F4,
    /// F1 p50/p99 without and with an OCSP nonce flood; peak RSS after unique CertIDs.
    OcspFlood,
}

/// The parent's `println!` that survives a closed stdout (`| head`): it keeps draining the
/// child's output, so the child is never killed by a broken pipe before removing its home.
macro_rules! out {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod audit;
mod crl;
mod engine;
mod f1;
mod f4;
mod ocsp;
mod ocsp_flood;
mod ocsp_floor;
mod profile;
mod scale;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = check_args(&args).and_then(|_| {
        if let (Some(alg), Some(home)) = (&args.child, &args.home) {
            child(alg, home, &args)
        } else if let Some(home) = &args.raw_sign_home {
            f1::raw_sign_child(home, &args)
        } else if let (Some(home), Some(out)) = (&args.ocsp_setup_home, &args.out_dir) {
            ocsp::setup_child(home, out, &args)
        } else if let (Some(home), Some(out)) = (&args.crl_child_home, &args.out_dir) {
            crl::child(home, out, &args)
        } else {
            benches(&args)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nuc-bench: error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

fn check_args(args: &Args) -> Result<Vec<KeyAlgorithm>> {
    ensure!(args.count >= 1, "--count must be at least 1");
    ensure!(args.threads >= 1, "--threads must be at least 1");
    ensure!(args.clients >= 1, "--clients must be at least 1");
    ensure!(args.f1_count >= 1, "--f1-count must be at least 1");
    ensure!(args.f1_raw_count >= 1, "--f1-raw-count must be at least 1");
    ensure!(args.ocsp_certs >= 1, "--ocsp-certs must be at least 1");
    ensure!(
        args.ocsp_revoked <= args.ocsp_certs,
        "--ocsp-revoked must not exceed --ocsp-certs"
    );
    ensure!(
        args.ocsp_concurrency >= 1 && args.ocsp_wide_concurrency >= 1,
        "--ocsp-concurrency and --ocsp-wide-concurrency must be at least 1"
    );
    ensure!(
        (1..=20).contains(&args.ocsp_rounds),
        "--ocsp-rounds must be in [1, 20]"
    );
    ensure!(
        args.ocsp_secs > 0.0 && args.ocsp_secs <= 600.0,
        "--ocsp-secs must be in (0, 600]"
    );
    ensure!(
        (0.0..=60.0).contains(&args.ocsp_warmup_secs),
        "--ocsp-warmup-secs must be in [0, 60]"
    );
    ensure!(
        args.crl_sizes.iter().all(|n| *n >= 1),
        "--crl-sizes must all be at least 1"
    );
    ensure!(args.f4_count >= 1, "--f4-count must be at least 1");
    ensure!(
        args.flood_f1_count >= 1 && args.flood_clients >= 1,
        "--flood-f1-count and --flood-clients must be at least 1"
    );
    ensure!(
        (21..=60_000).contains(&args.flood_long_octets),
        "--flood-long-octets must be in [21, 60000] (longer than RFC 5280's 20, within a request)"
    );
    ensure!(args.f4_apdus >= 1, "--f4-apdus must be at least 1");
    audit::check_args(args)?;
    args.algs
        .iter()
        .map(|a| KeyAlgorithm::from_str(a.trim()).map_err(anyhow::Error::from))
        .collect()
}

/// The benchmarks `--only` selects (all by default), one after the other. A benchmark that
/// cannot be made does not stop the next one; the exit code says that one failed.
fn benches(args: &Args) -> Result<()> {
    type BenchFn = fn(&Args, &mut Vec<Figure>) -> Result<()>;
    let all: [(Bench, &str, BenchFn); 7] = [
        (Bench::Issue, "issue", parent),
        (Bench::F1, "f1", f1::bench),
        (Bench::Ocsp, "ocsp", ocsp::bench),
        (Bench::Crl, "crl", |a, _| crl::bench(a)),
        (Bench::Audit, "audit", audit::bench),
        (Bench::F4, "f4", |a, _| f4::bench(a)),
        (Bench::OcspFlood, "ocsp-flood", |a, _| ocsp_flood::bench(a)),
    ];
    let started = Instant::now();
    let mut figures = Vec::new();
    let mut failed = Vec::new();
    let mut first = true;
    for (bench, name, run) in all {
        if !args.only.is_empty() && !args.only.contains(&bench) {
            continue;
        }
        if !first {
            out!();
        }
        first = false;
        let bench_started = Instant::now();
        if let Err(e) = run(args, &mut figures) {
            eprintln!("nuc-bench: error: {}", causes(&e));
            failed.push(name);
        }
        out!(
            "nuc-bench: {name} took {:.0} s",
            bench_started.elapsed().as_secs_f64()
        );
    }
    print_side_by_side(args, &figures);
    out!(
        "nuc-bench: all benchmarks run in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        failed.is_empty(),
        "the {} benchmark could not be made",
        failed.join(" and ")
    );
    Ok(())
}

// -------------------------------------------------------------------------- side by side

/// One figure of the side-by-side report: a benchmark's result on one engine.
pub(crate) struct Figure {
    /// What is measured, the same text on every engine (a row of the report).
    pub(crate) what: String,
    pub(crate) engine: Engine,
    /// The result, short (a cell of the report).
    pub(crate) text: String,
}

/// The engines' figures side by side: one row per measurement, one column per engine, in the
/// order the benchmarks reported them.
fn print_side_by_side(args: &Args, figures: &[Figure]) {
    if figures.is_empty() {
        return;
    }
    let engines: Vec<Engine> = args.engines.clone();
    let mut rows: Vec<&str> = Vec::new();
    for f in figures {
        if !rows.contains(&f.what.as_str()) {
            rows.push(&f.what);
        }
    }
    let cell = |what: &str, e: Engine| {
        figures
            .iter()
            .filter(|f| f.what == what && f.engine == e)
            .map(|f| f.text.as_str())
            .next_back()
            .unwrap_or("-")
    };
    let width = |e: Engine| {
        rows.iter()
            .map(|r| cell(r, e).chars().count())
            .max()
            .unwrap_or(0)
            .max(e.name().len())
    };
    let what_width = rows.iter().map(|r| r.chars().count()).max().unwrap_or(0);
    out!();
    out!("side by side (same run, same machine, same load and durations on each engine):");
    let mut head = format!("{:<what_width$}", "");
    for e in &engines {
        head.push_str(&format!(" | {:<w$}", e.name(), w = width(*e)));
    }
    out!("{}", head.trim_end());
    for r in &rows {
        let mut line = format!("{r:<what_width$}");
        for e in &engines {
            line.push_str(&format!(" | {:<w$}", cell(r, *e), w = width(*e)));
        }
        out!("{}", line.trim_end());
    }
}

// ------------------------------------------------------------------------------- parent

/// One key type's result on one engine, as the child reported it in its JSON line.
struct Row {
    engine: Engine,
    alg: String,
    report: Option<Value>,
}

fn parent(args: &Args, figures: &mut Vec<Figure>) -> Result<()> {
    let algs = check_args(args)?;
    ensure!(!algs.is_empty(), "--algs names no key type");
    let exe = std::env::current_exe().context("cannot find this executable to run it again")?;
    out!(
        "nuc-bench: {} issuances of {PROFILE} per CA key type (ECDSA: {}) and storage engine ({}), {}; \
         applicant keys: of the CA's key type (one fresh CSR per issuance, made before timing); \
         target: issuance <= {TARGET_PCT}% more than the bare HSM signature{}",
        args.count,
        args.count.max(args.ecdsa_count),
        engines_text(&args.engines),
        threads_text(args.threads),
        if args.audit_secs > 0.0 {
            format!(
                "; then with the audit tree's checkpointer vs without, 4 runs of about {} s \
                 (without, with, with, without; target: rate with >= {} x rate without)",
                args.audit_secs,
                audit::RATIO_TARGET
            )
        } else {
            String::new()
        }
    );
    // The applicants' CSRs, made once per key type for every engine (each engine's CA is a new
    // one, so the same keys may be certified by each): RSA key generation is the longest part
    // of the setup, and it is not what is measured.
    let csr_dir = tempfile::Builder::new()
        .prefix("nuc-bench-csrs-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut csr_files = Vec::with_capacity(algs.len());
    for alg in &algs {
        let started = Instant::now();
        let csrs = make_csrs(csrs_needed(&args.for_alg(*alg)), *alg)?;
        let file = csr_dir.path().join(format!("{alg}.hex"));
        let text: String = csrs.iter().map(|c| hex(c) + "\n").collect();
        std::fs::write(&file, text).context("writing the applicants' CSRs")?;
        out!(
            "{alg}: setup (not timed): {} applicant CSRs in {:.2} s, for every engine",
            csrs.len(),
            started.elapsed().as_secs_f64()
        );
        csr_files.push(file);
    }
    let mut rows = Vec::new();
    for engine in args.engines.iter().copied() {
        // One cluster for this engine's key types, a fresh database for each.
        let server = match PgServer::for_engine(engine, &args.pg_settings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("nuc-bench: error: {}", causes(&e));
                rows.extend(algs.iter().map(|alg| Row {
                    engine,
                    alg: alg.to_string(),
                    report: None,
                }));
                continue;
            }
        };
        for (i, alg) in algs.iter().enumerate() {
            let started = Instant::now();
            let report = match Db::new(engine, server.as_ref(), &format!("nuc_issue_{i}")) {
                Ok(db) => issue_child(&exe, &args.for_alg(*alg), *alg, &db, &csr_files[i])?,
                Err(e) => {
                    eprintln!("nuc-bench: error: {}", causes(&e));
                    None
                }
            };
            rows.push(Row {
                engine,
                alg: alg.to_string(),
                report,
            });
            figures.push(Figure {
                what: format!("issuance {alg}: time taken (setup + measurement)"),
                engine,
                text: format!("{:.0} s", started.elapsed().as_secs_f64()),
            });
        }
    }
    print_summary(args, &rows);
    for row in &rows {
        figures.push(Figure {
            what: format!(
                "issuance {}, {}: issue/s vs raw HSM sign/s (overhead; target <= {TARGET_PCT}%)",
                row.alg,
                threads_text(args.threads)
            ),
            engine: row.engine,
            text: match &row.report {
                Some(r) => {
                    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                    format!(
                        "{:.1} vs {:.1} ({:+.1}%, {})",
                        f("issue_per_s"),
                        f("raw_sign_per_s"),
                        f("overhead_pct"),
                        verdict(r)
                    )
                }
                None => "FAILED".into(),
            },
        });
        if args.scale_certificates > 0 {
            figures.push(Figure {
                what: format!(
                    "issuance {}, {}: issue/s at {} certificates ({} revoked) vs empty (ratio; target >= {})",
                    row.alg,
                    threads_text(args.threads),
                    args.scale_certificates,
                    args.scale_revocations.min(args.scale_certificates),
                    scale::SCALE_TARGET
                ),
                engine: row.engine,
                text: match &row.report {
                    Some(r) => scale::ratio_text(r),
                    None => "FAILED".into(),
                },
            });
        }
        if args.audit_secs > 0.0 {
            figures.push(Figure {
                what: format!(
                    "issuance {}, {}: issue/s with the audit tree vs without (ratio; target >= {})",
                    row.alg,
                    threads_text(args.threads),
                    audit::RATIO_TARGET
                ),
                engine: row.engine,
                text: match &row.report {
                    Some(r) => audit::ratio_text(r),
                    None => "FAILED".into(),
                },
            });
        }
    }
    let missed = rows.iter().any(|r| {
        r.report
            .as_ref()
            .is_some_and(|v| v["pass"] != Value::Bool(true))
    });
    if missed && !args.breakdown {
        out!("(to see where an issuance's time goes: make bench BENCH_ARGS=--breakdown)");
    }
    if rows.iter().any(|r| r.report.is_none()) {
        bail!("some key types could not be measured");
    }
    if args.audit_secs > 0.0
        && rows.iter().any(|r| {
            r.report
                .as_ref()
                .is_some_and(|v| v["audit_tree"].get("ratio").is_none())
        })
    {
        bail!("the issuance with the audit tree could not be measured for some key types");
    }
    Ok(())
}

fn verdict(report: &Value) -> &'static str {
    if report["pass"].as_bool() == Some(true) {
        "PASS"
    } else {
        "MISS"
    }
}

pub(crate) fn engines_text(engines: &[Engine]) -> String {
    engines
        .iter()
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the child measuring `alg` on `db`, in a fresh home; its JSON report if it succeeded.
fn issue_child(
    exe: &Path,
    args: &Args,
    alg: KeyAlgorithm,
    db: &Db,
    csr_file: &Path,
) -> Result<Option<Value>> {
    let tmp = tempfile::Builder::new()
        .prefix("nuc-bench-")
        .tempdir()
        .context("cannot create a temporary home")?;
    let home = std::path::absolute(tmp.path())?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(alg.to_string())
        .arg("--home")
        .arg(&home)
        .arg("--count")
        .arg(args.count.to_string())
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--warmup")
        .arg(args.warmup.to_string())
        .arg("--audit-secs")
        .arg(args.audit_secs.to_string())
        .arg("--scale-certificates")
        .arg(args.scale_certificates.to_string())
        .arg("--scale-revocations")
        .arg(args.scale_revocations.to_string())
        .arg("--csr-file")
        .arg(csr_file)
        .env("SOFTHSM2_CONF", home.join("hsm").join("softhsm2.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if args.breakdown {
        cmd.arg("--breakdown");
    }
    db.child_args(&mut cmd);
    let engine = db.engine();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the {alg} child on {engine}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut report = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.starts_with('{') {
            report = serde_json::from_str::<Value>(&line).ok();
        } else {
            out!("{engine}: {line}");
            continue;
        }
        out!("{line}");
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!("nuc-bench: the {alg} child on {engine} failed ({status})");
        report = None;
    }
    if home.exists() {
        eprintln!("nuc-bench: the {alg} child on {engine} left its home behind; removing it");
    }
    drop(tmp);
    Ok(report)
}

fn print_summary(args: &Args, rows: &[Row]) {
    out!();
    out!(
        "summary ({} issuances, {}, applicant keys of the CA's type, target <= {TARGET_PCT}%):",
        args.count,
        threads_text(args.threads)
    );
    out!(
        "{:<9} {:<12} {:>10} {:>13} {:>10} {:>9} {:>9}  verdict",
        "engine",
        "CA key",
        "issue/s",
        "raw sign/s",
        "overhead",
        "p50 ms",
        "p99 ms"
    );
    for row in rows {
        let Some(r) = &row.report else {
            out!("{:<9} {:<12} {:>10}", row.engine.name(), row.alg, "FAILED");
            continue;
        };
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let lat = |k: &str| r["issue_latency_ms"][k].as_f64().unwrap_or(f64::NAN);
        out!(
            "{:<9} {:<12} {:>10.1} {:>13.1} {:>9.1}% {:>9.2} {:>9.2}  {}",
            row.engine.name(),
            row.alg,
            f("issue_per_s"),
            f("raw_sign_per_s"),
            f("overhead_pct"),
            lat("p50"),
            lat("p99"),
            if r["pass"].as_bool() == Some(true) {
                "PASS"
            } else {
                "MISS"
            }
        );
    }
    if args.audit_secs == 0.0 {
        return;
    }
    out!();
    out!(
        "summary, issuance with the audit tree's checkpointer vs without ({}, 4 runs of about {} s \
         (without, with, with, without), P-256 applicants, target: with/without >= {}):",
        threads_text(args.threads),
        args.audit_secs,
        audit::RATIO_TARGET
    );
    out!(
        "{:<9} {:<12} {:>10} {:>10} {:>10} {:>12}  verdict",
        "engine",
        "CA key",
        "with/s",
        "without/s",
        "ratio",
        "checkpoints"
    );
    for row in rows {
        let Some(r) = row
            .report
            .as_ref()
            .map(|r| &r["audit_tree"])
            .filter(|r| r.get("ratio").is_some())
        else {
            out!("{:<9} {:<12} {:>10}", row.engine.name(), row.alg, "FAILED");
            continue;
        };
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        out!(
            "{:<9} {:<12} {:>10.1} {:>10.1} {:>10.3} {:>12}  {}",
            row.engine.name(),
            row.alg,
            f("with_per_s"),
            f("without_per_s"),
            f("ratio"),
            r["checkpointer"]["signed"].as_u64().unwrap_or(0),
            if r["pass"].as_bool() == Some(true) {
                "PASS"
            } else {
                "MISS"
            }
        );
    }
}

// -------------------------------------------------------------------------------- child

/// Removes the child's home when dropped, after an error or a panic too.
struct RemoveHome<'a>(&'a Path);

impl Drop for RemoveHome<'_> {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(self.0) {
            eprintln!("nuc-bench: cannot remove {}: {e}", self.0.display());
        }
    }
}

fn child(alg: &str, home: &Path, args: &Args) -> Result<()> {
    let _remove = RemoveHome(home);
    // The CA (token, database) is closed when `measure` returns; then the home goes.
    measure(alg, home, args)
}

/// CSRs a child of the issuance benchmark issues for: one checked, the warm-up, the measured
/// ones, and twice the breakdown's.
fn csrs_needed(args: &Args) -> usize {
    let n_breakdown = if args.breakdown {
        args.count.min(BREAKDOWN_MAX)
    } else {
        0
    };
    let n_scale = if args.scale_certificates > 0 {
        args.warmup + args.count
    } else {
        0
    };
    1 + args.warmup + args.count + 2 * n_breakdown + n_scale
}

/// The CSRs the parent wrote: DER in hex, one a line.
fn read_csrs(file: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the applicants' CSRs from {}", file.display()))?;
    text.lines()
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|i| {
                    line.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                        .context("a CSR line that is not hex")
                })
                .collect()
        })
        .collect()
}

fn measure(alg: &str, home: &Path, args: &Args) -> Result<()> {
    let alg = KeyAlgorithm::from_str(alg)?;
    let url = args.store_url.as_deref();
    let engine = if url.is_some() {
        Engine::Postgres
    } else {
        Engine::Sqlite
    };
    let threads = args.threads.max(1);
    let started = Instant::now();
    Ca::init(
        home,
        &InitOptions {
            http_listen: None,
            root_key: Some(alg.to_string()),
            issuing_key: Some(alg.to_string()),
        },
        &|path| {
            let store = engine::open_at(url, path)
                .map_err(|e| nuc_store::StoreError::Database(causes(&e)))?;
            Ok(Box::new(store))
        },
    )
    .context("nuc init")?;
    let home = Home::open(home)?;
    let store = engine::open(&home, url)?;
    let store: &dyn ServiceStore = store.as_ref();
    let ca = Ca::open(&home, store).context("opening the CA")?;
    ensure!(
        ca.issuing().algorithm == alg,
        "issuing key is {}, not {alg}",
        ca.issuing().algorithm
    );
    let init_time = started.elapsed();

    let n = args.count;
    let n_breakdown = if args.breakdown {
        n.min(BREAKDOWN_MAX)
    } else {
        0
    };
    let started = Instant::now();
    let n_csrs = csrs_needed(args);
    let csrs = match &args.csr_file {
        Some(file) => read_csrs(file)?,
        None => make_csrs(n_csrs, alg)?,
    };
    ensure!(
        csrs.len() >= n_csrs,
        "{} applicant CSRs for {n_csrs} issuances",
        csrs.len()
    );
    let mut csrs = csrs.into_iter();
    let mut requests =
        |k: usize| -> Vec<IssueRequest> { csrs.by_ref().take(k).map(request).collect() };
    let check = requests(1);
    let warm = requests(args.warmup);
    let measured = requests(n);
    let breakdown_reqs = requests(2 * n_breakdown);
    let (scale_warm, scale_reqs) = if args.scale_certificates > 0 {
        (requests(args.warmup), requests(n))
    } else {
        (Vec::new(), Vec::new())
    };
    let csr_time = started.elapsed();

    let message = raw_input(alg);
    let (hsm, key) = ca.bench_issuing_key();
    let sign = |_: usize| -> Result<()> {
        hsm.sign_raw(key, &message)?;
        Ok(())
    };
    let issue = |reqs: &[IssueRequest], i: usize| -> Result<Vec<u8>> {
        Ok(ca
            .issue(std::slice::from_ref(&reqs[i]), &Issuance::alone(store))?
            .remove(0)
            .der)
    };

    // What we time must be real: one issuance first, its signature checked with the CA key.
    let issuing_key = X509::from_der(&ca.issuing().cert_der)?.public_key()?;
    let der = issue(&check, 0)?;
    ensure!(
        X509::from_der(&der)?.verify(&issuing_key)?,
        "an issued certificate does not verify"
    );
    // Warm-up, not counted: a session per thread opened, caches and pages touched.
    run(args.warmup, threads, sign)?;
    run(args.warmup, threads, |i| issue(&warm, i).map(drop))?;

    let raw_before = run(n, threads, sign)?;
    let activity_before = engine::server_activity(url)?;
    let issued = run(n, threads, |i| issue(&measured, i).map(drop))?;
    let activity = engine::activity_since(url, activity_before, n)?;
    let raw_after = run(n, threads, sign)?;

    let issue_rate = issued.rate();
    let raw_rate = (raw_before.rate() + raw_after.rate()) / 2.0;
    let overhead = (raw_rate / issue_rate - 1.0) * 100.0;
    let pass = overhead <= TARGET_PCT;
    let (p50, p99, max) = (
        issued.percentile(50.0),
        issued.percentile(99.0),
        issued.percentile(100.0),
    );
    let (raw_p50, raw_p99) = (raw_before.percentile(50.0), raw_before.percentile(99.0));
    if let Some(activity) = &activity {
        println!("{alg}: PostgreSQL on the empty database, {activity}");
    }
    println!(
        "{alg}: issue {issue_rate:.1}/s, raw HSM sign {raw_rate:.1}/s (same key, {}) -> issuance costs \
         {overhead:.1}% more than the bare signature (target <= {TARGET_PCT}%: {})",
        threads_text(threads),
        if pass { "PASS" } else { "MISS" }
    );
    println!(
        "{alg}: issuance latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; raw sign latency p50 {:.2} ms, p99 {:.2} ms; \
         raw runs {:.1}/s before, {:.1}/s after",
        ms(p50),
        ms(p99),
        ms(max),
        ms(raw_p50),
        ms(raw_p99),
        raw_before.rate(),
        raw_after.rate()
    );
    println!(
        "{alg}: setup (not timed): init {:.2} s, {n_csrs} applicant CSRs in {:.2} s",
        init_time.as_secs_f64(),
        csr_time.as_secs_f64()
    );

    let breakdown = if n_breakdown > 0 {
        Some(breakdown(&ca, store, &breakdown_reqs, &message)?)
    } else {
        None
    };
    // A failure here does not lose the figures above; the parent reports it.
    let audit_tree = if args.audit_secs > 0.0 {
        audit::issuance_with_tree(&ca, store, args, issue_rate).unwrap_or_else(|e| {
            eprintln!("nuc-bench: {alg}: audit tree: error: {}", causes(&e));
            json!({ "error": causes(&e) })
        })
    } else {
        Value::Null
    };
    // Last: the seeding stays in the home.
    let scale = if args.scale_certificates > 0 {
        scale::issuance_at_scale(
            &home,
            url,
            args,
            alg,
            &der,
            &scale::Empty {
                issue_per_s: issue_rate,
                raw_per_s: raw_rate,
            },
            &sign,
            &|i| issue(&scale_warm, i).map(drop),
            &|i| issue(&scale_reqs, i).map(drop),
        )
        .unwrap_or_else(|e| {
            eprintln!("nuc-bench: {alg}: at scale: error: {}", causes(&e));
            json!({ "error": causes(&e) })
        })
    } else {
        Value::Null
    };

    println!(
        "{}",
        json!({
            "bench": "issuance-vs-hsm-sign",
            "engine": engine.name(),
            "alg": alg.to_string(),
            "profile": PROFILE,
            "applicant_keys": match alg { KeyAlgorithm::Rsa { .. } => "rsa-2048", _ => "ecdsa-p256" },
            "threads": threads,
            "count": n,
            "issue_per_s": round(issue_rate),
            "raw_sign_per_s": round(raw_rate),
            "raw_sign_runs_per_s": [round(raw_before.rate()), round(raw_after.rate())],
            "overhead_pct": round(overhead),
            "target_pct": TARGET_PCT,
            "pass": pass,
            "issue_latency_ms": { "p50": round(ms(p50)), "p99": round(ms(p99)), "max": round(ms(max)) },
            "raw_sign_latency_ms": { "p50": round(ms(raw_p50)), "p99": round(ms(raw_p99)) },
            "breakdown_us": breakdown,
            "audit_tree": audit_tree,
            "scale": scale,
        })
    );
    Ok(())
}

/// What the bare signature is given: the mechanism hashes the message for RSA; ECDSA takes the
/// digest of the curve's size.
fn raw_input(alg: KeyAlgorithm) -> Vec<u8> {
    let len = match alg {
        KeyAlgorithm::Rsa { .. } => RSA_MESSAGE_LEN,
        KeyAlgorithm::EcdsaP256 => 32,
        KeyAlgorithm::EcdsaP384 => 48,
    };
    let mut v = vec![0u8; len];
    openssl::rand::rand_bytes(&mut v).expect("randomness");
    v
}

fn subject() -> SubjectInfo {
    SubjectInfo {
        iin: Some(Iin::parse("860908363012").expect("a valid test IIN")),
        surname: Some("ТЕСТОВ".into()),
        name: Some("ТЕСТ".into()),
        patronymic: None,
        organization: None,
        email: None,
        common_name: None,
    }
}

fn request(csr: Vec<u8>) -> IssueRequest {
    IssueRequest {
        profile: PROFILE.into(),
        csr,
        subject: subject(),
        role: None,
        identification: None,
        dns_names: vec![],
        actor: "bench".into(),
        request_number: None,
        key_storage: Default::default(),
    }
}

/// `n` DER CSRs, each for a new applicant key of the CA's own key type (RSA-2048 applicants
/// for an RSA CA, as at the NUC today; P-256 applicants for an ECDSA CA), made on all CPUs.
fn make_csrs(n: usize, alg: KeyAlgorithm) -> Result<Vec<Vec<u8>>> {
    let one = move || -> Result<Vec<u8>> {
        let key = match alg {
            KeyAlgorithm::Rsa { .. } => PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?,
            _ => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                PKey::from_ec_key(EcKey::generate(&group)?)?
            }
        };
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", "nuc-bench applicant")?;
        let mut req = X509ReqBuilder::new()?;
        req.set_version(0)?;
        req.set_subject_name(&name.build())?;
        req.set_pubkey(&key)?;
        req.sign(&key, MessageDigest::sha256())?;
        Ok(req.build().to_der()?)
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out: Vec<Result<Vec<Vec<u8>>>> = std::thread::scope(|s| {
        let per = n.div_ceil(cpus).max(1);
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|start| s.spawn(move || (start..(start + per).min(n)).map(|_| one()).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("CSR thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for chunk in out {
        all.extend(chunk?);
    }
    Ok(all)
}

/// A timed run: total wall time and the latency of each operation.
struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1]
    }
}

/// Runs `op(0..n)` on `threads` threads taking indices from a shared counter.
fn run(n: usize, threads: usize, op: impl Fn(usize) -> Result<()> + Sync) -> Result<Run> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let per_thread: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut latencies = Vec::with_capacity(n / threads + 1);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(latencies);
                        }
                        let t = Instant::now();
                        if let Err(e) = op(i) {
                            next.store(n, Ordering::Relaxed); // stop the others too
                            return Err(e.context(format!("operation {i}")));
                        }
                        latencies.push(t.elapsed());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("bench thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(n);
    for l in per_thread {
        latencies.extend(l?);
    }
    ensure!(
        latencies.len() == n,
        "{} of {n} operations done",
        latencies.len()
    );
    latencies.sort();
    Ok(Run { elapsed, latencies })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------- breakdown

/// The steps of `Ca::issue`, in order, as `breakdown` times them.
const STEPS: [(&str, &str); 7] = [
    (
        "csr_check",
        "decode the CSR, check its key, verify its signature (proof of possession)",
    ),
    (
        "key_lookup",
        "has this key been certified already? (one SELECT)",
    ),
    ("tbs_build", "subject DN, serial, TBS encoding"),
    (
        "lint",
        "decode the TBS again and lint it against the profile",
    ),
    (
        "db_reserve",
        "reserve serial and key + audit record (one durable transaction)",
    ),
    (
        "hsm_sign",
        "hash the TBS, sign in the HSM, assemble the certificate",
    ),
    (
        "db_record",
        "record the certificate + audit record (one durable transaction)",
    ),
];

/// Times each step of an issuance on one thread, by doing what `Ca::issue` does through the
/// library's public pieces on the first half of `reqs`; then times `Ca::issue` itself and the
/// bare signature on one thread for comparison. Returns mean microseconds per step.
fn breakdown(
    ca: &Ca,
    store: &dyn ServiceStore,
    reqs: &[IssueRequest],
    message: &[u8],
) -> Result<Value> {
    use nuc_ca::{csr, lint, subject, tbs};
    use nuc_store::{AuditEntry, Reservation};

    let alg = ca.issuing().algorithm;
    let (hsm, hsm_key) = ca.bench_issuing_key();
    let (replica, real) = reqs.split_at(reqs.len() / 2);
    let profile = ca
        .policy()
        .end_entity(PROFILE)
        .with_context(|| format!("policy has no {PROFILE}"))?;
    let ident = *ca
        .policy()
        .identification
        .get("in-person")
        .context("policy has no in-person identification")?;
    let mut total = [Duration::ZERO; STEPS.len()];
    for req in replica {
        let mut t = Instant::now();
        let mut lap = |step: usize| {
            let now = Instant::now();
            total[step] += now - t;
            t = now;
        };
        let checked = csr::check(&req.csr, profile)?;
        lap(0);
        ensure!(
            store.key_certified(&checked.spki_sha256)?.is_none(),
            "applicant key reused"
        );
        lap(1);
        let dn = subject::distinguished_name(profile, &req.subject)?;
        let key_usage = match (&profile.key_usage_ec, checked.algorithm) {
            (Some(ec), KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) => ec.clone(),
            _ => profile.key_usage.clone(),
        };
        let mut eku = profile.extended_key_usage.clone();
        eku.push(ident);
        let subject_name = tbs::encode_name(&dn)?;
        let now = nuc_core::time::now_unix();
        let not_after =
            (now + i64::from(profile.validity_days) * 86_400 - 1).min(ca.issuing().not_after);
        let mut serial = [0u8; 20];
        openssl::rand::rand_bytes(&mut serial)?;
        serial[0] = (serial[0] & 0x7f).max(1);
        let tbs_der = tbs::build(&tbs::TbsInput {
            profile,
            policy: ca.policy(),
            urls: ca.publication(),
            serial: &serial,
            signature_algorithm: alg.signature_algorithm(),
            issuer: ca.issuing().subject.clone(),
            issuer_key_id: Some(ca.issuing().key_id.clone()),
            not_before: now,
            not_after,
            subject: subject_name.clone(),
            spki: checked.spki.clone(),
            key_usage: key_usage.clone(),
            extended_key_usage: eku.clone(),
            email: None,
            dns_names: vec![],
        })?;
        lap(2);
        lint::lint(
            &tbs_der,
            &lint::LintContext {
                profile,
                policy_oid: ca.policy().policy_oid,
                issuer: &ca.issuing().subject,
                issuer_key_id: Some(&ca.issuing().key_id),
                issuer_not_after: Some(ca.issuing().not_after),
                key_usage: &key_usage,
                extended_key_usage: &eku,
                key_on_card: false,
            },
        )
        .map_err(|f| anyhow!("lint: {}", f.join("; ")))?;
        lap(3);
        let serial_hex = hex(&serial);
        let subject_text = subject_name.to_string();
        store.reserve_batch(
            &[(
                Reservation {
                    serial: serial_hex.clone(),
                    profile: profile.name.clone(),
                    subject: subject_text.clone(),
                    iin: req.subject.iin.as_ref().map(|i| i.to_string()),
                    bin: None,
                    spki_sha256: checked.spki_sha256.clone(),
                    not_before: now,
                    not_after,
                    request_number: None,
                },
                AuditEntry {
                    actor: req.actor.clone(),
                    action: "certificate.reserved".into(),
                    object: format!("serial:{serial_hex}"),
                    details: json!({ "profile": profile.name, "spki_sha256": checked.spki_sha256 }),
                },
            )],
            None,
        )?;
        lap(4);
        let signature = hsm.sign(hsm_key, &tbs_der)?;
        let der = tbs::assemble(&tbs_der, alg.signature_algorithm(), &signature)?;
        lap(5);
        store.record_batch(
            &[(
                serial_hex.clone(),
                der.clone(),
                AuditEntry {
                    actor: req.actor.clone(),
                    action: "certificate.issued".into(),
                    object: format!("serial:{serial_hex}"),
                    details: json!({
                        "profile": profile.name,
                        "subject": subject_text,
                        "sha256": hex(&openssl::sha::sha256(&der)),
                    }),
                },
            )],
            None,
        )?;
        lap(6);
    }
    let k = replica.len().max(1) as f64;
    let mean_us = |d: Duration| d.as_secs_f64() * 1e6 / k;
    let sum: f64 = total.iter().map(|d| mean_us(*d)).sum();

    // Inside csr_check: the OpenSSL half of it (proof of possession), timed alone on the same CSRs.
    let mut pop = [Duration::ZERO; 3];
    for req in replica {
        let der = csr::to_der(&req.csr)?;
        let t = Instant::now();
        let parsed = openssl::x509::X509Req::from_der(&der)?;
        let t1 = Instant::now();
        let key = parsed.public_key()?;
        let t2 = Instant::now();
        ensure!(parsed.verify(&key)?, "CSR signature does not verify");
        let t3 = Instant::now();
        pop[0] += t1 - t;
        pop[1] += t2 - t1;
        pop[2] += t3 - t2;
    }

    let issue_1t = run(real.len(), 1, |i| {
        ca.issue(std::slice::from_ref(&real[i]), &Issuance::alone(store))
            .map(drop)
            .map_err(Into::into)
    })?;
    let sign_1t = run(real.len(), 1, |_| {
        hsm.sign_raw(hsm_key, message).map(drop).map_err(Into::into)
    })?;
    let mean = |r: &Run| r.elapsed.as_secs_f64() * 1e6 / r.latencies.len().max(1) as f64;

    println!(
        "{alg}: breakdown of one issuance, 1 thread, mean of {} issuances:",
        replica.len()
    );
    let mut steps = serde_json::Map::new();
    for (i, (name, what)) in STEPS.iter().enumerate() {
        let us = mean_us(total[i]);
        println!(
            "{alg}:   {name:<11} {us:>9.1} us {:>5.1}%  {what}",
            us / sum * 100.0
        );
        steps.insert((*name).into(), json!(round(us)));
        if i == 0 {
            let parts = [
                ("X509Req::from_der", pop[0]),
                ("X509Req::public_key", pop[1]),
                ("X509Req::verify", pop[2]),
            ];
            let openssl: f64 = parts.iter().map(|(_, d)| mean_us(*d)).sum();
            for (what, d) in parts {
                println!(
                    "{alg}:     of which {what:<20} {:>7.1} us (timed separately)",
                    mean_us(d)
                );
            }
            println!(
                "{alg}:     of which the rest (DER/PEM decode, key checks, SPKI hash) ~{:.1} us",
                us - openssl
            );
        }
    }
    println!("{alg}:   {:<11} {sum:>9.1} us", "sum");
    println!(
        "{alg}:   Ca::issue alone {:.1} us/issuance, bare sign_raw alone {:.1} us/signature (1 thread, {} each)",
        mean(&issue_1t),
        mean(&sign_1t),
        real.len()
    );
    steps.insert("sum".into(), json!(round(sum)));
    steps.insert("ca_issue_1_thread".into(), json!(round(mean(&issue_1t))));
    steps.insert("sign_raw_1_thread".into(), json!(round(mean(&sign_1t))));
    Ok(Value::Object(steps))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn threads_text(n: usize) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

/// The error and its causes, each said once (library errors often repeat their source).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
