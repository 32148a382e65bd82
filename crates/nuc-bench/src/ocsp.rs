//! OCSP: cached responses over loopback HTTP, the real `nuc serve` against `openssl ocsp`
//! and against the HTTP floor (nginx serving the same bytes, [`crate::ocsp_floor`]), measured
//! side by side in the same run.
//!
//! Relying parties ask OCSP far more often than anything else is asked of the CA: every
//! signature check by a bank or a government portal may ask about the signer's certificate. A
//! request without a nonce (what most clients send) can be answered with a response signed
//! earlier, and our responder does exactly that: it keeps the signed response per (CertID,
//! current status) and signs again only when the status changes or half the validity has
//! passed (`nuc_publisher::ocsp::OcspCache`). So an answer costs a parse, a look-up in the
//! in-memory status snapshot (`nuc_publisher::status`, kept current by the store's status
//! feed, so a revocation is seen at once; a serial not yet known is asked of the store once)
//! and a copy, not a signature and no database round trip. The peer, `openssl ocsp -index`, is the responder most CAs start
//! with; it signs every response. **Target: our cached responses per second >= 20 x
//! openssl's**, measured on the same machine, in the same run, with the same load.
//!
//! Why a ratio, and why this one: absolute rates depend on the machine (and here the load
//! generator shares it with the responder); the same load against a well-known responder on
//! the same machine cancels most of that out. Twenty times says that caching is not merely
//! present but that the path around it (HTTP, parsing, the status lookups) is lean.
//!
//! The setup, and why it is fair:
//!
//! * **Ours**: a temporary home made by `nuc init` (SoftHSM2 token, RSA-2048 issuing CA and
//!   RSA-2048 delegated OCSP signer, the defaults), then a child process of this bench
//!   (`SOFTHSM2_CONF` = that token) issues `--ocsp-certs` certificates through `Ca::issue`
//!   (applicant keys P-256, made before) and revokes `--ocsp-revoked` of them, evenly spread,
//!   through the store's audited revocation; then the release `nuc serve` (next to this
//!   binary) is started on that home and asked at `POST /ocsp`.
//! * **The peer**: the OCSP signer key of our CA is in the HSM and cannot be extracted, so
//!   `openssl ocsp` cannot sign for our CA. It gets a test CA of its own, made here with
//!   OpenSSL in files, shaped like ours: an RSA-2048 CA, an RSA-2048 delegated responder
//!   certificate (EKU OCSPSigning) issued by it, and one certificate per serial of ours —
//!   **the same serials, the same ones revoked** (keyCompromise, same time), listed in an
//!   `index.txt`. It runs as `openssl ocsp -index index.txt -CA ca.pem -rsigner responder.pem
//!   -rkey responder.key -rmd sha256 -resp_key_id -nmin 60 -ignore_err -port PORT`, plus
//!   `-multi N` with N the number of CPUs when this OpenSSL has it (`openssl ocsp -help` is
//!   asked), so that it can use every core as ours does. Both responses then have the same shape: responder
//!   ID by key, SHA-256 with RSA-2048 by a delegated signer whose certificate is included,
//!   thisUpdate/nextUpdate one hour apart.
//! * **Requests**: one DER `OCSPRequest` per certificate, built before timing with OpenSSL
//!   (`OCSP_cert_to_id` with SHA-1, one CertID, no nonce, unsigned), the same builder for
//!   both sides.
//! * **Checked, not assumed**: before timing, every request of both sides is sent once and
//!   its response fully verified with OpenSSL (status successful, signature and signer chain,
//!   the CertID asked, `good` or `revoked` as expected, times valid); this also fills our
//!   cache. During the runs, every response must be HTTP 200 with an OCSPResponse whose
//!   responseStatus is successful (0); one failure fails the measurement. After the runs, a
//!   sample of ours is fetched again and compared byte for byte with the first answers, to
//!   show they came from the cache.
//! * **Load**: the same generator for both, in this process: `--ocsp-concurrency` threads
//!   (default 16), each with its own connection, cycling through the requests from different
//!   starting points. Plain HTTP/1.1 over `std::net`, `TCP_NODELAY`. Latency is from the first
//!   byte written to the last byte of the body read. After `--ocsp-warmup-secs` of load per
//!   responder (not counted), `--ocsp-rounds` rounds (default 2) each measure every responder
//!   for `--ocsp-secs` (default 4), one after the other: alternating, so that whatever else
//!   the machine does weighs on both alike. The CPU time of the responders' processes, of the
//!   load generator and of the whole machine is printed beside each rate, and the responses
//!   each responder makes per CPU-second: on a shared machine the rates move with the CPU the
//!   responders get, that figure much less.
//! * **Connections**: `openssl ocsp` answers HTTP/1.0 and closes the connection after each
//!   response, so it is measured with one connection per request, which is all it supports.
//!   Ours is measured with keep-alive (what the pooled HTTP client of a relying party's
//!   server does), and also, for a like-for-like comparison, with one connection per request;
//!   both ratios are printed, the target is about the first.
//!
//! **On each storage engine** (`--engines`, default SQLite and PostgreSQL), the same: a home
//! on that engine, the same number of certificates issued and revoked, the same load and
//! durations, measured in the same rounds (openssl once, against the first engine's serials).
//! On PostgreSQL (a throwaway cluster the bench starts, `pg-cluster`) a second instance of
//! the same CA is made with `nuc init --join` (its own home, the same database and token)
//! and also measured: both instances at once, the connections split evenly between them,
//! the sum and each instance's rate reported, against one instance alone. Both instances run
//! on this machine, as the load generator does: the sum says what a second instance costs
//! or adds here, not what a second machine would add. The CPU used by PostgreSQL's processes
//! is printed beside ours: a cached answer should cost it nothing.
//!
//! Everything is on loopback: the load goes only to 127.0.0.1. (`openssl ocsp -port` takes a
//! number only, so OpenSSL binds every interface while it runs; it is killed with its process
//! group at the end.) The runs are bounded in time: with the defaults, 27 s of load plus a few
//! seconds of setup. The processes are killed and the temporary directory removed at the
//! end, after an error too.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use nuc_ca::{Ca, Home, IssueRequest, KeyAlgorithm};
use nuc_core::RevocationReason;
use nuc_store::{AuditEntry, Issuance, RevocationRow, ServiceStore};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus,
};
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509Ref};
use serde_json::{Value, json};

use crate::engine::{self, Db, Engine, PgServer};
use crate::f1::{Proc, clock_ticks_per_second, cpu_seconds, free_port, log_tail, tree_cpu_seconds};
use crate::ocsp_floor::Floor;
use crate::{Args, Figure, Run, engines_text, make_csrs, ms, request, round, run};

/// Our cached responses per second must reach this multiple of openssl's.
const TARGET_RATIO: f64 = 20.0;
/// How long `nuc serve` and `openssl ocsp` may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// No single connect, write or read may take longer: the load always stops by itself.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP response head accepted from a responder.
const MAX_HEAD: usize = 16 * 1024;
/// Largest HTTP response body accepted from a responder (an OCSP response is ~2 KB).
const MAX_BODY: usize = 1024 * 1024;
/// The CRL reason of the revoked certificates, on both sides: keyCompromise.
const REVOKED_REASON: RevocationReason = RevocationReason::KeyCompromise;
/// Who revokes, in our audit log.
const ACTOR: &str = "nuc-bench";
/// Responses of ours fetched again after the runs to compare with the first answers.
const CACHE_SAMPLE: usize = 16;

// -------------------------------------------------------------------------- the benchmark

