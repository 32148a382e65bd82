//! F1 end to end over gRPC with mutual TLS, against the HSM's own limit.
//!
//! F1 is the first issuance of an individual's pair: the portal submits the application
//! (`PortalService.SubmitApplication`: two CSRs checked, the applicant looked up in the
//! registry, the request registered), then a CON operator confirms it
//! (`OperatorService.DecideApplication` with a CMS-signed `OperatorDecision`), and the CA issues
//! the AUTH and the SIGN certificate: **two signatures with the issuing key per F1**. So the HSM
//! allows at most `raw_rate / 2` F1 per second, and the target is that the whole service (TLS,
//! gRPC, CSR and CMS checks, registry, SQLite, notifications) keeps at least 70% of that:
//! `F1_rate / (raw_rate / 2) >= 0.70`.
//!
//! How it measures:
//!
//! * A fresh temporary home: `nuc-registry --listen 127.0.0.1:0` (the fixture registry), `nuc
//!   init` (the default CA keys: the issuing key is RSA-2048 unless the defaults change), system
//!   certificates for a portal, a workstation and an admin from `nuc cert issue`, then `nuc
//!   serve`. The binaries are the `nuc` and `nuc-registry` next to this one (a release build).
//! * An operator certificate through `AdminService.IssueOperatorCertificate`; the operator's key
//!   stays with the bench, which signs each decision with it (`nuc_cms::sign`).
//! * Before timing: two fresh applicant CSRs per F1. **Applicant keys are ECDSA P-256 for both
//!   AUTH and SIGN** (AUTH may also be RSA-2048, but making hundreds of RSA keys would dominate
//!   the setup; the service's work per certificate changes little with the applicant's key
//!   type: it verifies the CSR's signature, and an RSA verification is cheaper than ECDSA's).
//! * `--clients` clients (default 16), each with its own mTLS connections (one as the portal,
//!   one as the workstation), take F1s from a shared counter: submit, sign the decision,
//!   confirm. One F1 is checked first (both certificates verify under the issuing CA and carry
//!   the applicant's keys), then `--f1-warmup` F1s (not counted), then `--f1-count` measured.
//! * The raw signing rate: a child process (`SOFTHSM2_CONF` = the home's token) opens the same
//!   CA next to the running service, which SoftHSM2's file-backed token allows, and signs with
//!   the issuing key on `--threads` threads, `--f1-raw-count` times, once before and once after
//!   the measured F1s, each time once the service is idle (all its notifications sent); the
//!   mean of the two is the raw rate.
//! * It also reads the CPU time of each process (`/proc`) over the measured F1s, to tell where
//!   the time goes: the clients share the machine with the service.
//!
//! The service's processes are killed and the temporary home removed at the end, after an
//! error too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use nuc_api::v1::admin_service_client::AdminServiceClient;
use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use nuc_api::v1::{
    DecideApplicationRequest, DecideApplicationResponse, IssueOperatorCertificateRequest,
    OperatorDecision, RequestState, SubmitApplicationRequest,
};
use nuc_ca::{Ca, Home, KeyAlgorithm};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509NameBuilder, X509Req, X509ReqBuilder};
use prost::Message;
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::engine::{self, Db, Engine, PgServer};
use crate::profile::{HSM_STEP, Profiler, Split};
use crate::{
    Args, Figure, Run, causes, engines_text, make_csrs, ms, raw_input, round, run, threads_text,
};

/// The F1 rate must reach at least this share of the HSM's limit (raw rate / 2), in percent.
const TARGET_PCT: f64 = 70.0;
/// Signatures with the issuing key per F1: the AUTH and the SIGN certificate.
const SIGNATURES_PER_F1: f64 = 2.0;
/// The applicant: in the registry fixture (the IIN may repeat; the keys never do).
const APPLICANT_IIN: &str = "860908363012";
/// The operator confirming every application: in the registry fixture.
const OPERATOR_IIN: &str = "921002310220";
/// How long `nuc serve` and `nuc-registry` may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the service to send its notifications before a raw measurement.
const OUTBOX_TIMEOUT: Duration = Duration::from_secs(60);

// -------------------------------------------------------------------------- the benchmark

