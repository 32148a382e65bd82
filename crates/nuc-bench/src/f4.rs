//! F4 at the counter: the whole enrollment onto an emulated card through pcscd and vpcd, and
//! the APDU round trips per second that reader chain carries.
//!
//! F4 is issuance onto a chip ID card or a SIM card at a CON: `nuc-station enroll` looks the
//! applicant up (through the NUC, which asks the registry), connects to the card, verifies the
//! applicant's PIN, has the card generate the AUTH and SIGN keys and sign their requests,
//! registers the request, signs the operator's confirmation in the operator's own PKCS#11
//! token, has the NUC issue both certificates, and writes them onto the card and reads them
//! back. **Target: one enrollment in under 2 seconds of machine time.**
//!
//! **Machine time** of an enrollment is the CPU time (user + system, all threads) that the
//! processes doing it used while it ran: `nuc-station` (the whole process, start to exit),
//! `nuc serve`, `card-sim` (the card) and `pcscd` (with vpcd's driver inside it). The station
//! runs under bash's `time`, whose CPU figures come from `getrusage` for the ended child (all
//! its threads, to the millisecond as printed), and which also gives the wall time from fork
//! to exit. The others keep running: their threads' on-CPU nanoseconds
//! (`/proc/PID/task/TID/schedstat`) are read just before the station starts and just after it
//! exits (`/proc/PID/stat` counts in 10 ms clock ticks, as much as a whole enrollment's share
//! of some of them); pcscd's thread for the station's own PC/SC context ends with the station,
//! so it is read every millisecond while it lives. The fixture registry (`nuc-registry`, a stand-in for the national
//! registry, not ours to run) is read the same way and shown beside it, not counted. What the
//! service does afterwards in the background (the notification e-mail its outbox sends, its
//! timers) is outside that window; it is shown as "nuc serve between enrollments". So is what
//! the kernel does for them outside their own threads (softirqs of loopback TCP). The busy time
//! of the whole machine (`/proc/stat`, in ticks) is shown too: others may be using the machine.
//! The verdict is on the **largest** machine time of the enrollments measured: every one of
//! them must be under 2 s.
//!
//! How it measures:
//!
//! * vpcd's port is taken with `card_sim::harness::lock_vpcd` (a test run waits for the bench,
//!   and the bench for a test run), then pcscd: the one running, or `pcscd -f` started here and
//!   stopped by its pid at the end (`card_sim::harness::Pcscd`; pcscd must run as root).
//! * A fresh temporary home: `nuc-registry`, `nuc init`, system certificates (the workstation's
//!   TLS identity among them) and `nuc serve`, as for the F1 benchmark. The operator's key is
//!   made in a SoftHSM2 token of its own (`softhsm2-util --init-token`, then `nuc-station
//!   operator-key`) and certified through `AdminService.IssueOperatorCertificate`.
//! * **APDU round trips**: a card is personalised and inserted (`card-sim`), this process
//!   connects to it through pcscd and, after 100 not counted, sends `--f4-apdus` times the
//!   smallest useful command (`nuc_card::bench::apdu_round_trips`, one at a time so that each
//!   is timed): the rate, p50/p99 per APDU, and the CPU of pcscd, card-sim and this process
//!   per APDU.
//! * **Enrollments**: `1 + --f4-count` cards are personalised before timing, ID cards and SIM
//!   cards alternating. For each: the card is inserted and the bench waits until pcscd sees it
//!   (the operator puts the card in, then starts), then `nuc-station enroll --json` runs against
//!   the real `nuc serve`, then the card is pulled out and the bench waits until pcscd has seen
//!   the reader empty. The first enrollment is not counted: its certificates are read back from
//!   the card (`nuc-station read --export`) and checked against the issuing CA, and it warms the
//!   service up. The station's own JSON gives its total (`millis`, from the registry step to
//!   the end, without the process start, the operator token's login, the TLS connection), the
//!   time of each of its eight steps (whole milliseconds, as it reports them) and the APDUs
//!   exchanged.
//!
//! Everything runs on loopback (and vpcd's local port) and stops by itself; the processes are
//! stopped by their pids and the temporary directories removed at the end, after an error too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use card_sim::CardKind;
use card_sim::harness::{self, Pcscd, SimCard, SimOptions};
use nuc_api::v1::IssueOperatorCertificateRequest;
use nuc_api::v1::admin_service_client::AdminServiceClient;
use nuc_card::Pcsc;
use openssl::x509::X509;
use serde_json::{Value, json};

use crate::f1::{Bins, Service, call_error, clock_ticks_per_second};
use crate::ocsp::machine_ticks;
use crate::{Args, ms, round};