pub(crate) fn bench(args: &Args, figures: &mut Vec<Figure>) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let nuc = nuc_binary(&exe)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let openssl = openssl_responder_info(cpus)?;
    out!(
        "nuc-bench ocsp: cached OCSP responses over loopback HTTP: nuc serve (RSA-2048 delegated \
         signer in SoftHSM2, responses cached) on each storage engine ({}; on PostgreSQL also two \
         instances on one database, the connections split between them) against {} (RSA-2048 \
         delegated signer in a file, signs every response{}), {} certificates on each side ({} \
         revoked, the same serials), one pre-built request per certificate (one SHA-1 CertID, no \
         nonce), {} connections, {} s warm-up then {} rounds of {} s per measurement; target: \
         ours/openssl >= {TARGET_RATIO}x",
        engines_text(&args.engines),
        openssl.version,
        match openssl.multi {
            Some(n) => format!(", -multi {n}"),
            None => ", one process: this OpenSSL has no -multi".into(),
        },
        args.ocsp_certs,
        args.ocsp_revoked,
        args.ocsp_concurrency,
        args.ocsp_warmup_secs,
        args.ocsp_rounds,
        args.ocsp_secs
    );
    ensure!(!args.engines.is_empty(), "--engines names no engine");

    let tmp = tempfile::Builder::new()
        .prefix("nuc-bench-ocsp-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = std::path::absolute(tmp.path())?;

    // Each engine's side: its home(s), certificates and running instance(s).
    let mut sides: Vec<Ours> = Vec::new();
    let mut setup_time = Vec::new();
    for engine in args.engines.iter().copied() {
        let started = Instant::now();
        let server = PgServer::for_engine(engine, &args.pg_settings)?;
        let db = Db::new(engine, server.as_ref(), "nuc_ocsp")?;
        drop(server); // the cluster lives as long as `db`, held by `Ours`
        // A SQLite file belongs to one instance; a PostgreSQL database is shared by two.
        let instances = match engine {
            Engine::Sqlite => 1,
            Engine::Postgres => 2,
        };
        let side_dir = dir.join(engine.name());
        std::fs::create_dir(&side_dir)?;
        let ours = Ours::start(&exe, &nuc, &side_dir, args, db, instances)
            .with_context(|| format!("setting up nuc serve on {engine}"))?;
        out!(
            "ocsp {engine}: setup (not timed): nuc init + {} issuances + {} revocations + nuc \
             serve{} {:.2} s (nuc serve pid {})",
            ours.leaves.len(),
            args.ocsp_revoked,
            if instances > 1 {
                " + nuc init --join + a second nuc serve"
            } else {
                ""
            },
            started.elapsed().as_secs_f64(),
            ours.instances
                .iter()
                .map(|i| i.server.id().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        );
        sides.push(ours);
        setup_time.push(started.elapsed());
    }
    // The peer is given the serials of the first engine's certificates.
    let started = Instant::now();
    let peer = Peer::start(&dir.join("peer"), &sides[0], &openssl)?;
    out!(
        "ocsp: setup (not timed): openssl test CA, responder and {} certificates + openssl ocsp \
         {:.2} s",
        peer.leaves.len(),
        started.elapsed().as_secs_f64()
    );

    // The same request builder for every responder: per instance keep-alive, and for the
    // first instance of each engine one connection per request.
    struct SideTargets {
        keep_alive: Vec<Target>,
        /// The GET form, keep-alive, to the first instance.
        get: Target,
        per_request: Target,
        first_answers: Vec<Vec<Vec<u8>>>,
    }
    let mut side_targets = Vec::with_capacity(sides.len());
    for ours in &sides {
        let engine = ours.db.engine();
        let mut keep_alive = Vec::new();
        for (k, inst) in ours.instances.iter().enumerate() {
            keep_alive.push(Target::new(
                format!("nuc serve on {engine}, instance {}, keep-alive", k + 1),
                inst.addr,
                "/ocsp",
                Method::Post,
                Conn::KeepAlive,
                &ours.leaves,
                &ours.issuer,
            )?);
        }
        let per_request = Target::new(
            format!("nuc serve on {engine}, one connection per request"),
            ours.instances[0].addr,
            "/ocsp",
            Method::Post,
            Conn::PerRequest,
            &ours.leaves,
            &ours.issuer,
        )?;
        let get = Target::new(
            format!("nuc serve on {engine}, GET, keep-alive"),
            ours.instances[0].addr,
            "/ocsp",
            Method::Get,
            Conn::KeepAlive,
            &ours.leaves,
            &ours.issuer,
        )?;
        // Every response of every instance verified once; cached from here on.
        let mut first_answers = Vec::new();
        for t in &keep_alive {
            first_answers.push(
                check_all(t, &ours.leaves, &ours.issuer, &ours.trust)
                    .with_context(|| format!("checking the responses of {}", t.label))?,
            );
        }
        // The GET form answers the same bytes as POST (both from the cache).
        let get_answers = check_all(&get, &ours.leaves, &ours.issuer, &ours.trust)
            .with_context(|| format!("checking the responses of {}", get.label))?;
        ensure!(
            get_answers == first_answers[0],
            "{}: the GET answers differ from the POST answers",
            get.label
        );
        side_targets.push(SideTargets {
            keep_alive,
            get,
            per_request,
            first_answers,
        });
    }
    let peer_pr = Target::new(
        "openssl ocsp, one connection per request".into(),
        peer.addr,
        "/",
        Method::Post,
        Conn::PerRequest,
        &peer.leaves,
        &peer.issuer,
    )?;
    check_all(&peer_pr, &peer.leaves, &peer.issuer, &peer.trust)
        .context("checking the responses of openssl ocsp")?;
    out!(
        "ocsp: checked before timing: all {} responses of each of the {} instances of nuc serve \
         and the {} of openssl ocsp successful, signed by the right responder, about the CertID \
         asked, good or revoked as expected",
        sides[0].leaves.len(),
        sides.iter().map(|s| s.instances.len()).sum::<usize>(),
        peer.leaves.len()
    );

    // The HTTP floor: nginx answering every request with the bytes of one of our cached
    // responses (about a good certificate), asked with the same messages as ours.
    let good = sides[0]
        .leaves
        .iter()
        .position(|l| !l.revoked)
        .context("no certificate left good")?;
    let floor_bytes = side_targets[0].first_answers[0][good].clone();
    let floor = Floor::start(&dir.join("floor"), &floor_bytes, cpus)?;
    let floor_target = |method: Method| {
        Target::new(
            format!("nginx (static file, the same bytes), {}", method.name()),
            floor.addr,
            "/ocsp",
            method,
            Conn::KeepAlive,
            &sides[0].leaves,
            &sides[0].issuer,
        )
    };
    let (floor_post, floor_get) = (floor_target(Method::Post)?, floor_target(Method::Get)?);
    for t in [&floor_post, &floor_get] {
        let mut client = Client::new(t.addr, t.conn);
        client.exchange(&t.messages[0])?;
        ensure!(
            client.body() == floor_bytes.as_slice(),
            "{}: the body is not the response it was given",
            t.label
        );
    }
    out!(
        "ocsp: HTTP floor (not timed): {} with {cpus} workers serving one {}-byte response of \
         ours to POST and GET",
        floor.version,
        floor_bytes.len()
    );
    let floor_cpu = || group_cpu_seconds(floor.group.pgid());
    let (narrow, wide) = (args.ocsp_concurrency, args.ocsp_wide_concurrency);

    // What each round measures, in this order: per engine, one instance with keep-alive, (after
    // the first engine's, openssl), one instance like for like, and on a shared database both
    // instances at once, the connections split between them. Alternating, so that what else the
    // machine does (it may be shared) weighs on all alike.
    let pids: Vec<Vec<String>> = sides
        .iter()
        .map(|s| {
            s.instances
                .iter()
                .map(|i| i.server.id().to_string())
                .collect()
        })
        .collect();
    let sum_cpu = |pids: &[String]| -> Option<f64> {
        pids.iter().map(|p| cpu_seconds(p)).sum::<Option<f64>>()
    };
    let peer_cpu = || group_cpu_seconds(peer.pgid());
    let mut plan: Vec<Measurement> = Vec::new();
    // Index in `plan` of each engine's (keep-alive, per request, split) measurements.
    let mut index: Vec<(usize, usize, Option<usize>, Vec<Versus>)> = Vec::new();
    let mut peer_index = 0;
    // nginx's measurements, each made once and compared with every engine's.
    let mut floor_index: Vec<(&Target, usize, usize)> = Vec::new();
    for (s, (ours, t)) in sides.iter().zip(&side_targets).enumerate() {
        let first = &pids[s][..1];
        let all = &pids[s][..];
        let db_pid = ours.db.server().and_then(|d| d.pid());
        let db_cpu = move || db_pid.and_then(tree_cpu_seconds);
        let ours_at = |target, clients| Measurement {
            targets: vec![target],
            clients,
            responder: "nuc serve",
            responder_cpu: Box::new(move || sum_cpu(first)),
            database_cpu: Box::new(db_cpu),
        };
        plan.push(ours_at(&t.keep_alive[0], narrow));
        let ka = plan.len() - 1;
        if s == 0 {
            peer_index = plan.len();
            plan.push(Measurement {
                targets: vec![&peer_pr],
                clients: narrow,
                responder: "openssl ocsp (all its processes)",
                responder_cpu: Box::new(peer_cpu),
                database_cpu: Box::new(|| None),
            });
        }
        // Against the floor, each form and width next to nginx's with the same.
        let mut versus = Vec::new();
        for (k, (target, floor_target, clients)) in [
            (&t.keep_alive[0], &floor_post, narrow),
            (&t.get, &floor_get, narrow),
            (&t.keep_alive[0], &floor_post, wide),
            (&t.get, &floor_get, wide),
        ]
        .into_iter()
        .enumerate()
        {
            let ours = if k == 0 {
                ka
            } else {
                plan.push(ours_at(target, clients));
                plan.len() - 1
            };
            let nginx = match floor_index
                .iter()
                .find(|(t, c, _)| std::ptr::eq(*t, floor_target) && *c == clients)
            {
                Some((_, _, i)) => *i,
                None => {
                    plan.push(Measurement {
                        targets: vec![floor_target],
                        clients,
                        responder: "nginx (all its processes)",
                        responder_cpu: Box::new(floor_cpu),
                        database_cpu: Box::new(|| None),
                    });
                    floor_index.push((floor_target, clients, plan.len() - 1));
                    plan.len() - 1
                }
            };
            versus.push(Versus {
                method: if std::ptr::eq(target, &t.get) {
                    Method::Get
                } else {
                    Method::Post
                },
                clients,
                ours,
                nginx,
            });
        }
        plan.push(ours_at(&t.per_request, narrow));
        let pr = plan.len() - 1;
        let split = (t.keep_alive.len() > 1).then(|| {
            plan.push(Measurement {
                targets: t.keep_alive.iter().collect(),
                clients: narrow,
                responder: "both nuc serve",
                responder_cpu: Box::new(move || sum_cpu(all)),
                database_cpu: Box::new(db_cpu),
            });
            plan.len() - 1
        });
        index.push((ka, pr, split, versus));
    }
    let mut measured: Vec<Option<Measured>> = plan.iter().map(|_| None).collect();
    let mut load_time = vec![Duration::ZERO; plan.len()];
    for round in 0..args.ocsp_rounds {
        for ((m, slot), took) in plan.iter().zip(&mut measured).zip(&mut load_time) {
            let started = Instant::now();
            let label = m.label();
            if round == 0 && args.ocsp_warmup_secs > 0.0 {
                load(
                    &m.targets,
                    m.clients,
                    args.ocsp_warmup_secs,
                    &|| None,
                    &|| None,
                )
                .with_context(|| format!("warming up {label}"))?;
            }
            let this = load(
                &m.targets,
                m.clients,
                args.ocsp_secs,
                &*m.responder_cpu,
                &*m.database_cpu,
            )
            .with_context(|| format!("measuring {label} (round {})", round + 1))?;
            *slot = Some(match slot.take() {
                Some(earlier) => earlier.merge(this),
                None => this,
            });
            *took += started.elapsed();
        }
    }
    let measured: Vec<Measured> = measured
        .into_iter()
        .collect::<Option<_>>()
        .context("no round was run")?;
    for (m, r) in plan.iter().zip(&measured) {
        print_run(m, r, cpus);
    }
    let m_peer = &measured[peer_index];

    // On a machine shared with other work the rates move with what the responders are given;
    // what each does with a CPU-second moves less, and says whether a miss is about CPU.
    let per_cpu_s = |m: &Measured| {
        m.responder_cpu_s
            .filter(|s| *s > 0.0)
            .map(|s| m.run.latencies.len() as f64 / s)
    };
    let peer_eff = per_cpu_s(m_peer);
    let mut engines_json = serde_json::Map::new();
    for (s, ((ours, t), (ka, pr, split, versus))) in
        sides.iter().zip(&side_targets).zip(&index).enumerate()
    {
        let engine = ours.db.engine();
        // This engine's setup and its own measurements (openssl's are not counted).
        let own = [Some(*ka), Some(*pr), *split]
            .into_iter()
            .flatten()
            .chain(versus.iter().map(|v| v.ours))
            .collect::<HashSet<_>>();
        let took = setup_time[s] + own.iter().map(|i| load_time[*i]).sum::<Duration>();
        figures.push(Figure {
            what: "OCSP: time taken (setup + this engine's measurements)".into(),
            engine,
            text: format!("{:.0} s", took.as_secs_f64()),
        });
        // Were ours really served from the cache? The same bytes as before the runs.
        let sample = t.first_answers[0].len().min(CACHE_SAMPLE);
        let mut same = Vec::new();
        for (target, first) in t.keep_alive.iter().zip(&t.first_answers) {
            same.push(same_as_before(target, first)?);
        }
        out!(
            "ocsp {engine}: {} of {sample} sampled responses of each instance are byte for byte \
             those of before the runs{}",
            same.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" and "),
            if same.iter().all(|s| *s == sample) {
                " (served from the cache)"
            } else {
                " (some were signed again: not all served from the cache)"
            }
        );
        let (m_ka, m_pr) = (&measured[*ka], &measured[*pr]);
        let ratio = m_ka.run.rate() / m_peer.run.rate();
        let ratio_pr = m_pr.run.rate() / m_peer.run.rate();
        let pass = ratio >= TARGET_RATIO;
        let verdict = if pass { "PASS" } else { "MISS" };
        out!(
            "ocsp {engine}: ours/openssl = {ratio:.1}x (nuc serve keep-alive {:.0}/s vs openssl \
             ocsp {:.0}/s; target >= {TARGET_RATIO}x: {verdict}); like for like, one connection \
             per request on both sides: {ratio_pr:.1}x",
            m_ka.run.rate(),
            m_peer.run.rate(),
        );
        let ratio_cpu = per_cpu_s(m_ka).zip(peer_eff).map(|(o, p)| o / p);
        if let (Some(o), Some(p), Some(r)) = (per_cpu_s(m_ka), peer_eff, ratio_cpu) {
            out!(
                "ocsp {engine}: responses per CPU-second of the responder's processes: nuc serve \
                 {o:.0} (keep-alive), openssl ocsp {p:.0}: {r:.1}x"
            );
        }
        // Against the HTTP floor: the verdict is about the narrow load, both forms.
        let mut floor_json = Vec::new();
        let mut floor_pass = true;
        for v in versus {
            let (o, n) = (&measured[v.ours], &measured[v.nginx]);
            let r = o.run.rate() / n.run.rate();
            let p99 = ms(o.run.percentile(99.0));
            let judged = v.clients == narrow;
            let ok = r >= FLOOR_TARGET_RATIO && p99 < FLOOR_TARGET_P99_MS;
            if judged {
                floor_pass &= ok;
            }
            let verdict = match (judged, ok) {
                (false, _) => "reported",
                (true, true) => "PASS",
                (true, false) => "MISS",
            };
            // Per CPU-second of each server's own processes: what an answer costs it, which
            // moves less than the rates when the machine is shared.
            let efficiency = per_cpu_s(o)
                .zip(per_cpu_s(n))
                .map(|(a, b)| {
                    format!(
                        "; answers per CPU-second: nuc serve {a:.0}, nginx {b:.0}, {:.2}x",
                        a / b
                    )
                })
                .unwrap_or_default();
            out!(
                "ocsp {engine}: {} {} connections keep-alive: ours/nginx = {r:.2}x (nuc serve \
                 {:.0}/s p99 {p99:.2} ms, nginx {:.0}/s p99 {:.2} ms{efficiency}; target >= \
                 {FLOOR_TARGET_RATIO}x and p99 < {FLOOR_TARGET_P99_MS} ms at {narrow} \
                 connections: {verdict})",
                v.method.name(),
                v.clients,
                o.run.rate(),
                n.run.rate(),
                ms(n.run.percentile(99.0)),
            );
            figures.push(Figure {
                what: format!(
                    "cached OCSP vs the HTTP floor (nginx, same bytes), {} {} connections: \
                     x floor, our p99{}",
                    v.method.name(),
                    v.clients,
                    if judged {
                        format!(" (target >= {FLOOR_TARGET_RATIO}x, < {FLOOR_TARGET_P99_MS} ms)")
                    } else {
                        String::new()
                    }
                ),
                engine,
                text: format!("{r:.2}x, {p99:.2} ms ({verdict})"),
            });
            floor_json.push(json!({
                "method": v.method.name(),
                "connections": v.clients,
                "ours": o.json(),
                "nginx": n.json(),
                "ratio": round(r),
                "ratio_per_cpu_second": per_cpu_s(o).zip(per_cpu_s(n)).map(|(a, b)| round(a / b)),
                "judged": judged,
                "pass": ok,
            }));
        }
        figures.push(Figure {
            what: format!(
                "cached OCSP, 1 instance, {} connections keep-alive: responses/s (x openssl ocsp; \
                 target >= {TARGET_RATIO}x)",
                args.ocsp_concurrency
            ),
            engine,
            text: format!("{:.0}/s ({ratio:.1}x, {verdict})", m_ka.run.rate()),
        });
        figures.push(Figure {
            what: "cached OCSP, 1 instance, one connection per request: responses/s (x openssl)"
                .into(),
            engine,
            text: format!("{:.0}/s ({ratio_pr:.1}x)", m_pr.run.rate()),
        });
        let split_what = format!(
            "cached OCSP, 2 instances on one database, {} connections split: sum (each)",
            args.ocsp_concurrency
        );
        let split_json = match split {
            Some(i) => {
                let m = &measured[*i];
                let each: Vec<f64> = m
                    .per_target
                    .iter()
                    .map(|n| *n as f64 / m.run.elapsed.as_secs_f64())
                    .collect();
                out!(
                    "ocsp {engine}: two instances on one database: {:.0} responses/s in all ({}), \
                     against {:.0}/s from one instance alone",
                    m.run.rate(),
                    each.iter()
                        .enumerate()
                        .map(|(k, r)| format!("instance {}: {r:.0}/s", k + 1))
                        .collect::<Vec<_>>()
                        .join(", "),
                    m_ka.run.rate()
                );
                figures.push(Figure {
                    what: split_what,
                    engine,
                    text: format!(
                        "{:.0}/s ({})",
                        m.run.rate(),
                        each.iter()
                            .map(|r| format!("{r:.0}"))
                            .collect::<Vec<_>>()
                            .join(" + ")
                    ),
                });
                let mut j = m.json();
                j["per_instance_per_s"] = json!(each.iter().map(|r| round(*r)).collect::<Vec<_>>());
                Some(j)
            }
            None => {
                figures.push(Figure {
                    what: split_what,
                    engine,
                    text: "n/a (a SQLite file serves one instance)".into(),
                });
                None
            }
        };
        engines_json.insert(
            engine.name().into(),
            json!({
                "ours_keepalive": m_ka.json(),
                "ours_per_request": m_pr.json(),
                "two_instances_keepalive": split_json,
                "cache_same_bytes": { "per_instance": same, "sample": sample },
                "ratio": round(ratio),
                "ratio_per_request": round(ratio_pr),
                "ratio_per_cpu_second": ratio_cpu.map(round),
                "pass": pass,
                "versus_http_floor": floor_json,
                "http_floor_pass": floor_pass,
            }),
        );
    }
    out!(
        "{}",
        json!({
            "bench": "ocsp-cached-vs-openssl",
            "certs": sides[0].leaves.len(),
            "revoked": args.ocsp_revoked,
            "request": "one SHA-1 CertID, no nonce, unsigned",
            "concurrency": args.ocsp_concurrency,
            "warmup_s": args.ocsp_warmup_secs,
            "rounds": args.ocsp_rounds,
            "run_s": args.ocsp_secs,
            "cpus": cpus,
            "openssl_version": openssl.version,
            "openssl_multi": openssl.multi,
            "openssl_per_request": m_peer.json(),
            "http_floor": floor.version,
            "http_floor_response_bytes": floor_bytes.len(),
            "wide_concurrency": wide,
            "target_ratio": TARGET_RATIO,
            "engines": engines_json,
        })
    );
    // Processes killed (openssl with its whole process group, then each engine's instances and
    // cluster), then the directory removed.
    drop(plan);
    drop(floor_post);
    drop(floor_get);
    drop(floor);
    drop(side_targets);
    drop(peer);
    drop(sides);
    drop(tmp);
    Ok(())
}