pub(crate) fn bench(args: &Args, figures: &mut Vec<Figure>) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bins = Bins::next_to(&exe)?;
    out!(
        "nuc-bench f1: F1 end to end over gRPC with mutual TLS: {} F1s (submit + operator-confirmed \
         issuance of AUTH+SIGN) by {} concurrent clients, after {} warm-up F1s, on each storage \
         engine ({}) in turn; applicant keys: ECDSA P-256 for both AUTH and SIGN (two fresh CSRs \
         per F1, made before timing); target: F1 rate >= {TARGET_PCT}% of raw HSM rate / \
         {SIGNATURES_PER_F1}",
        args.f1_count,
        args.clients,
        args.f1_warmup,
        engines_text(&args.engines)
    );
    let what = format!(
        "F1 end to end, {} clients: F1/s vs HSM limit raw/2 (share; target >= {TARGET_PCT}%)",
        args.clients
    );
    let mut failed = Vec::new();
    for engine in args.engines.iter().copied() {
        let started = Instant::now();
        let text = match bench_on(&exe, &bins, engine, args) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("nuc-bench: error: f1 on {engine}: {}", causes(&e));
                failed.push(engine.name());
                "FAILED".into()
            }
        };
        figures.push(Figure {
            what: what.clone(),
            engine,
            text,
        });
        figures.push(Figure {
            what: "F1: time taken (setup + measurement)".into(),
            engine,
            text: format!("{:.0} s", started.elapsed().as_secs_f64()),
        });
    }
    ensure!(failed.is_empty(), "F1 on {} failed", failed.join(" and "));
    Ok(())
}