/// Machine time one enrollment may take, in milliseconds.
const TARGET_MS: f64 = 2000.0;
/// The applicant (in the registry fixture) and the operator confirming (in it too).
const APPLICANT_IIN: &str = "860908363012";
const OPERATOR_IIN: &str = "921002310220";
const EMAIL: &str = "applicant@mail.example.kz";
/// The applicant's card PIN, and the operator token's PIN and label.
const CARD_PIN: &str = "4321";
const OPERATOR_PIN: &str = "778899";
const OPERATOR_TOKEN: &str = "operator-token";
/// APDU round trips before the measured ones, not counted.
const APDU_WARMUP: u32 = 100;
/// How long to wait for pcscd, for a card to come or to go, for the station to find the card.
const WAIT: Duration = Duration::from_secs(15);
/// The steps of `nuc-station enroll`, in the order of its JSON `steps`, and what each does.
const STEPS: [(&str, &str); 8] = [
    ("registry", "applicant looked up (NUC -> registry)"),
    ("card", "card connected, kind and serial read"),
    ("pin", "PIN verified on the card"),
    (
        "keys",
        "AUTH+SIGN keys generated, requests signed by the card",
    ),
    ("register", "request registered with the NUC"),
    ("operator", "confirmation signed in the operator's token"),
    ("issue", "NUC issues AUTH+SIGN"),
    ("write", "certificates written and read back"),
];

// -------------------------------------------------------------------------- the benchmark

pub(crate) fn bench(args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bins = Bins::next_to(&exe)?;
    let station = exe.with_file_name("nuc-station");
    let card_sim = exe.with_file_name("card-sim");
    for b in [&station, &card_sim] {
        ensure!(
            b.is_file(),
            "{} is missing (the F4 benchmark runs the real station and card emulator): run \
             `cargo build --release -p nuc-station -p card-sim` first",
            b.display()
        );
    }
    let n = args.f4_count;
    out!(
        "nuc-bench f4: F4 enrollment over pcscd+vpcd: {n} `nuc-station enroll` runs against the \
         real `nuc serve` (fresh emulated card each, ID card and SIM alternating, after 1 checked \
         warm-up), and {} APDU round trips; target: one enrollment < {:.0} s of machine time \
         (CPU of nuc-station + nuc serve + card-sim + pcscd during it)",
        args.f4_apdus,
        TARGET_MS / 1e3
    );

    // Dropped in reverse: the service and the directory first, then pcscd, then the port.
    let started = Instant::now();
    let _vpcd = harness::lock_vpcd().context("taking vpcd's port (lock file)")?;
    let lock_wait = started.elapsed();
    let pcscd = Pcscd::ensure(WAIT).context("pcscd (it must run as root)")?;
    let pcscd_pids = match pcscd.started_pid() {
        Some(pid) => vec![pid],
        None => pids_named("pcscd"),
    };
    ensure!(
        !pcscd_pids.is_empty(),
        "pcscd answers, but no process named pcscd is seen in /proc"
    );
    let tmp = tempfile::Builder::new()
        .prefix("nuc-bench-f4-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = std::path::absolute(tmp.path())?;

    let started = Instant::now();
    let svc = Service::start(&bins, &crate::engine::Db::Sqlite)?;
    let con = Con::open(&svc, &dir, &station)?;
    let pcsc = Pcsc::establish().context("connecting to pcscd")?;
    let reader = vpcd_reader(&pcsc)?;
    let setup_time = started.elapsed();

    let started = Instant::now();
    let kinds: Vec<CardKind> = (0..=n)
        .map(|i| {
            if i % 2 == 0 {
                CardKind::IdCard
            } else {
                CardKind::Sim
            }
        })
        .collect();
    let mut states = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let state = dir.join(format!("card-{i}.json"));
        SimCard::personalise(&card_sim, &state, *kind, CARD_PIN, None)
            .with_context(|| format!("personalising card {i}"))?;
        states.push(state);
    }
    let personalise_time = started.elapsed();
    out!(
        "f4: setup (not timed): vpcd lock waited {:.2} s, pcscd pid {} ({}), registry + nuc init + \
         system certificates + nuc serve + operator token and certificate {:.2} s (nuc serve pid \
         {}), reader {reader:?}, {} cards personalised in {:.2} s",
        lock_wait.as_secs_f64(),
        pcscd_pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        if pcscd.started_pid().is_some() {
            "started here"
        } else {
            "already running"
        },
        setup_time.as_secs_f64(),
        svc.server_pid(),
        states.len(),
        personalise_time.as_secs_f64()
    );

    // 1. APDU round trips.
    let apdu = round_trips(&card_sim, &dir, &pcsc, &reader, args.f4_apdus, &pcscd_pids)
        .context("APDU round trips")?;
    let apdu_cpu_us = |s: Option<f64>| s.map(|s| s * 1e6 / f64::from(args.f4_apdus));
    out!(
        "f4: APDU round trips through pcscd+vpcd+card-sim: {} in {:.3} s = {:.0}/s; per APDU p50 \
         {:.1} us, p99 {:.1} us, max {:.1} us; CPU per APDU: pcscd {}, card-sim {}, this client {}",
        args.f4_apdus,
        apdu.elapsed.as_secs_f64(),
        apdu.per_second(),
        apdu.percentile_us(50.0),
        apdu.percentile_us(99.0),
        apdu.percentile_us(100.0),
        us_text(apdu_cpu_us(apdu.cpu.pcscd)),
        us_text(apdu_cpu_us(apdu.cpu.card_sim)),
        us_text(apdu_cpu_us(apdu.cpu.client)),
    );

    // 2. Enrollments: the first checked and not counted.
    let procs = Procs {
        serve: svc.server_pid(),
        registry: svc.registry_pid(),
        pcscd: pcscd_pids.clone(),
    };
    let rig = Rig {
        con: &con,
        card_sim: &card_sim,
        pcsc: &pcsc,
        reader: &reader,
        procs: &procs,
    };
    let check = rig
        .enroll(&states[0], kinds[0], true)
        .context("the checked first enrollment")?;
    out!(
        "f4: checked (not counted): request {} on {} {}: AUTH and SIGN read back from the card \
         verify under the issuing CA; {:.0} ms wall",
        check.request,
        kinds[0].name(),
        check.card_serial,
        ms(check.wall)
    );
    let serve_before = Threads::of(&[procs.serve]);
    let mut done: Vec<Enrollment> = Vec::with_capacity(n);
    for (i, (state, kind)) in states.iter().zip(&kinds).enumerate().skip(1) {
        let e = rig
            .enroll(state, *kind, false)
            .with_context(|| format!("enrollment {i} of {n}"))?;
        done.push(e);
    }
    let serve_total = serve_before
        .zip(Threads::of(&[procs.serve]))
        .map(|(b, a)| a.since(&b));
    drop(pcsc);

    report(args, &apdu, &done, serve_total);
    // The service is stopped and the directories removed here (and on every early return),
    // then pcscd if it was started here, then vpcd's port is released.
    drop(svc);
    drop(tmp);
    drop(pcscd);
    Ok(())
}