/// One measurement of the rounds: the responders the load goes to (the connections split
/// evenly between them), and how to read the CPU they use.
struct Measurement<'a> {
    targets: Vec<&'a Target>,
    /// Connections of the load generator, split evenly between the targets.
    clients: usize,
    /// For the report: whose CPU `responder_cpu` reads.
    responder: &'static str,
    responder_cpu: Box<dyn Fn() -> Option<f64> + 'a>,
    /// The database server's processes, when the store is PostgreSQL.
    database_cpu: Box<dyn Fn() -> Option<f64> + 'a>,
}

impl Measurement<'_> {
    fn label(&self) -> String {
        let label = match self.targets.as_slice() {
            [one] => one.label.clone(),
            many => format!(
                "{}, the connections split between {} instances",
                many[0].label.replace(", instance 1", ""),
                many.len()
            ),
        };
        format!("{label}, {} connections", self.clients)
    }
}

/// One of our measurements and nginx's with the same request form and connections.
struct Versus {
    method: Method,
    clients: usize,
    /// Indexes in the plan.
    ours: usize,
    nginx: usize,
}

/// Ours against the HTTP floor: at least this fraction of nginx's rate...
const FLOOR_TARGET_RATIO: f64 = 0.9;
/// ... with a p99 latency below this many milliseconds, at the narrow load.
const FLOOR_TARGET_P99_MS: f64 = 1.0;