/// The F1 benchmark on one engine, in a fresh home (and for PostgreSQL a fresh cluster); the
/// figure for the side-by-side report.
fn bench_on(exe: &Path, bins: &Bins, engine: Engine, args: &Args) -> Result<String> {
    let started = Instant::now();
    let server = PgServer::for_engine(engine, &args.pg_settings)?;
    let db = Db::new(engine, server.as_ref(), "nuc_f1")?;
    drop(server); // the cluster lives as long as `db` (held by the service)
    let svc = Service::start(bins, &db)?;
    let setup_time = started.elapsed();
    let serve_pid = svc.server_pid();
    let issuing_cert = std::fs::read(svc.home.join("ca").join("issuing.pem"))
        .context("reading the issuing CA certificate")?;
    let issuing_key = X509::from_pem(&issuing_cert)?.public_key()?;

    let started = Instant::now();
    // Enough F1s for a few thousand samples at perf's rate.
    let profiled = if args.f1_profile {
        args.f1_count.max(PROFILED_F1S)
    } else {
        0
    };
    let n_f1 = 1 + args.f1_warmup + args.f1_count + profiled;
    let csrs: Arc<Vec<Vec<u8>>> = Arc::new(make_csrs(2 * n_f1, KeyAlgorithm::EcdsaP256)?);
    let csr_time = started.elapsed();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let started = Instant::now();
    let (clients, operator) = runtime.block_on(async {
        let operator = Arc::new(svc.make_operator().await?);
        anyhow::Ok((svc.clients(args.clients).await?, operator))
    })?;
    let connect_time = started.elapsed();
    out!(
        "f1 {engine}: setup (not timed): registry + nuc init + system certificates + nuc serve {:.2} s \
         (nuc serve pid {serve_pid}), {} applicant CSRs in {:.2} s, operator and {} clients \
         connected in {:.2} s",
        setup_time.as_secs_f64(),
        2 * n_f1,
        csr_time.as_secs_f64(),
        args.clients,
        connect_time.as_secs_f64()
    );

    // What we time must be real: one F1 first, its certificates checked.
    let (_, decided) = runtime.block_on(one_f1(&clients[0], &operator, &csrs, 0))?;
    check_certificates(&decided, &csrs[0..2], &issuing_key)?;
    // Warm-up, not counted: connections used, HSM sessions opened, caches and pages touched.
    runtime.block_on(run_f1s(&clients, &operator, &csrs, 1, args.f1_warmup))?;

    // The raw signatures are made with the service idle: its notifications all sent.
    let sent = 2 * (1 + args.f1_warmup);
    svc.wait_for_outbox(sent);
    let raw_before = raw_sign(exe, &svc, args).context("raw HSM signing, before the F1s")?;
    let cpu_before = svc.cpu();
    let f1 = runtime.block_on(run_f1s(
        &clients,
        &operator,
        &csrs,
        1 + args.f1_warmup,
        args.f1_count,
    ))?;
    let cpu_after = svc.cpu();
    let drain = svc.wait_for_outbox(sent + 2 * args.f1_count);
    let raw_after = raw_sign(exe, &svc, args).context("raw HSM signing, after the F1s")?;
    let split = if profiled > 0 {
        let first = 1 + args.f1_warmup + args.f1_count;
        profile_f1s(&runtime, &svc, &clients, &operator, &csrs, first, profiled)?
    } else {
        None
    };
    drop(clients);
    drop(runtime);

    let alg = raw_before.alg.clone();
    let raw_rate = (raw_before.rate + raw_after.rate) / 2.0;
    let limit = raw_rate / SIGNATURES_PER_F1;
    let f1_rate = f1.total.rate();
    let ratio = f1_rate / limit * 100.0;
    let pass = ratio >= TARGET_PCT;
    let lat = |r: &Run| (ms(r.percentile(50.0)), ms(r.percentile(99.0)));
    let (submit_p50, submit_p99) = lat(&f1.submit);
    let (decide_p50, decide_p99) = lat(&f1.decide);
    let (f1_p50, f1_p99) = lat(&f1.total);

    out!(
        "f1 {engine}: raw HSM sign (issuing key {alg}, same token, a child process next to the idle \
         service, {} x {}): {:.1}/s before, {:.1}/s after, mean {raw_rate:.1}/s -> limit \
         {limit:.1} F1/s",
        args.f1_raw_count,
        threads_text(args.threads),
        raw_before.rate,
        raw_after.rate
    );
    out!(
        "f1 {engine}: {f1_rate:.1} F1/s ({} F1s in {:.2} s, {} clients) = {:.1} certificates/s; the \
         service sent the last of their notifications {:.1} s after the run",
        args.f1_count,
        f1.total.elapsed.as_secs_f64(),
        args.clients,
        f1_rate * SIGNATURES_PER_F1,
        drain.as_secs_f64()
    );
    out!(
        "f1 {engine}: latency p50/p99: SubmitApplication {submit_p50:.2}/{submit_p99:.2} ms, \
         DecideApplication {decide_p50:.2}/{decide_p99:.2} ms, whole F1 {f1_p50:.2}/{f1_p99:.2} ms"
    );
    let cpu = cpu_after.zip(cpu_before).map(|(a, b)| a.minus(&b));
    if let Some(cpu) = &cpu {
        let per = |s: f64| s * 1e3 / args.f1_count as f64;
        let total = cpu.server + cpu.registry + cpu.bench + cpu.database.unwrap_or(0.0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        out!(
            "f1 {engine}: CPU per F1: nuc serve {:.2} ms, nuc-registry {:.2} ms, bench clients \
             {:.2} ms{} (total {:.2} ms; {cpus} CPUs busy {:.0}% of the run)",
            per(cpu.server),
            per(cpu.registry),
            per(cpu.bench),
            cpu.database
                .map(|d| format!(", PostgreSQL {:.2} ms", per(d)))
                .unwrap_or_default(),
            per(total),
            total / (f1.total.elapsed.as_secs_f64() * cpus as f64) * 100.0
        );
    }
    if let Some((split, serve_ms)) = &split {
        print_split(engine, split, *serve_ms, profiled);
    }
    out!(
        "f1 {engine}: F1 rate / (raw rate / {SIGNATURES_PER_F1}) = {ratio:.1}% (target >= {TARGET_PCT}%: {})",
        if pass { "PASS" } else { "MISS" }
    );
    let cpu_json = cpu.as_ref().map(|c| {
        let per = |s: f64| round(s * 1e3 / args.f1_count as f64);
        json!({
            "nuc_serve": per(c.server),
            "nuc_registry": per(c.registry),
            "bench_clients": per(c.bench),
            "postgres": c.database.map(per),
        })
    });
    out!(
        "{}",
        json!({
            "bench": "f1-grpc-mtls-vs-hsm-sign",
            "engine": engine.name(),
            "issuing_key": alg,
            "applicant_keys": "ecdsa-p256",
            "clients": args.clients,
            "count": args.f1_count,
            "warmup": args.f1_warmup,
            "f1_per_s": round(f1_rate),
            "raw_sign_per_s": round(raw_rate),
            "raw_sign_runs_per_s": [round(raw_before.rate), round(raw_after.rate)],
            "raw_sign_threads": args.threads,
            "raw_sign_count": args.f1_raw_count,
            "outbox_drain_s": round(drain.as_secs_f64()),
            "limit_f1_per_s": round(limit),
            "ratio_pct": round(ratio),
            "target_pct": TARGET_PCT,
            "pass": pass,
            "latency_ms": {
                "submit": { "p50": round(submit_p50), "p99": round(submit_p99) },
                "decide": { "p50": round(decide_p50), "p99": round(decide_p99) },
                "f1": { "p50": round(f1_p50), "p99": round(f1_p99) },
            },
            "cpu_ms_per_f1": cpu_json,
            "serve_cpu_ms_per_f1_by_step": split.as_ref().map(|(split, serve_ms)| {
                Split::steps()
                    .map(|step| (step.to_owned(), json!(round(split.share(step) * serve_ms))))
                    .collect::<serde_json::Map<_, _>>()
            }),
        })
    );
    // The service's processes are killed and the home removed here (and on every early return),
    // then the cluster stopped.
    drop(svc);
    Ok(format!(
        "{f1_rate:.1} vs {limit:.1} ({ratio:.1}%, {}); p50/p99 {f1_p50:.0}/{f1_p99:.0} ms",
        if pass { "PASS" } else { "MISS" }
    ))
}

// ---------------------------------------------------------------------------- the profile

/// F1s under the profiler, at least.
const PROFILED_F1S: usize = 1000;

/// The service's CPU outside the HSM signatures may be at most this much per F1, in ms.
const SERVICE_CPU_TARGET_MS: f64 = 1.0;

/// `count` more F1s from `first` with `perf record` on `nuc serve`: its samples split by step,
/// and its CPU per F1 in ms (from `/proc`, over the same F1s). `None` if perf is unavailable.
fn profile_f1s(
    runtime: &tokio::runtime::Runtime,
    svc: &Service,
    clients: &[Client],
    operator: &Arc<Operator>,
    csrs: &Arc<Vec<Vec<u8>>>,
    first: usize,
    count: usize,
) -> Result<Option<(Split, f64)>> {
    let Some(perf) = Profiler::start(svc.server.id(), &svc.home) else {
        return Ok(None);
    };
    let before = cpu_seconds(&svc.server.id().to_string());
    runtime.block_on(run_f1s(clients, operator, csrs, first, count))?;
    let after = cpu_seconds(&svc.server.id().to_string());
    let split = perf.finish().context("profile of nuc serve")?;
    let serve_ms = match (before, after) {
        (Some(b), Some(a)) => (a - b) * 1e3 / count as f64,
        _ => return Ok(None),
    };
    Ok(Some((split, serve_ms)))
}

/// One line per step: its share of `nuc serve`'s samples times its CPU per F1.
fn print_split(engine: Engine, split: &Split, serve_ms: f64, count: usize) {
    out!(
        "f1 {engine}: nuc serve's CPU per F1 by step (perf, DWARF stacks, {} samples over {count} \
         more F1s; {serve_ms:.2} ms per F1 under the profiler):",
        split.total
    );
    let mut hsm = 0.0;
    for step in Split::steps() {
        let ms = split.share(step) * serve_ms;
        if step == HSM_STEP {
            hsm = ms;
        }
        out!(
            "f1 {engine}:   {step:<40} {ms:>6.3} ms  {:>5.1}%",
            split.share(step) * 100.0
        );
    }
    let outside = serve_ms - hsm;
    out!(
        "f1 {engine}: nuc serve's CPU per F1 outside the HSM signatures: {outside:.2} ms (target <= \
         {SERVICE_CPU_TARGET_MS} ms: {})",
        if outside <= SERVICE_CPU_TARGET_MS {
            "PASS"
        } else {
            "MISS"
        }
    );
}

// ------------------------------------------------------------------------------ the clients

/// One client: its own mTLS connections as the portal and as a CON workstation.
#[derive(Clone)]
pub(crate) struct Client {
    portal: PortalServiceClient<Channel>,
    ws: OperatorServiceClient<Channel>,
}

/// An operator: certificate issued through the admin service, key kept by the "workstation".
pub(crate) struct Operator {
    serial: String,
    cert_der: Vec<u8>,
    key: PKey<Private>,
}

/// The latencies of one F1.
struct Sample {
    submit: Duration,
    decide: Duration,
    total: Duration,
}

/// A timed run of F1s: the latencies of each call and of the whole F1, over the same wall time.
pub(crate) struct F1Run {
    submit: Run,
    decide: Run,
    pub(crate) total: Run,
}

/// A failed call, with its code, message and reason.
pub(crate) fn call_error(call: &str, s: tonic::Status) -> anyhow::Error {
    let reason = s
        .metadata()
        .get(nuc_api::REASON_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    anyhow!("{call}: {:?}: {} (reason {reason})", s.code(), s.message())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).expect("randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The content the operator signs: a confirmation of request `number`, protobuf-encoded.
fn decision(op: &Operator, number: &str) -> Vec<u8> {
    OperatorDecision {
        request_number: number.into(),
        decision: Decision::Confirm as i32,
        refusal_reason: String::new(),
        operator_serial_hex: op.serial.clone(),
        signed_at: nuc_core::time::now_unix(),
        nonce: random_hex(12),
        payload_type: "nuc.v1.OperatorDecision".into(),
    }
    .encode_to_vec()
}

/// F1 number `i`: submit with CSRs `2i` and `2i + 1`, sign the decision, confirm.
async fn one_f1(
    client: &Client,
    op: &Operator,
    csrs: &[Vec<u8>],
    i: usize,
) -> Result<(Sample, DecideApplicationResponse)> {
    let mut portal = client.portal.clone();
    let mut ws = client.ws.clone();
    let t0 = Instant::now();
    let submitted = portal
        .submit_application(SubmitApplicationRequest {
            idempotency_key: format!("bench-{i}-{}", random_hex(6)),
            iin: APPLICANT_IIN.into(),
            bin: String::new(),
            email: "applicant@mail.example.kz".into(),
            auth_csr: csrs[2 * i].clone(),
            sign_csr: csrs[2 * i + 1].clone(),
        })
        .await
        .map_err(|s| call_error("SubmitApplication", s))?
        .into_inner();
    let t1 = Instant::now();
    ensure!(
        submitted.state == RequestState::Registered as i32,
        "SubmitApplication: state {} instead of REGISTERED",
        submitted.state
    );
    let number = submitted.request_number;
    let signed = nuc_cms::sign(&decision(op, &number), &op.cert_der, &op.key, false)?;
    let t2 = Instant::now();
    let decided = ws
        .decide_application(DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: signed,
        })
        .await
        .map_err(|s| call_error("DecideApplication", s))?
        .into_inner();
    let t3 = Instant::now();
    ensure!(
        decided.state == RequestState::Issued as i32 && decided.certificates.len() == 2,
        "DecideApplication {number}: state {} with {} certificates instead of ISSUED with 2",
        decided.state,
        decided.certificates.len()
    );
    Ok((
        Sample {
            submit: t1 - t0,
            decide: t3 - t2,
            total: t3 - t0,
        },
        decided,
    ))
}

/// F1s `start..start + n`, by all clients at once taking F1s from a shared counter.
pub(crate) async fn run_f1s(
    clients: &[Client],
    op: &Arc<Operator>,
    csrs: &Arc<Vec<Vec<u8>>>,
    start: usize,
    n: usize,
) -> Result<F1Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (client, op, csrs, next) = (client.clone(), op.clone(), csrs.clone(), next.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(n / 2 + 1);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok(samples);
                }
                match one_f1(&client, &op, &csrs, start + k).await {
                    Ok((s, _)) => samples.push(s),
                    Err(e) => {
                        next.store(n, Ordering::Relaxed); // stop the others too
                        return Err(e.context(format!("F1 {}", start + k)));
                    }
                }
            }
        });
    }
    let mut samples: Vec<Sample> = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        samples.extend(done.context("client task")??);
    }
    let elapsed = started.elapsed();
    ensure!(samples.len() == n, "{} of {n} F1s done", samples.len());
    let timed = |f: fn(&Sample) -> Duration| {
        let mut latencies: Vec<Duration> = samples.iter().map(f).collect();
        latencies.sort();
        Run { elapsed, latencies }
    };
    Ok(F1Run {
        submit: timed(|s| s.submit),
        decide: timed(|s| s.decide),
        total: timed(|s| s.total),
    })
}