fn enrollments(n: usize) -> String {
    if n == 1 {
        "1 enrollment".into()
    } else {
        format!("{n} enrollments")
    }
}

fn us_text(us: Option<f64>) -> String {
    us.map_or_else(|| "?".into(), |us| format!("{us:.1} us"))
}

// ------------------------------------------------------------------------------- the CON

/// The workstation's settings: TLS identity, the operator's token and certificate.
struct Con {
    station: PathBuf,
    grpc: String,
    root_ca: PathBuf,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    softhsm_conf: PathBuf,
    operator_cert: PathBuf,
    issuing_cert: X509,
    dir: PathBuf,
}

impl Con {
    fn open(svc: &Service, dir: &Path, station: &Path) -> Result<Con> {
        let tls_cert = dir.join("ws.pem");
        let tls_key = dir.join("ws.key");
        std::fs::write(&tls_cert, &svc.workstation_identity.cert)?;
        std::fs::write(&tls_key, &svc.workstation_identity.key)?;
        let issuing_cert = X509::from_pem(
            &std::fs::read(svc.home.join("ca").join("issuing.pem"))
                .context("reading the issuing CA certificate")?,
        )?;

        // The operator's token: SoftHSM2 of its own, never the CA's.
        let tokens = dir.join("operator-tokens");
        std::fs::create_dir_all(&tokens)?;
        let softhsm_conf = dir.join("operator-softhsm2.conf");
        std::fs::write(
            &softhsm_conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let init = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", OPERATOR_TOKEN])
            .args(["--pin", OPERATOR_PIN, "--so-pin", "10203040"])
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .stdin(Stdio::null())
            .output()
            .context("cannot run softhsm2-util (package softhsm2)")?;
        ensure!(
            init.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        );
        let con = Con {
            station: station.to_owned(),
            grpc: svc.grpc.clone(),
            root_ca: svc.home.join("ca").join("root.pem"),
            tls_cert,
            tls_key,
            softhsm_conf,
            operator_cert: dir.join("operator.pem"),
            issuing_cert,
            dir: dir.to_owned(),
        };
        let csr_path = dir.join("operator.csr");
        let made = con
            .station(false)
            .args(["operator-key", "--token", OPERATOR_TOKEN, "--cn"])
            .arg("СӘТБАЕВ ҚАНЫШ")
            .arg("--out")
            .arg(&csr_path)
            .output()
            .context("cannot run nuc-station")?;
        ensure!(
            made.status.success(),
            "nuc-station operator-key failed ({}): {}",
            made.status,
            String::from_utf8_lossy(&made.stderr).trim()
        );
        let csr = openssl::x509::X509Req::from_pem(&std::fs::read(&csr_path)?)
            .context("the operator's request")?
            .to_der()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let issued = runtime.block_on(async {
            AdminServiceClient::new(svc.channel(&svc.admin_identity).await?)
                .issue_operator_certificate(IssueOperatorCertificateRequest {
                    iin: OPERATOR_IIN.into(),
                    role: "operator".into(),
                    con: "ЦОН Алматы №1".into(),
                    csr,
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| call_error("IssueOperatorCertificate", s))
        })?;
        std::fs::write(&con.operator_cert, &issued.pem)?;
        Ok(con)
    }

    /// `nuc-station` with this CON's settings, the PINs given through the environment (the
    /// applicant's PIN pad and the operator's token PIN); the caller adds the arguments.
    /// `timed`: run by bash's `time` (see [`TIMED`]), which reports on stderr.
    fn station(&self, timed: bool) -> Command {
        let mut cmd = if timed {
            let mut c = Command::new("bash");
            c.args(["-c", TIMED, "bash"]).arg(&self.station);
            c
        } else {
            Command::new(&self.station)
        };
        cmd.env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("NUC_STATION_NUC", &self.grpc)
            .env("NUC_STATION_SERVER_NAME", "localhost")
            .env("NUC_STATION_ROOT_CA", &self.root_ca)
            .env("NUC_STATION_TLS_CERT", &self.tls_cert)
            .env("NUC_STATION_TLS_KEY", &self.tls_key)
            .env("NUC_STATION_TOKEN", OPERATOR_TOKEN)
            .env("NUC_STATION_KEY", "operator")
            .env("NUC_STATION_OPERATOR_CERT", &self.operator_cert)
            .env("NUC_OPERATOR_PIN", OPERATOR_PIN)
            .env("NUC_CARD_PIN", CARD_PIN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

/// vpcd's first reader, once pcscd lists it.
fn vpcd_reader(pcsc: &Pcsc) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let readers = pcsc.readers().context("listing the readers")?;
        if let Some(r) = harness::vpcd_reader(&readers) {
            return Ok(r.clone());
        }
        if Instant::now() > deadline {
            bail!(
                "pcscd lists no vpcd reader (\"{}...\") after {WAIT:?} (readers: {readers:?}); \
                 is vsmartcard-vpcd installed?",
                harness::VPCD_READER_PREFIX
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Puts the card in and waits until pcscd sees it.
fn insert(card_sim: &Path, state: &Path, pcsc: &Pcsc, reader: &str) -> Result<SimCard> {
    let card =
        SimCard::insert(card_sim, state, &SimOptions::default()).context("starting card-sim")?;
    pcsc.wait_for_card(Some(reader), WAIT)
        .context("waiting for pcscd to see the card")?;
    Ok(card)
}

/// Pulls the card out and waits until pcscd has seen the reader empty: the next card must not
/// be taken for this one.
fn pull_out(card: SimCard, pcsc: &Pcsc, reader: &str) -> Result<()> {
    card.pull_out();
    pcsc.wait_for_removal(reader, WAIT)
        .context("waiting for pcscd to see the card gone")?;
    Ok(())
}

// ------------------------------------------------------------------------- APDU round trips

/// CPU seconds of the APDU chain over the round trips, when `/proc` said.
struct ApduCpu {
    pcscd: Option<f64>,
    card_sim: Option<f64>,
    client: Option<f64>,
}

struct RoundTrips {
    elapsed: Duration,
    /// Each round trip, sorted.
    latencies: Vec<Duration>,
    cpu: ApduCpu,
}

impl RoundTrips {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in microseconds.
    fn percentile_us(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1].as_secs_f64() * 1e6
    }
}

fn round_trips(
    card_sim: &Path,
    dir: &Path,
    pcsc: &Pcsc,
    reader: &str,
    n: u32,
    pcscd: &[u32],
) -> Result<RoundTrips> {
    let state = dir.join("card-apdu.json");
    SimCard::personalise(card_sim, &state, CardKind::IdCard, CARD_PIN, None)
        .context("personalising the card")?;
    let sim = insert(card_sim, &state, pcsc, reader)?;
    let sim_pid = sim.pid();
    let client_pid = std::process::id();
    let measured = (|| -> Result<RoundTrips> {
        let mut card = pcsc.connect(reader).context("connecting to the card")?;
        nuc_card::bench::apdu_round_trips(&mut card, APDU_WARMUP)?;
        let pcscd_before = Threads::of(pcscd);
        let sim_before = Threads::of(&[sim_pid]);
        let client_before = Threads::of(&[client_pid]);
        let mut latencies = Vec::with_capacity(n as usize);
        let started = Instant::now();
        for _ in 0..n {
            latencies.push(nuc_card::bench::apdu_round_trips(&mut card, 1)?.elapsed);
        }
        let elapsed = started.elapsed();
        let used =
            |b: Option<Threads>, pids: &[u32]| b.zip(Threads::of(pids)).map(|(b, a)| a.since(&b));
        let cpu = ApduCpu {
            pcscd: used(pcscd_before, pcscd),
            card_sim: used(sim_before, &[sim_pid]),
            client: used(client_before, &[client_pid]),
        };
        latencies.sort();
        Ok(RoundTrips {
            elapsed,
            latencies,
            cpu,
        })
    })();
    pull_out(sim, pcsc, reader)?;
    measured
}

// ------------------------------------------------------------------------------ enrollments

/// The processes whose CPU is read around an enrollment.
struct Procs {
    serve: u32,
    registry: u32,
    pcscd: Vec<u32>,
}

/// CPU seconds used during one enrollment, per process.
#[derive(Clone, Copy, Default)]
struct Cpu {
    station: f64,
    serve: f64,
    card_sim: f64,
    pcscd: f64,
    registry: f64,
    /// Busy seconds of the whole machine (all CPUs), from `/proc/stat`, in clock ticks.
    machine: f64,
    /// Seconds between the two readings of `/proc/stat`.
    window: f64,
}

impl Cpu {
    /// Machine time: what the target is about.
    fn ours(&self) -> f64 {
        self.station + self.serve + self.card_sim + self.pcscd
    }
}

/// CPU time so far of the long-running processes around an enrollment (nuc-station's comes
/// from bash's `time`).
struct Snapshot {
    serve: Threads,
    card_sim: Threads,
    pcscd: Threads,
    registry: Threads,
    machine: f64,
}

impl Snapshot {
    fn take(procs: &Procs, card_sim: u32) -> Result<Snapshot> {
        let read = |pids: &[u32], what: &str| {
            Threads::of(pids).with_context(|| {
                format!("cannot read the CPU time of {what} in /proc/PID/task/TID/schedstat")
            })
        };
        Ok(Snapshot {
            serve: read(&[procs.serve], "nuc serve")?,
            card_sim: read(&[card_sim], "card-sim")?,
            pcscd: read(&procs.pcscd, "pcscd")?,
            registry: read(&[procs.registry], "nuc-registry")?,
            machine: machine_ticks()
                .map(|(busy, _)| busy as f64 / clock_ticks_per_second())
                .context("cannot read /proc/stat")?,
        })
    }

    fn since(&self, earlier: &Snapshot) -> Cpu {
        Cpu {
            station: 0.0,
            serve: self.serve.since(&earlier.serve),
            card_sim: self.card_sim.since(&earlier.card_sim),
            pcscd: self.pcscd.since(&earlier.pcscd),
            registry: self.registry.since(&earlier.registry),
            machine: self.machine - earlier.machine,
            window: 0.0,
        }
    }
}

/// One enrollment, as measured.
struct Enrollment {
    kind: CardKind,
    request: String,
    card_serial: String,
    wall: Duration,
    cpu: Cpu,
    /// The station's own total and its steps, in milliseconds.
    station_ms: f64,
    steps_ms: Vec<f64>,
    apdus: u64,
    apdus_before_write: u64,
}

/// What an enrollment runs with: the CON, the card emulator, the reader, the processes watched.
struct Rig<'a> {
    con: &'a Con,
    card_sim: &'a Path,
    pcsc: &'a Pcsc,
    reader: &'a str,
    procs: &'a Procs,
}

impl Rig<'_> {
    /// Inserts the card in `state`, runs `nuc-station enroll` on it, pulls it out. With
    /// `check`, also reads the certificates back from the card and checks them against the
    /// issuing CA.
    fn enroll(&self, state: &Path, kind: CardKind, check: bool) -> Result<Enrollment> {
        let Rig {
            con,
            card_sim,
            pcsc,
            reader,
            procs,
        } = *self;
        let card = insert(card_sim, state, pcsc, reader)?;
        let sim_pid = card.pid();
        let measured = (|| -> Result<Enrollment> {
            let mut cmd = con.station(true);
            cmd.args(["enroll", "--iin", APPLICANT_IIN, "--email", EMAIL])
                .args(["--reader", reader, "--wait-secs", "10", "--json"]);
            let window = Instant::now();
            let before = Snapshot::take(procs, sim_pid)?;
            let stop = AtomicBool::new(false);
            let (out, seen) = std::thread::scope(|s| {
                let watcher = s.spawn(|| watch_new_threads(&procs.pcscd, &before.pcscd, &stop));
                let out = cmd.output();
                stop.store(true, Ordering::Relaxed);
                (out, watcher.join().unwrap_or_default())
            });
            let out = out.context("cannot run bash and nuc-station")?;
            let after = Snapshot::take(procs, sim_pid)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                out.status.success(),
                "nuc-station enroll failed ({}):\n{}",
                out.status,
                stderr.trim()
            );
            let (wall, station_cpu) = timed(&stderr)?;
            let mut cpu = after.since(&before);
            cpu.window = window.elapsed().as_secs_f64();
            cpu.station = station_cpu;
            // pcscd's thread for the station's PC/SC context ended with the station.
            cpu.pcscd += seen
                .iter()
                .filter(|(tid, _)| !after.pcscd.0.contains_key(tid))
                .map(|(_, ns)| *ns as f64 / 1e9)
                .sum::<f64>();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let report: Value = stdout
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .and_then(|l| serde_json::from_str(l).ok())
                .with_context(|| format!("nuc-station enroll --json printed no JSON: {stdout}"))?;
            let e = parse_report(&report, kind, wall, cpu)?;
            if check {
                check_card(con, reader, &report)?;
            }
            Ok(e)
        })();
        pull_out(card, pcsc, reader)?;
        measured
    }
}

fn parse_report(r: &Value, kind: CardKind, wall: Duration, cpu: Cpu) -> Result<Enrollment> {
    let text = |k: &str| -> Result<String> {
        Ok(r[k]
            .as_str()
            .with_context(|| format!("no {k} in the station's JSON: {r}"))?
            .to_owned())
    };
    let number = |k: &str| -> Result<u64> {
        r[k].as_u64()
            .with_context(|| format!("no {k} in the station's JSON: {r}"))
    };
    let steps = r["steps"]
        .as_array()
        .with_context(|| format!("no steps in the station's JSON: {r}"))?;
    ensure!(
        steps.len() == STEPS.len(),
        "the station reported {} steps, this bench knows {}: {r}",
        steps.len(),
        STEPS.len()
    );
    let steps_ms = steps
        .iter()
        .map(|s| s["millis"].as_f64().context("a step without millis"))
        .collect::<Result<Vec<f64>>>()?;
    let certificates = r["certificates"].as_array().map_or(0, Vec::len);
    ensure!(
        certificates == 2,
        "the station reported {certificates} certificates, not AUTH and SIGN: {r}"
    );
    let card_kind = text("card_kind")?;
    ensure!(
        card_kind == kind.name(),
        "the station saw a {card_kind}, the card is a {}",
        kind.name()
    );
    Ok(Enrollment {
        kind,
        request: text("request_number")?,
        card_serial: text("card_serial")?,
        wall,
        cpu,
        station_ms: number("millis")? as f64,
        steps_ms,
        apdus: number("apdus")?,
        apdus_before_write: number("apdus_before_write")?,
    })
}

/// The certificates on the card are the ones the station reported, of the right profiles,
/// signed by the issuing CA (read back by `nuc-station read --export`, judged here).
fn check_card(con: &Con, reader: &str, report: &Value) -> Result<()> {
    let export = con.dir.join("check-export");
    std::fs::create_dir_all(&export)?;
    let out = con
        .station(false)
        .args(["read", "--reader", reader, "--wait-secs", "10", "--export"])
        .arg(&export)
        .output()
        .context("cannot run nuc-station read")?;
    ensure!(
        out.status.success(),
        "nuc-station read failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let issuing_key = con.issuing_cert.public_key()?;
    let serials: Vec<&str> = report["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["serial_hex"].as_str())
        .collect();
    for slot in ["auth", "sign"] {
        let pem = std::fs::read(export.join(format!("{slot}.pem")))
            .with_context(|| format!("no {slot} certificate read back from the card"))?;
        let cert = X509::from_pem(&pem)?;
        ensure!(
            cert.verify(&issuing_key)?,
            "the {slot} certificate on the card does not verify under the issuing CA"
        );
        let serial = cert
            .serial_number()
            .to_bn()?
            .to_hex_str()?
            .to_ascii_lowercase();
        ensure!(
            serials
                .iter()
                .any(|s| s.trim_start_matches('0') == serial.trim_start_matches('0')),
            "the {slot} certificate on the card (serial {serial}) is not one the station \
             reported ({serials:?})"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------- the report

/// Mean, p50 (nearest rank) and max of some values.
fn stats(values: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let p50 = v[v.len().div_ceil(2) - 1];
    (mean, p50, v[v.len() - 1])
}

fn stats_json((mean, p50, max): (f64, f64, f64)) -> Value {
    json!({ "mean": round(mean), "p50": round(p50), "max": round(max) })
}

fn report(args: &Args, apdu: &RoundTrips, done: &[Enrollment], serve_total: Option<f64>) {
    let n = done.len() as f64;
    let mean_of = |f: &dyn Fn(&Enrollment) -> f64| done.iter().map(f).sum::<f64>() / n;
    let wall = stats(done.iter().map(|e| ms(e.wall)));
    let machine = stats(done.iter().map(|e| e.cpu.ours() * 1e3));
    let station = stats(done.iter().map(|e| e.station_ms));
    let pass = machine.2 < TARGET_MS;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    out!(
        "f4: {} ({} on ID cards, {} on SIM cards):",
        enrollments(done.len()),
        done.iter().filter(|e| e.kind == CardKind::IdCard).count(),
        done.iter().filter(|e| e.kind == CardKind::Sim).count()
    );
    out!(
        "f4:   wall time of nuc-station     mean {:7.1} ms, p50 {:7.1} ms, max {:7.1} ms",
        wall.0,
        wall.1,
        wall.2
    );
    out!(
        "f4:   station's own total (millis)  mean {:7.1} ms, p50 {:7.1} ms, max {:7.1} ms \
         (its 8 steps; the rest of the wall time, mean {:.1} ms, is process start, operator \
         token login, TLS connection, exit)",
        station.0,
        station.1,
        station.2,
        wall.0 - station.0
    );
    out!(
        "f4:   machine time                  mean {:7.1} ms, p50 {:7.1} ms, max {:7.1} ms",
        machine.0,
        machine.1,
        machine.2
    );
    let per = |f: &dyn Fn(&Cpu) -> f64| mean_of(&|e| f(&e.cpu) * 1e3);
    out!(
        "f4:     of which (mean CPU): nuc-station {:.1} ms, nuc serve {:.1} ms, card-sim {:.1} ms, \
         pcscd {:.1} ms; not counted: nuc-registry (the registry's stand-in) {:.1} ms",
        per(&|c| c.station),
        per(&|c| c.serve),
        per(&|c| c.card_sim),
        per(&|c| c.pcscd),
        per(&|c| c.registry)
    );
    let in_windows: f64 = done.iter().map(|e| e.cpu.serve).sum();
    let serve_between = serve_total.map(|t| (t - in_windows).max(0.0) * 1e3 / n);
    let machine_busy = mean_of(&|e| e.cpu.machine * 1e3);
    let others = mean_of(&|e| (e.cpu.machine - e.cpu.ours() - e.cpu.registry).max(0.0) * 1e3);
    let window_s: f64 = done.iter().map(|e| e.cpu.window).sum();
    let busy_pct = (mean_of(&|e| e.cpu.machine) * n / (window_s * cpus as f64) * 100.0).min(100.0);
    out!(
        "f4:     nuc serve between enrollments (outbox, timers; not counted) {}; the whole \
         machine ({cpus} CPUs) was busy {:.1} ms per enrollment, ~{:.0}% of its capacity, of \
         which other processes (not ours) {:.1} ms",
        serve_between.map_or_else(|| "?".into(), |s| format!("{s:.1} ms per enrollment")),
        machine_busy,
        busy_pct,
        others
    );
    let steps: Vec<f64> = (0..STEPS.len())
        .map(|i| mean_of(&|e| e.steps_ms[i]))
        .collect();
    out!("f4:   the station's steps (mean ms):");
    for ((name, what), ms) in STEPS.iter().zip(&steps) {
        out!("f4:     {name:<9} {ms:7.1} ms  {what}");
    }
    let apdus = stats(done.iter().map(|e| e.apdus as f64));
    let before_write = mean_of(&|e| e.apdus_before_write as f64);
    let apdu_mean_us = apdu.elapsed.as_secs_f64() * 1e6 / apdu.latencies.len() as f64;
    out!(
        "f4:   APDUs per enrollment: mean {:.1} (min {:.0}, max {:.0}), {:.1} before the write; \
         at {:.1} us per round trip that is {:.1} ms of round trips alone",
        apdus.0,
        done.iter().map(|e| e.apdus).min().unwrap_or(0),
        apdus.2,
        before_write,
        apdu_mean_us,
        apdus.0 * apdu_mean_us / 1e3
    );
    for kind in [CardKind::IdCard, CardKind::Sim] {
        let of: Vec<&Enrollment> = done.iter().filter(|e| e.kind == kind).collect();
        if of.is_empty() {
            continue;
        }
        let w = stats(of.iter().map(|e| ms(e.wall)));
        let m = stats(of.iter().map(|e| e.cpu.ours() * 1e3));
        out!(
            "f4:   {:<8}: {}, wall mean {:.1} ms, machine time mean {:.1} ms, max {:.1} ms",
            kind.name(),
            enrollments(of.len()),
            w.0,
            m.0,
            m.2
        );
    }
    out!(
        "f4: largest machine time of one enrollment {:.1} ms (mean {:.1} ms) against < {TARGET_MS:.0} \
         ms: {}",
        machine.2,
        machine.0,
        if pass { "PASS" } else { "MISS" }
    );

    let apdu_cpu = |s: Option<f64>| s.map(|s| round(s * 1e6 / apdu.latencies.len() as f64));
    let step_json: serde_json::Map<String, Value> = STEPS
        .iter()
        .zip(&steps)
        .map(|((name, _), ms)| ((*name).to_owned(), json!(round(*ms))))
        .collect();
    let kind_json = |kind: CardKind| {
        let of: Vec<&Enrollment> = done.iter().filter(|e| e.kind == kind).collect();
        json!({
            "count": of.len(),
            "wall_ms": stats_json(stats(of.iter().map(|e| ms(e.wall)))),
            "machine_ms": stats_json(stats(of.iter().map(|e| e.cpu.ours() * 1e3))),
        })
    };
    out!(
        "{}",
        json!({
            "bench": "f4-enrollment-pcscd-vpcd",
            "apdu_round_trips": {
                "count": apdu.latencies.len(),
                "per_s": round(apdu.per_second()),
                "latency_us": {
                    "p50": round(apdu.percentile_us(50.0)),
                    "p99": round(apdu.percentile_us(99.0)),
                    "max": round(apdu.percentile_us(100.0)),
                },
                "cpu_us_per_apdu": {
                    "pcscd": apdu_cpu(apdu.cpu.pcscd),
                    "card_sim": apdu_cpu(apdu.cpu.card_sim),
                    "client": apdu_cpu(apdu.cpu.client),
                },
            },
            "count": args.f4_count,
            "wall_ms": stats_json(wall),
            "station_millis": stats_json(station),
            "machine_ms": stats_json(machine),
            "machine_ms_mean_by_process": {
                "nuc_station": round(per(&|c| c.station)),
                "nuc_serve": round(per(&|c| c.serve)),
                "card_sim": round(per(&|c| c.card_sim)),
                "pcscd": round(per(&|c| c.pcscd)),
            },
            "not_counted_ms_mean": {
                "nuc_registry": round(per(&|c| c.registry)),
                "nuc_serve_between": serve_between.map(round),
                "other_processes": round(others),
            },
            "steps_ms_mean": step_json,
            "apdus_per_enrollment": stats_json(apdus),
            "apdus_before_write_mean": round(before_write),
            "by_card": { "id_card": kind_json(CardKind::IdCard), "sim": kind_json(CardKind::Sim) },
            "cpus": cpus,
            "machine_busy_pct": round(busy_pct),
            "target_machine_ms": TARGET_MS,
            "pass": pass,
        })
    );
}

// --------------------------------------------------------------------------------- /proc

/// The pids of the processes whose command name is `comm`.
fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// On-CPU nanoseconds so far of every live thread of some processes, by thread id: the first
/// field of `/proc/PID/task/TID/schedstat`, the scheduler's own count (user and system
/// together, to the nanosecond; `/proc/PID/stat` counts in clock ticks of 10 ms, as long as a
/// whole enrollment's share of some processes).
struct Threads(HashMap<u32, u64>);

impl Threads {
    /// `None` if a process is gone or its threads' times cannot be read.
    fn of(pids: &[u32]) -> Option<Threads> {
        let mut times = HashMap::new();
        for pid in pids {
            let mut seen = false;
            for task in std::fs::read_dir(format!("/proc/{pid}/task"))
                .ok()?
                .flatten()
            {
                let Some(tid) = task
                    .file_name()
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok())
                else {
                    continue;
                };
                // A thread that ended meanwhile has no schedstat any more.
                let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                    continue;
                };
                if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    times.insert(tid, ns);
                    seen = true;
                }
            }
            if !seen {
                return None;
            }
        }
        Some(Threads(times))
    }

    /// CPU seconds used since `earlier`: a thread started meanwhile counts in full; a thread
    /// that ended meanwhile is not seen (in practice: idle pool threads timing out).
    fn since(&self, earlier: &Threads) -> f64 {
        let ns: u64 = self
            .0
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
    }
}

/// Until `stop`, every millisecond: the on-CPU nanoseconds of the threads of `pids` that are
/// not in `known`, as last seen. pcscd serves each client's PC/SC context in a thread of its
/// own, which ends when the client (the station) goes: its time is then nowhere to be read
/// to the nanosecond, so it is read while it lives (what it does in its last millisecond,
/// closing the context, is lost).
fn watch_new_threads(pids: &[u32], known: &Threads, stop: &AtomicBool) -> HashMap<u32, u64> {
    let mut seen = HashMap::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Some(tid) = task
                    .file_name()
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok())
                else {
                    continue;
                };
                if known.0.contains_key(&tid) {
                    continue;
                }
                if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                {
                    seen.insert(tid, ns);
                }
            }
        }
        if stopping {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// bash's `time` around `nuc-station` (`bash -c TIMED bash STATION ARGS...`): the station's own
/// CPU time comes from `getrusage(RUSAGE_CHILDREN)` once bash has waited for it, exact (to the
/// nanosecond in the kernel, printed to the millisecond) and whole, threads and all, which
/// `/proc` cannot give for a process that has ended. The line also has the wall time from
/// fork to exit. bash's own part in it (the fork) is well under a millisecond.
const TIMED: &str = r#"TIMEFORMAT="nuc-bench-time %3R %3U %3S"; time "$@""#;

/// The wall time and CPU seconds (user + system) of the station, from [`TIMED`]'s last line.
fn timed(stderr: &str) -> Result<(Duration, f64)> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("nuc-bench-time "))
        .context("bash's time reported nothing")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bash's time said {line:?}"))?;
    ensure!(v.len() == 3, "bash's time said {line:?}");
    Ok((Duration::from_secs_f64(v[0]), v[1] + v[2]))
}