fn print_run(plan: &Measurement, m: &Measured, cpus: usize) {
    let pct = |x: Option<f64>| x.map_or("?".into(), |x| format!("{:.0}%", x * 100.0));
    out!(
        "ocsp: {}: {:.0} responses/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} \
         responses in {:.2} s{}); CPU, 100% = one CPU: {} {}{}, load generator {}, the whole \
         machine {} of {}%",
        plan.label(),
        m.run.rate(),
        ms(m.run.percentile(50.0)),
        ms(m.run.percentile(99.0)),
        ms(m.run.percentile(100.0)),
        m.run.latencies.len(),
        m.run.elapsed.as_secs_f64(),
        if m.reconnects > 0 {
            format!(
                ", {} kept-alive connections found closed and reopened",
                m.reconnects
            )
        } else {
            String::new()
        },
        plan.responder,
        pct(m.cpus(m.responder_cpu_s)),
        m.database_cpu_s
            .map(|s| format!(", PostgreSQL {}", pct(m.cpus(Some(s)))))
            .unwrap_or_default(),
        pct(m.cpus(m.bench_cpu_s)),
        pct(m.machine_busy().map(|b| b * cpus as f64)),
        cpus * 100
    );
}

// ------------------------------------------------------------------------------ our side

/// A certificate asked about, and whether it is revoked.
struct Leaf {
    cert: X509,
    revoked: bool,
}

/// One running `nuc serve` and its HTTP listener.
struct Instance {
    server: Proc,
    addr: SocketAddr,
}

/// Our side on one engine: `nuc serve` on a home whose certificates were issued and revoked
/// for the bench, and on a shared database a second instance of the same CA (`nuc init
/// --join`, its own home, the same database and token).
struct Ours {
    instances: Vec<Instance>,
    leaves: Vec<Leaf>,
    issuer: X509,
    trust: Trust,
    /// When the revoked ones were revoked (the peer's index says the same).
    revoked_at: i64,
    /// The store: after the instances, so a PostgreSQL cluster stops once they are gone.
    db: Db,
}

/// What verifies a responder's responses: the trust anchor and the intermediates.
struct Trust {
    store: X509Store,
    untrusted: Stack<X509>,
}