/// Both certificates of an F1 are real: the right profiles, signed by the issuing CA, for the
/// applicant's keys.
fn check_certificates(
    decided: &DecideApplicationResponse,
    csrs: &[Vec<u8>],
    issuing_key: &PKey<openssl::pkey::Public>,
) -> Result<()> {
    for (cert, csr, profile) in [
        (&decided.certificates[0], &csrs[0], "individual-auth"),
        (&decided.certificates[1], &csrs[1], "individual-sign"),
    ] {
        ensure!(
            cert.profile == profile,
            "certificate of profile {} instead of {profile}",
            cert.profile
        );
        let x = X509::from_der(&cert.der)?;
        ensure!(
            x.verify(issuing_key)?,
            "the {profile} certificate does not verify under the issuing CA"
        );
        let applicant = X509Req::from_der(csr)?.public_key()?;
        ensure!(
            x.public_key()?.public_eq(&applicant),
            "the {profile} certificate is not for the applicant's key"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------- the raw signing

/// The raw signing rate a child process measured.
struct RawSign {
    alg: String,
    rate: f64,
}

/// Runs this executable as a child that signs with the issuing key of the service's token.
fn raw_sign(exe: &Path, svc: &Service, args: &Args) -> Result<RawSign> {
    let mut child = Command::new(exe);
    child
        .arg("--raw-sign-home")
        .arg(&svc.home)
        .arg("--count")
        .arg(args.f1_raw_count.to_string())
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--warmup")
        .arg(args.warmup.to_string())
        .env("SOFTHSM2_CONF", svc.home.join("hsm").join("softhsm2.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    svc.db.child_args(&mut child);
    let child = child
        .spawn()
        .context("cannot start the raw signing child")?;
    let out = Proc::new(child, "raw signing child").finish()?;
    ensure!(
        out.status.success(),
        "the raw signing child failed ({})",
        out.status
    );
    let report: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .context("the raw signing child reported nothing")?;
    Ok(RawSign {
        alg: report["alg"].as_str().unwrap_or("?").to_owned(),
        rate: report["raw_sign_per_s"]
            .as_f64()
            .context("no raw_sign_per_s in the raw signing child's report")?,
    })
}

/// The child's side: open the CA of a home a service is running on (same token, same issuing
/// key), sign `--count` times on `--threads` threads after `--warmup`, report one JSON line.
pub(crate) fn raw_sign_child(home: &Path, args: &Args) -> Result<()> {
    let home = Home::open(home)?;
    let store = engine::open(&home, args.store_url.as_deref())?;
    let ca = Ca::open(&home, store.as_ref()).context("opening the CA next to the service")?;
    let alg = ca.issuing().algorithm;
    let message = raw_input(alg);
    let (hsm, key) = ca.bench_issuing_key();
    let sign = |_: usize| -> Result<()> {
        hsm.sign_raw(key, &message)?;
        Ok(())
    };
    run(args.warmup, args.threads, sign)?;
    let r = run(args.count, args.threads, sign)?;
    println!(
        "{}",
        json!({
            "alg": alg.to_string(),
            "threads": args.threads,
            "count": args.count,
            "raw_sign_per_s": round(r.rate()),
            "latency_ms": { "p50": round(ms(r.percentile(50.0))), "p99": round(ms(r.percentile(99.0))) },
        })
    );
    Ok(())
}

// ---------------------------------------------------------------------------- the service

/// The binaries of the service, next to this one.
pub(crate) struct Bins {
    pub(crate) nuc: PathBuf,
    pub(crate) registry: PathBuf,
}

impl Bins {
    pub(crate) fn next_to(exe: &Path) -> Result<Self> {
        let bins = Bins {
            nuc: exe.with_file_name("nuc"),
            registry: exe.with_file_name("nuc-registry"),
        };
        for b in [&bins.nuc, &bins.registry] {
            if !b.is_file() {
                bail!(
                    "{} is missing (the F1 benchmark runs the real service): run \
                     `cargo build --release -p nuc-server -p nuc-registry` first",
                    b.display()
                );
            }
        }
        Ok(bins)
    }
}

/// A child process, killed (if still running) and reaped when dropped.
pub(crate) struct Proc {
    child: Option<Child>,
    name: &'static str,
}

impl Proc {
    pub(crate) fn new(child: Child, name: &'static str) -> Self {
        Self {
            child: Some(child),
            name,
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the end and collects stdout.
    pub(crate) fn finish(mut self) -> Result<std::process::Output> {
        let child = self.child.take().expect("a child until finished");
        child
            .wait_with_output()
            .with_context(|| format!("waiting for the {}", self.name))
    }

    /// Waits until `addr` accepts connections; refused if the process stops first or
    /// `timeout` passes, with the tail of its log at `log_path`.
    pub(crate) fn wait_listening(
        &mut self,
        addr: std::net::SocketAddr,
        timeout: Duration,
        log_path: &std::path::Path,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if let Some(status) = self.exited() {
                bail!(
                    "{} stopped ({status}); its log:\n{}",
                    self.name,
                    log_tail(log_path)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {timeout:?}; its log:\n{}",
                    self.name,
                    log_tail(log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(())
    }

    /// Has it stopped already?
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Err(e) = c.kill()
                && e.kind() != std::io::ErrorKind::InvalidInput
            {
                eprintln!("nuc-bench: cannot kill the {} ({e})", self.name);
            }
            let _ = c.wait();
        }
    }
}

/// A PEM certificate and key, for an mTLS identity.
pub(crate) struct PemIdentity {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// The running service: registry, `nuc serve` on a temporary home, the callers' identities.
/// Dropping it kills the processes (the server first), then removes the home.
pub(crate) struct Service {
    server: Proc,
    registry: Proc,
    pub(crate) home: PathBuf,
    pub(crate) grpc: String,
    /// The HTTP listener (OCSP, CRLs), `host:port`.
    pub(crate) http: String,
    root_pem: String,
    portal_identity: PemIdentity,
    pub(crate) workstation_identity: PemIdentity,
    pub(crate) admin_identity: PemIdentity,
    /// The store: after the processes, so a PostgreSQL cluster stops once they are gone.
    pub(crate) db: Db,
    /// Last: removed only once the processes using it are gone (held, never read).
    _tmp: tempfile::TempDir,
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh P-256 key and a PKCS#10 request for it.
fn p256_csr(cn: &str) -> Result<(PKey<Private>, X509Req)> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let mut req = X509ReqBuilder::new()?;
    req.set_subject_name(&name.build())?;
    req.set_pubkey(&key)?;
    req.sign(&key, MessageDigest::sha256())?;
    Ok((key, req.build()))
}

/// The last lines of a log file, for an error message.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() {
        "(nothing logged)".into()
    } else {
        tail
    }
}

impl Service {
    /// The registry and `nuc serve` on a fresh home whose records go to `db`.
    pub(crate) fn start(bins: &Bins, db: &Db) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("nuc-bench-f1-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let dir = std::path::absolute(tmp.path())?;
        let home = dir.join("home");

        // The registry prints `listening on ADDR` once it accepts connections.
        let mut child = Command::new(&bins.registry)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bins.registry.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let registry = Proc::new(child, "nuc-registry");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {} // drained, so the registry never blocks on a full pipe
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => bail!("nuc-registry stopped without saying where it listens"),
            Err(_) => bail!("nuc-registry did not listen within {START_TIMEOUT:?}"),
        };
        let registry_addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("nuc-registry said {line:?}"))?
            .to_owned();

        let http = format!("127.0.0.1:{}", free_port()?);
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let admin = format!("127.0.0.1:{}", free_port()?);
        let nuc = |args: &[&std::ffi::OsStr]| -> Result<()> {
            let mut cmd = Command::new(&bins.nuc);
            cmd.args(args)
                .env("RUST_LOG", "warn")
                .env_remove("SOFTHSM2_CONF")
                .stdin(Stdio::null());
            db.env(&mut cmd);
            let out = cmd
                .output()
                .with_context(|| format!("cannot run {}", bins.nuc.display()))?;
            ensure!(
                out.status.success(),
                "nuc {} failed ({}): {}",
                args.first().map_or("".into(), |a| a.to_string_lossy()),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        };
        let registry_url = format!("http://{registry_addr}");
        let store_args = db.init_args();
        let mut init: Vec<&std::ffi::OsStr> = vec![
            "init".as_ref(),
            "--home".as_ref(),
            home.as_os_str(),
            "--http-listen".as_ref(),
            http.as_ref(),
            "--grpc-listen".as_ref(),
            grpc.as_ref(),
            "--admin-listen".as_ref(),
            admin.as_ref(),
            "--registry-url".as_ref(),
            registry_url.as_ref(),
        ];
        init.extend(store_args.iter().map(std::ffi::OsStr::new));
        nuc(&init)?;

        // System certificates of the callers, from the CLI, before the service holds the token.
        let identity = |role: &str| -> Result<PemIdentity> {
            let (key, req) = p256_csr("nuc-bench caller")?;
            let csr = dir.join(format!("{role}.csr"));
            let out = dir.join(format!("{role}.pem"));
            std::fs::write(&csr, req.to_pem()?)?;
            nuc(&[
                "cert".as_ref(),
                "issue".as_ref(),
                "--home".as_ref(),
                home.as_os_str(),
                "--profile".as_ref(),
                "system".as_ref(),
                "--role".as_ref(),
                role.as_ref(),
                "--cn".as_ref(),
                format!("nuc-bench {role}").as_ref(),
                "--csr".as_ref(),
                csr.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ])
            .with_context(|| format!("the {role} certificate"))?;
            Ok(PemIdentity {
                cert: std::fs::read_to_string(&out)?,
                key: String::from_utf8(key.private_key_to_pem_pkcs8()?)?,
            })
        };
        let portal_identity = identity("portal")?;
        let workstation_identity = identity("workstation")?;
        let admin_identity = identity("admin")?;
        let root_pem = std::fs::read_to_string(home.join("ca").join("root.pem"))
            .context("reading the root CA certificate")?;

        let log_path = dir.join("serve.log");
        let log = std::fs::File::create(&log_path)?;
        let mut serve = Command::new(&bins.nuc);
        serve
            .arg("serve")
            .arg("--home")
            .arg(&home)
            .env("RUST_LOG", "warn")
            .env_remove("SOFTHSM2_CONF")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        db.env(&mut serve);
        let child = serve.spawn().context("cannot start nuc serve")?;
        let mut server = Proc::new(child, "nuc serve");
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(&grpc).is_err() {
            if let Some(status) = server.exited() {
                bail!(
                    "nuc serve stopped ({status}); its log:\n{}",
                    log_tail(&log_path)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "nuc serve did not listen on {grpc} within {START_TIMEOUT:?}; its log:\n{}",
                    log_tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(Service {
            server,
            registry,
            home,
            grpc,
            http,
            root_pem,
            portal_identity,
            workstation_identity,
            admin_identity,
            db: db.clone(),
            _tmp: tmp,
        })
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server.id()
    }

    pub(crate) fn registry_pid(&self) -> u32 {
        self.registry.id()
    }

    /// A connected channel with mutual TLS, as the holder of `identity`.
    pub(crate) async fn channel(&self, identity: &PemIdentity) -> Result<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.root_pem))
            .domain_name("localhost")
            .identity(Identity::from_pem(&identity.cert, &identity.key));
        Endpoint::from_shared(format!("https://{}", self.grpc))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .with_context(|| format!("connecting to {} with mutual TLS", self.grpc))
    }

    /// `n` F1 clients, each with its own mTLS connections as the portal and a workstation.
    pub(crate) async fn clients(&self, n: usize) -> Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(Client {
                portal: PortalServiceClient::new(self.channel(&self.portal_identity).await?),
                ws: OperatorServiceClient::new(self.channel(&self.workstation_identity).await?),
            });
        }
        Ok(clients)
    }

    /// An operator certificate through the admin service; the key stays here.
    pub(crate) async fn make_operator(&self) -> Result<Operator> {
        let (key, req) = p256_csr("nuc-bench operator")?;
        let cert = AdminServiceClient::new(self.channel(&self.admin_identity).await?)
            .issue_operator_certificate(IssueOperatorCertificateRequest {
                iin: OPERATOR_IIN.into(),
                role: "operator".into(),
                con: "ЦОН Алматы №1".into(),
                csr: req.to_der()?,
            })
            .await
            .map_err(|s| call_error("IssueOperatorCertificate", s))?
            .into_inner();
        Ok(Operator {
            serial: cert.serial_hex,
            cert_der: cert.der,
            key,
        })
    }

    /// Waits (at most [`OUTBOX_TIMEOUT`]) until the service has sent `n` notifications (two per
    /// F1: the application's number, then "issued"), so that it is idle; returns how long.
    fn wait_for_outbox(&self, n: usize) -> Duration {
        let started = Instant::now();
        let dir = self.home.join("outbox");
        let sent = || {
            std::fs::read_dir(&dir).map_or(0, |d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                    .count()
            })
        };
        loop {
            let done = sent();
            if done >= n {
                return started.elapsed();
            }
            if started.elapsed() > OUTBOX_TIMEOUT {
                eprintln!(
                    "nuc-bench: f1: the service has sent {done} of {n} notifications after \
                     {OUTBOX_TIMEOUT:?}; measuring the raw rate while it sends the rest"
                );
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// CPU time used so far by the server, the registry and this process, if `/proc` says.
    fn cpu(&self) -> Option<Cpu> {
        Some(Cpu {
            server: cpu_seconds(&self.server.id().to_string())?,
            registry: cpu_seconds(&self.registry.id().to_string())?,
            bench: cpu_seconds("self")?,
            database: self
                .db
                .server()
                .and_then(|s| s.pid())
                .and_then(tree_cpu_seconds),
        })
    }
}

/// CPU seconds (user + system) of some processes.
#[derive(Clone, Copy)]
struct Cpu {
    server: f64,
    registry: f64,
    bench: f64,
    /// The PostgreSQL server's processes, when the store is one.
    database: Option<f64>,
}

impl Cpu {
    fn minus(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            server: self.server - earlier.server,
            registry: self.registry - earlier.registry,
            bench: self.bench - earlier.bench,
            database: self.database.zip(earlier.database).map(|(a, b)| a - b),
        }
    }
}

/// User + system CPU seconds of process `pid` and its children (a postmaster and its
/// backends), from `/proc/*/stat`; a child that ended meanwhile is no longer counted.
pub(crate) fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let mut seconds = cpu_seconds(&pid.to_string())?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // gone meanwhile
        };
        // After the command name in parentheses: state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            seconds += cpu_seconds(&name).unwrap_or(0.0);
        }
    }
    Some(seconds)
}

/// User + system CPU seconds of a process (all its threads), from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