/// `nuc init` of a home listening on fresh loopback ports, with `extra` arguments and the
/// store's password in its environment; the HTTP address.
fn init_home(nuc: &Path, home: &Path, db: &Db, extra: &[&OsStr]) -> Result<SocketAddr> {
    let http = format!("127.0.0.1:{}", free_port()?);
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let admin = format!("127.0.0.1:{}", free_port()?);
    let mut args: Vec<&OsStr> = vec![
        "init".as_ref(),
        "--home".as_ref(),
        home.as_os_str(),
        "--http-listen".as_ref(),
        http.as_ref(),
        "--grpc-listen".as_ref(),
        grpc.as_ref(),
        "--admin-listen".as_ref(),
        admin.as_ref(),
    ];
    args.extend_from_slice(extra);
    run_nuc_on(nuc, &args, db)?;
    Ok(http.parse()?)
}

/// `nuc serve` on `home`, once its HTTP listener at `addr` accepts connections.
fn serve(nuc: &Path, home: &Path, addr: SocketAddr, log_path: &Path, db: &Db) -> Result<Proc> {
    let log = std::fs::File::create(log_path)?;
    let mut cmd = Command::new(nuc);
    cmd.arg("serve")
        .arg("--home")
        .arg(home)
        .env("RUST_LOG", "warn")
        .env_remove("SOFTHSM2_CONF")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    db.env(&mut cmd);
    let child = cmd.spawn().context("cannot start nuc serve")?;
    let mut server = Proc::new(child, "nuc serve");
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_err() {
        if let Some(status) = server.exited() {
            bail!(
                "nuc serve stopped ({status}); its log:\n{}",
                log_tail(log_path)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "nuc serve did not listen on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                log_tail(log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    Ok(server)
}

impl Ours {
    /// A home on `db` with the bench's certificates, and `instances` (1 or 2) of `nuc serve`
    /// on it; a second instance needs a shared (PostgreSQL) database.
    fn start(
        exe: &Path,
        nuc: &Path,
        dir: &Path,
        args: &Args,
        db: Db,
        instances: usize,
    ) -> Result<Self> {
        let home = dir.join("home");
        let out = dir.join("ours");
        std::fs::create_dir(&out)?;
        let store_args = db.init_args();
        let store_args: Vec<&OsStr> = store_args.iter().map(OsStr::new).collect();
        let addr = init_home(nuc, &home, &db, &store_args)?;

        // Issued and revoked by a child holding the token, before the service does.
        let mut child = Command::new(exe);
        child
            .arg("--ocsp-setup-home")
            .arg(&home)
            .arg("--out-dir")
            .arg(&out)
            .arg("--ocsp-certs")
            .arg(args.ocsp_certs.to_string())
            .arg("--ocsp-revoked")
            .arg(args.ocsp_revoked.to_string())
            .arg("--threads")
            .arg(args.threads.to_string())
            .env("SOFTHSM2_CONF", home.join("hsm").join("softhsm2.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        db.child_args(&mut child);
        let child = child.spawn().context("cannot start the OCSP setup child")?;
        let output = Proc::new(child, "OCSP setup child").finish()?;
        ensure!(
            output.status.success(),
            "the OCSP setup child failed ({})",
            output.status
        );
        let report = last_json(&output.stdout).context("the OCSP setup child reported nothing")?;
        let revoked: HashSet<String> = report["revoked"]
            .as_array()
            .context("no revoked serials in the setup child's report")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let revoked_at = report["revoked_at"]
            .as_i64()
            .context("no revocation time in the setup child's report")?;
        let certs = X509::stack_from_pem(&std::fs::read(out.join("certs.pem"))?)
            .context("reading the issued certificates")?;
        let mut leaves = Vec::with_capacity(certs.len());
        for cert in certs {
            let serial = serial_hex(&cert)?;
            leaves.push(Leaf {
                revoked: revoked.contains(&serial),
                cert,
            });
        }
        ensure!(
            leaves.len() == args.ocsp_certs
                && leaves.iter().filter(|l| l.revoked).count() == args.ocsp_revoked,
            "the setup child made {} certificates, {} revoked, instead of {} and {}",
            leaves.len(),
            leaves.iter().filter(|l| l.revoked).count(),
            args.ocsp_certs,
            args.ocsp_revoked
        );

        let ca_dir = home.join("ca");
        let issuer = X509::from_pem(&std::fs::read(ca_dir.join("issuing.pem"))?)
            .context("reading the issuing CA certificate")?;
        let root = X509::from_pem(&std::fs::read(ca_dir.join("root.pem"))?)
            .context("reading the root CA certificate")?;
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(root)?;
        let mut untrusted = Stack::new()?;
        untrusted.push(issuer.clone())?;

        let mut running = vec![Instance {
            server: serve(nuc, &home, addr, &dir.join("serve.log"), &db)?,
            addr,
        }];
        for k in 2..=instances {
            // Another home of the same CA: same database and token, its own config and TLS
            // identity, no key made.
            let home_k = dir.join(format!("home{k}"));
            let conf = home.join("hsm").join("softhsm2.conf");
            let addr = init_home(
                nuc,
                &home_k,
                &db,
                &[
                    store_args.as_slice(),
                    &[
                        "--join".as_ref(),
                        "--softhsm2-conf".as_ref(),
                        conf.as_os_str(),
                    ],
                ]
                .concat(),
            )
            .with_context(|| format!("instance {k} (nuc init --join)"))?;
            running.push(Instance {
                server: serve(nuc, &home_k, addr, &dir.join(format!("serve{k}.log")), &db)
                    .with_context(|| format!("instance {k}"))?,
                addr,
            });
        }
        Ok(Ours {
            instances: running,
            leaves,
            issuer,
            trust: Trust {
                store: store.build(),
                untrusted,
            },
            revoked_at,
            db,
        })
    }
}

/// The child's side: in a fresh home whose token `SOFTHSM2_CONF` names, issue `--ocsp-certs`
/// certificates of `individual-auth` (P-256 applicant keys) on `--threads` threads, revoke
/// `--ocsp-revoked` of them evenly spread (keyCompromise, with their audit records), write
/// the certificates to `OUT/certs.pem` in order and report the revoked serials on stdout.
pub(crate) fn setup_child(home: &Path, out: &Path, args: &Args) -> Result<()> {
    let started = Instant::now();
    let home = Home::open(home)?;
    let store = engine::open(&home, args.store_url.as_deref())?;
    let store: &dyn ServiceStore = store.as_ref();
    let ca = Ca::open(&home, store).context("opening the CA of the OCSP home")?;
    let n = args.ocsp_certs;
    let requests: Vec<IssueRequest> = make_csrs(n, KeyAlgorithm::EcdsaP256)?
        .into_iter()
        .map(request)
        .collect();
    let issued: Vec<Mutex<Option<(String, String)>>> = (0..n).map(|_| Mutex::new(None)).collect();
    run(n, args.threads, |i| {
        let cert = ca
            .issue(std::slice::from_ref(&requests[i]), &Issuance::alone(store))?
            .remove(0);
        let pem = cert.pem();
        *issued[i].lock().unwrap_or_else(|p| p.into_inner()) = Some((cert.serial_hex, pem));
        Ok(())
    })
    .context("issuing the certificates asked about")?;
    let issued: Vec<(String, String)> = issued
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect::<Option<_>>()
        .context("an issuance left no certificate")?;

    let m = args.ocsp_revoked;
    let revoked_at = nuc_core::time::now_unix();
    let revoked: Vec<String> = (0..m).map(|k| issued[k * n / m].0.clone()).collect();
    run(m, args.threads, |k| {
        let serial = &revoked[k];
        store.revoke(
            &RevocationRow {
                serial: serial.clone(),
                reason: REVOKED_REASON,
                revoked_at,
                invalidity_date: None,
                revoked_by: ACTOR.into(),
            },
            None,
            None,
            &AuditEntry {
                actor: ACTOR.into(),
                action: "certificate.revoked".into(),
                object: format!("serial:{serial}"),
                details: json!({ "reason": REVOKED_REASON.code(), "why": "OCSP benchmark" }),
            },
        )?;
        Ok(())
    })
    .context("revoking")?;

    let pem: String = issued.iter().map(|(_, pem)| pem.as_str()).collect();
    std::fs::write(out.join("certs.pem"), pem).context("writing the issued certificates")?;
    println!(
        "{}",
        json!({
            "issued": n,
            "revoked": revoked,
            "revoked_at": revoked_at,
            "seconds": round(started.elapsed().as_secs_f64()),
        })
    );
    Ok(())
}

// ------------------------------------------------------------------------------- the peer

/// What `openssl ocsp` can do here.
struct OpensslInfo {
    version: String,
    /// `-multi N` when available: N responder processes.
    multi: Option<usize>,
}

fn openssl_responder_info(cpus: usize) -> Result<OpensslInfo> {
    let version = Command::new("openssl")
        .arg("version")
        .output()
        .context("cannot run openssl (the OCSP benchmark measures openssl ocsp)")?;
    ensure!(version.status.success(), "openssl version failed");
    let help = Command::new("openssl")
        .args(["ocsp", "-help"])
        .output()
        .context("cannot run openssl ocsp -help")?;
    let text = String::from_utf8_lossy(&help.stderr) + String::from_utf8_lossy(&help.stdout);
    let has_multi = text.lines().any(|l| l.trim_start().starts_with("-multi "));
    let version = String::from_utf8_lossy(&version.stdout);
    // "OpenSSL 3.0.x DATE (Library: ...)": the part before the library's.
    let version = version.split(" (").next().unwrap_or_default().trim();
    Ok(OpensslInfo {
        version: version.to_owned(),
        multi: has_multi.then_some(cpus),
    })
}

/// The peer: `openssl ocsp` with a test CA of its own, for the same serials as ours.
struct Peer {
    /// Killed with its process group when the peer is dropped.
    responder: ProcessGroup,
    addr: SocketAddr,
    leaves: Vec<Leaf>,
    issuer: X509,
    trust: Trust,
}

/// A responder in its own process group (`openssl ocsp -multi` forks responders that outlive
/// their parent, nginx has a master and workers): the whole group is killed when dropped.
pub(crate) struct ProcessGroup {
    pub(crate) proc: Proc,
    name: &'static str,
}

impl ProcessGroup {
    pub(crate) fn new(proc: Proc, name: &'static str) -> Self {
        Self { proc, name }
    }

    /// The process group's id: the leader's pid.
    pub(crate) fn pgid(&self) -> u32 {
        self.proc.id()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pgid = self.proc.id();
        if pgid == 0 {
            return;
        }
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !killed.is_ok_and(|s| s.success()) {
            eprintln!(
                "nuc-bench: ocsp: cannot kill the process group {pgid} of {}; its processes \
                 may still run",
                self.name
            );
        }
        // `proc` is killed (if still there) and reaped next.
    }
}

/// A fresh RSA-2048 key.
fn rsa_key() -> Result<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(2048)?)?)
}

/// A certificate of `key` (public part) named `cn`, serial `serial_hex`, signed by
/// `issuer`/`issuer_key` (self-signed when `issuer` is `None`), valid from an hour ago for
/// a year, with the extensions `extend` adds.
fn make_cert(
    cn: &str,
    serial_hex: &str,
    key: &PKeyRef<impl openssl::pkey::HasPublic>,
    issuer: Option<&X509Ref>,
    issuer_key: &PKeyRef<Private>,
    extend: impl FnOnce(&mut X509Builder, Option<&X509Ref>) -> Result<()>,
) -> Result<X509> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = BigNum::from_hex_str(serial_hex)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(issuer.map_or(&*name, |i| i.subject_name()))?;
    b.set_pubkey(key)?;
    let now = nuc_core::time::now_unix();
    let (not_before, not_after) = (
        Asn1Time::from_unix(now - 3600)?,
        Asn1Time::from_unix(now + 365 * 86_400)?,
    );
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    extend(&mut b, issuer)?;
    b.sign(issuer_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Authority and subject key identifiers (the issuer's is the cert's own when self-signed).
fn key_ids(b: &mut X509Builder, issuer: Option<&X509Ref>) -> Result<()> {
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer, None))?;
    b.append_extension(ski)?;
    if let Some(issuer) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(issuer), None))?;
        b.append_extension(aki)?;
    }
    Ok(())
}

/// `YYMMDDHHMMSSZ`, the time format of an `index.txt`.
fn index_time(unix: i64) -> String {
    let t = nuc_core::time::rfc3339(unix); // YYYY-MM-DDTHH:MM:SSZ
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    format!("{}Z", &digits[2..])
}

impl Peer {
    /// The process group of `openssl ocsp` and the responders it forked.
    fn pgid(&self) -> u32 {
        self.responder.proc.id()
    }

    fn start(dir: &Path, ours: &Ours, openssl: &OpensslInfo) -> Result<Self> {
        std::fs::create_dir(dir)?;
        let ca_key = rsa_key()?;
        let ca = make_cert(
            "nuc-bench openssl peer CA",
            "01",
            &ca_key,
            None,
            &ca_key,
            |b, _| {
                b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .key_cert_sign()
                        .crl_sign()
                        .build()?,
                )?;
                key_ids(b, None)
            },
        )?;
        let responder_key = rsa_key()?;
        let responder = make_cert(
            "nuc-bench openssl peer OCSP responder",
            "02",
            &responder_key,
            Some(&ca),
            &ca_key,
            |b, issuer| {
                b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
                b.append_extension(ExtendedKeyUsage::new().other("OCSPSigning").build()?)?;
                key_ids(b, issuer)
            },
        )?;

        // The same serials as ours, the same ones revoked; one (P-256) key for all, since
        // only the serials matter to OCSP.
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let leaf_key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let not_after = index_time(nuc_core::time::now_unix() + 365 * 86_400);
        let revoked_at = index_time(ours.revoked_at);
        let mut index = String::new();
        let mut leaves = Vec::with_capacity(ours.leaves.len());
        for (i, ours_leaf) in ours.leaves.iter().enumerate() {
            let serial = serial_hex(&ours_leaf.cert)?;
            let cn = format!("nuc-bench openssl peer leaf {i}");
            let cert = make_cert(&cn, &serial, &leaf_key, Some(&ca), &ca_key, |_, _| Ok(()))?;
            // status, expiry, revocation[,reason], serial (upper-case hex), file, subject
            let upper = serial.to_ascii_uppercase();
            if ours_leaf.revoked {
                index.push_str(&format!(
                    "R\t{not_after}\t{revoked_at},keyCompromise\t{upper}\tunknown\t/CN={cn}\n"
                ));
            } else {
                index.push_str(&format!("V\t{not_after}\t\t{upper}\tunknown\t/CN={cn}\n"));
            }
            leaves.push(Leaf {
                cert,
                revoked: ours_leaf.revoked,
            });
        }
        std::fs::write(dir.join("index.txt"), index)?;
        std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")?;
        std::fs::write(dir.join("ca.pem"), ca.to_pem()?)?;
        std::fs::write(dir.join("responder.pem"), responder.to_pem()?)?;
        std::fs::write(
            dir.join("responder.key"),
            responder_key.private_key_to_pem_pkcs8()?,
        )?;

        let port = free_port()?;
        let log_path = dir.join("openssl-ocsp.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new("openssl");
        cmd.args(["ocsp", "-index", "index.txt", "-CA", "ca.pem"])
            .args(["-rsigner", "responder.pem", "-rkey", "responder.key"])
            .args([
                "-rmd",
                "sha256",
                "-resp_key_id",
                "-nmin",
                "60",
                "-ignore_err",
            ])
            .args(["-port", &port.to_string()]);
        if let Some(n) = openssl.multi {
            cmd.args(["-multi", &n.to_string()]);
        }
        let child = cmd
            .current_dir(dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start openssl ocsp")?;
        let mut responder = ProcessGroup::new(Proc::new(child, "openssl ocsp"), "openssl ocsp");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        responder
            .proc
            .wait_listening(addr, START_TIMEOUT, &log_path)?;

        let mut store = X509StoreBuilder::new()?;
        store.add_cert(ca.clone())?;
        Ok(Peer {
            responder,
            addr,
            leaves,
            issuer: ca,
            trust: Trust {
                store: store.build(),
                untrusted: Stack::new()?,
            },
        })
    }
}

// ------------------------------------------------------------------------ requests, checks

/// Base64 of `der` with the three characters a path cannot carry as such percent-encoded, as
/// the GET form of RFC 6960 appendix A.1 wants it.
fn url_base64(der: &[u8]) -> String {
    openssl::base64::encode_block(der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// One DER OCSPRequest: one CertID (SHA-1) for `cert`, no nonce, unsigned.
fn ocsp_request(cert: &X509Ref, issuer: &X509Ref) -> Result<Vec<u8>> {
    let id = OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer)?;
    let mut req = OcspRequest::new()?;
    req.add_id(id)?;
    Ok(req.to_der()?)
}

/// The serial as our store spells it: lower-case hex, whole bytes.
fn serial_hex(cert: &X509Ref) -> Result<String> {
    let hex = cert
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_ascii_lowercase();
    Ok(if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    })
}

/// The responseStatus of a DER OCSPResponse, read without decoding the rest:
/// `SEQUENCE { ENUMERATED status, ... }`.
fn response_status(der: &[u8]) -> Option<u8> {
    let rest = der.strip_prefix(&[0x30])?;
    let (&len, rest) = rest.split_first()?;
    let rest = if len & 0x80 == 0 {
        rest
    } else {
        rest.get(usize::from(len & 0x7f)..)?
    };
    match rest {
        [0x0a, 0x01, status, ..] => Some(*status),
        _ => None,
    }
}

/// Verifies one response fully: successful, signed by an authorized responder that chains to
/// the trust anchor, about `leaf`, with the expected status, currently valid.
fn verify_response(der: &[u8], leaf: &Leaf, issuer: &X509Ref, trust: &Trust) -> Result<()> {
    let resp = OcspResponse::from_der(der).context("the answer is not a DER OCSPResponse")?;
    ensure!(
        resp.status() == OcspResponseStatus::SUCCESSFUL,
        "responseStatus {} instead of successful (0)",
        resp.status().as_raw()
    );
    let basic = resp.basic().context("no BasicOCSPResponse")?;
    basic
        .verify(&trust.untrusted, &trust.store, OcspFlag::empty())
        .context("the response's signature or its signer does not verify")?;
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &leaf.cert, issuer)?;
    let status = basic
        .find_status(&id)
        .context("the response says nothing of the CertID asked")?;
    let want = if leaf.revoked {
        OcspCertStatus::REVOKED
    } else {
        OcspCertStatus::GOOD
    };
    ensure!(
        status.status.as_raw() == want.as_raw(),
        "status {} instead of {}",
        status.status.as_raw(),
        want.as_raw()
    );
    status
        .check_validity(300, None)
        .context("thisUpdate/nextUpdate are not valid now")?;
    Ok(())
}

/// Sends every request once and verifies every response; returns the responses.
fn check_all(t: &Target, leaves: &[Leaf], issuer: &X509Ref, trust: &Trust) -> Result<Vec<Vec<u8>>> {
    let mut client = Client::new(t.addr, t.conn);
    let mut answers = Vec::with_capacity(leaves.len());
    for (i, (message, leaf)) in t.messages.iter().zip(leaves).enumerate() {
        client
            .exchange(message)
            .and_then(|_| verify_response(client.body(), leaf, issuer, trust))
            .with_context(|| {
                format!(
                    "request {i} (serial {})",
                    serial_hex(&leaf.cert).unwrap_or_default()
                )
            })?;
        answers.push(client.body().to_vec());
    }
    Ok(answers)
}

/// How many of the first [`CACHE_SAMPLE`] requests get the very bytes they got before.
fn same_as_before(t: &Target, before: &[Vec<u8>]) -> Result<usize> {
    let mut client = Client::new(t.addr, t.conn);
    let mut same = 0;
    for (message, earlier) in t.messages.iter().zip(before).take(CACHE_SAMPLE) {
        client.exchange(message)?;
        same += usize::from(client.body() == earlier.as_slice());
    }
    Ok(same)
}

// ---------------------------------------------------------------------------------- HTTP

/// How the load generator uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conn {
    /// One connection per client, kept open across requests (HTTP/1.1 keep-alive).
    KeepAlive,
    /// A new connection per request, `Connection: close`; the server closes it first.
    PerRequest,
}

/// How the request travels (RFC 6960 appendix A.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// `POST {path}` with the DER request as the body: what most clients send.
    Post,
    /// `GET {path}/{url-encoded base64 of the DER}`: what RFC 5019 clients send, cacheable.
    Get,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
        }
    }
}

/// A responder and the HTTP messages to send it, built before timing.
struct Target {
    label: String,
    addr: SocketAddr,
    conn: Conn,
    /// Each request's whole HTTP message: head and DER body.
    messages: Vec<Vec<u8>>,
}

impl Target {
    fn new(
        label: String,
        addr: SocketAddr,
        path: &str,
        method: Method,
        conn: Conn,
        leaves: &[Leaf],
        issuer: &X509Ref,
    ) -> Result<Self> {
        let connection = match conn {
            Conn::KeepAlive => "",
            Conn::PerRequest => "Connection: close\r\n",
        };
        let messages = leaves
            .iter()
            .map(|leaf| {
                let der = ocsp_request(&leaf.cert, issuer)?;
                Ok(match method {
                    Method::Post => {
                        let mut m = format!(
                            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: \
                             application/ocsp-request\r\nContent-Length: {}\r\n{connection}\r\n",
                            der.len()
                        )
                        .into_bytes();
                        m.extend_from_slice(&der);
                        m
                    }
                    Method::Get => format!(
                        "GET {path}/{} HTTP/1.1\r\nHost: {addr}\r\n{connection}\r\n",
                        url_base64(&der)
                    )
                    .into_bytes(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            label,
            addr,
            conn,
            messages,
        })
    }
}

/// A minimal HTTP/1.x client: one request at a time, `Content-Length` or read-to-close
/// bodies, keep-alive when both sides want it.
pub(crate) struct Client {
    addr: SocketAddr,
    conn: Conn,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    body: std::ops::Range<usize>,
    /// Kept-alive connections found closed by the server and opened again.
    reconnects: usize,
}

/// A parsed response head.
struct Head {
    len: usize,
    status: u16,
    content_length: Option<usize>,
    keep_alive: bool,
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn parse_head(head: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(head).context("the response head is not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    ensure!(
        version.starts_with("HTTP/1."),
        "not an HTTP/1 response: {status_line:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let mut content_length = None;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = value.eq_ignore_ascii_case("keep-alive")
                || (keep_alive && !value.eq_ignore_ascii_case("close"));
        }
    }
    Ok(Head {
        len: head.len() + 4,
        status,
        content_length,
        keep_alive,
    })
}

impl Client {
    pub(crate) fn new(addr: SocketAddr, conn: Conn) -> Self {
        Self {
            addr,
            conn,
            stream: None,
            buf: Vec::with_capacity(8192),
            body: 0..0,
            reconnects: 0,
        }
    }

    /// The body of the last response.
    pub(crate) fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    /// Sends one request and reads its response; returns the time from the first byte sent
    /// to the last byte of the body. The response must be HTTP 200.
    pub(crate) fn exchange(&mut self, message: &[u8]) -> Result<Duration> {
        let started = Instant::now();
        let (mut stream, reused) = match self.stream.take() {
            Some(s) => (s, true),
            None => (connect(self.addr)?, false),
        };
        let head = match self.send_and_read_head(&mut stream, message) {
            Ok(head) => head,
            // A kept-alive connection may have been closed by the server meanwhile: that is
            // not a failed request, so once more on a new connection.
            Err(_) if reused && self.buf.is_empty() => {
                self.reconnects += 1;
                stream = connect(self.addr)?;
                self.send_and_read_head(&mut stream, message)?
            }
            Err(e) => return Err(e),
        };
        let end = match head.content_length {
            Some(n) => {
                ensure!(n <= MAX_BODY, "response body of {n} bytes");
                let end = head.len + n;
                while self.buf.len() < end {
                    ensure!(
                        self.fill(&mut stream)? > 0,
                        "connection closed in the middle of a response body"
                    );
                }
                end
            }
            None => {
                while self.fill(&mut stream)? > 0 {
                    ensure!(self.buf.len() <= MAX_BODY, "response body too large");
                }
                self.buf.len()
            }
        };
        let elapsed = started.elapsed();
        self.body = head.len..end;
        ensure!(head.status == 200, "HTTP status {}", head.status);
        if self.conn == Conn::KeepAlive && head.keep_alive && head.content_length.is_some() {
            self.stream = Some(stream);
        } else {
            // The server closes first (we asked it to, or it does anyway): wait for that, so
            // the closed connections pile up on its side, not in our ephemeral ports.
            let mut sink = [0u8; 512];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        Ok(elapsed)
    }

    fn send_and_read_head(&mut self, stream: &mut TcpStream, message: &[u8]) -> Result<Head> {
        self.buf.clear();
        stream.write_all(message).context("sending the request")?;
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return parse_head(&self.buf[..pos]);
            }
            ensure!(self.buf.len() <= MAX_HEAD, "response head too large");
            ensure!(
                self.fill(stream)? > 0,
                "connection closed before a response"
            );
        }
    }

    /// Reads what is there into the buffer; 0 at the end of the stream.
    fn fill(&mut self, stream: &mut TcpStream) -> Result<usize> {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow!(e).context("reading the response")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------- load

/// Measured runs (one per round, merged) and what the machine did meanwhile.
struct Measured {
    /// Every latency, sorted once the rounds are merged; the wall time of all rounds.
    run: Run,
    reconnects: usize,
    /// Busy and total CPU ticks of the whole machine (`/proc/stat`) during the runs.
    machine_ticks: Option<(u64, u64)>,
    /// CPU seconds used by this process (the load generator) during the runs.
    bench_cpu_s: Option<f64>,
    /// CPU seconds used by the responder's processes during the runs, when known.
    responder_cpu_s: Option<f64>,
    /// CPU seconds used by the database server's processes during the runs (PostgreSQL).
    database_cpu_s: Option<f64>,
    /// Responses from each responder the load was split between.
    per_target: Vec<usize>,
}

/// The sum of two optional amounts, known only if both are.
fn add<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.zip(b).map(|(a, b)| a + b)
}

impl Measured {
    /// This and the runs of a later round, as one measurement.
    fn merge(self, later: Measured) -> Measured {
        let mut latencies = self.run.latencies;
        latencies.extend(later.run.latencies);
        latencies.sort();
        Measured {
            run: Run {
                elapsed: self.run.elapsed + later.run.elapsed,
                latencies,
            },
            reconnects: self.reconnects + later.reconnects,
            machine_ticks: self
                .machine_ticks
                .zip(later.machine_ticks)
                .map(|(a, b)| (a.0 + b.0, a.1 + b.1)),
            bench_cpu_s: add(self.bench_cpu_s, later.bench_cpu_s),
            responder_cpu_s: add(self.responder_cpu_s, later.responder_cpu_s),
            database_cpu_s: add(self.database_cpu_s, later.database_cpu_s),
            per_target: self
                .per_target
                .iter()
                .zip(&later.per_target)
                .map(|(a, b)| a + b)
                .collect(),
        }
    }

    /// CPU seconds per second of the runs: 1.0 = one CPU busy all the time.
    fn cpus(&self, seconds: Option<f64>) -> Option<f64> {
        seconds.map(|s| s / self.run.elapsed.as_secs_f64())
    }

    /// Share of the whole machine that was busy, 0..1.
    fn machine_busy(&self) -> Option<f64> {
        self.machine_ticks
            .filter(|(_, total)| *total > 0)
            .map(|(busy, total)| busy as f64 / total as f64)
    }

    fn json(&self) -> Value {
        let pct = |x: Option<f64>| x.map(|x| round(x * 100.0));
        json!({
            "per_s": round(self.run.rate()),
            "responses": self.run.latencies.len(),
            "seconds": round(self.run.elapsed.as_secs_f64()),
            "latency_ms": {
                "p50": round(ms(self.run.percentile(50.0))),
                "p99": round(ms(self.run.percentile(99.0))),
                "max": round(ms(self.run.percentile(100.0))),
            },
            "machine_cpu_busy_pct": pct(self.machine_busy()),
            "load_generator_cpu_pct": pct(self.cpus(self.bench_cpu_s)),
            "responder_cpu_pct": pct(self.cpus(self.responder_cpu_s)),
            "database_cpu_pct": pct(self.cpus(self.database_cpu_s)),
            "reconnects": self.reconnects,
        })
    }
}

/// Busy and total CPU ticks of the whole machine, from the first line of `/proc/stat`.
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `clients` connections sending requests for `secs` seconds, client `c` to
/// `targets[c % targets.len()]` (so the connections are split evenly between responders),
/// each cycling through the requests from its own starting point; every response must be
/// HTTP 200 with a successful OCSPResponse, or the run fails. `responder_cpu` and
/// `database_cpu` read the CPU seconds used so far by the responders' and the database's
/// processes.
fn load(
    targets: &[&Target],
    clients: usize,
    secs: f64,
    responder_cpu: &dyn Fn() -> Option<f64>,
    database_cpu: &dyn Fn() -> Option<f64>,
) -> Result<Measured> {
    ensure!(!targets.is_empty(), "no responder to load");
    let stop = AtomicBool::new(false);
    let machine_before = machine_ticks();
    let bench_before = cpu_seconds("self");
    let responder_before = responder_cpu();
    let database_before = database_cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let per_client: Vec<Result<(Vec<Duration>, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let stop = &stop;
                let t = targets[c % targets.len()];
                let n = t.messages.len();
                s.spawn(move || {
                    let mut client = Client::new(t.addr, t.conn);
                    let mut latencies = Vec::with_capacity(4096);
                    let mut i = c * n / clients;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let outcome =
                            client.exchange(&t.messages[i % n]).and_then(
                                |d| match response_status(client.body()) {
                                    Some(0) => Ok(d),
                                    Some(s) => {
                                        bail!("OCSP responseStatus {s} instead of successful")
                                    }
                                    None => bail!("the answer is not an OCSPResponse"),
                                },
                            );
                        match outcome {
                            Ok(d) => latencies.push(d),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed); // stop the others too
                                return Err(e.context(format!("client {c}, request {}", i % n)));
                            }
                        }
                        i += 1;
                    }
                    Ok((latencies, client.reconnects))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("load generator thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let used = |before: Option<f64>, after: Option<f64>| before.zip(after).map(|(b, a)| a - b);
    let machine_ticks = machine_before
        .zip(machine_ticks())
        .map(|(b, a)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1)));
    let bench_cpu_s = used(bench_before, cpu_seconds("self"));
    let responder_cpu_s = used(responder_before, responder_cpu());
    let database_cpu_s = used(database_before, database_cpu());
    let mut latencies = Vec::new();
    let mut reconnects = 0;
    let mut per_target = vec![0; targets.len()];
    for (c, r) in per_client.into_iter().enumerate() {
        let (l, k) = r?;
        per_target[c % targets.len()] += l.len();
        latencies.extend(l);
        reconnects += k;
    }
    ensure!(!latencies.is_empty(), "no response in {secs} s");
    latencies.sort();
    Ok(Measured {
        run: Run { elapsed, latencies },
        reconnects,
        machine_ticks,
        bench_cpu_s,
        responder_cpu_s,
        database_cpu_s,
        per_target,
    })
}

// ------------------------------------------------------------------------------- helpers

/// User + system CPU seconds of every process in process group `pgid` (`/proc/*/stat`).
fn group_cpu_seconds(pgid: u32) -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // gone meanwhile
        };
        // After the command name in parentheses: state, ppid, pgrp, ..., utime (14), stime (15).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        ticks += field(11)? + field(12)?;
        found = true;
    }
    found.then(|| ticks as f64 / clock_ticks_per_second())
}

/// The release `nuc` binary next to this one.
pub(crate) fn nuc_binary(exe: &Path) -> Result<PathBuf> {
    let nuc = exe.with_file_name("nuc");
    ensure!(
        nuc.is_file(),
        "{} is missing (this benchmark runs the real service): run `cargo build --release -p \
         nuc-server` first",
        nuc.display()
    );
    Ok(nuc)
}

/// Runs `nuc ARGS` to its end with the password of `db` in its environment.
pub(crate) fn run_nuc_on(nuc: &Path, args: &[&OsStr], db: &Db) -> Result<()> {
    let mut cmd = Command::new(nuc);
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SOFTHSM2_CONF")
        .stdin(Stdio::null());
    db.env(&mut cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", nuc.display()))?;
    ensure!(
        out.status.success(),
        "nuc {} failed ({}): {}",
        args.first().map_or("".into(), |a| a.to_string_lossy()),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The last JSON line a child printed.
pub(crate) fn last_json(stdout: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
}
