//! Putting a card into vpcd's reader for a test or a benchmark: one pcscd per machine, one card
//! at a time on vpcd's fixed port, the `card-sim` binary started and stopped by its pid.
//!
//! - [`lock_vpcd`] serialises every user of the port: a process-wide mutex for tests of one
//!   binary and a file lock for separate processes (a test run and a benchmark, say).
//! - [`Pcscd::ensure`] uses the pcscd already running, or starts `pcscd -f` and stops that one
//!   (by pid, never by name) when dropped. pcscd must run as root to open its socket.
//! - [`SimCard`] is one `card-sim` process: inserted when it connects, pulled out when it exits
//!   or is killed.

use std::fs::File;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::profile::CardKind;
use crate::vpcd::Removal;

/// The start of the name pcscd gives vpcd's readers ("Virtual PCD 00 00" for the first, the
/// one on port 35963).
pub const VPCD_READER_PREFIX: &str = "Virtual PCD";

/// vpcd's reader on port 35963 among `readers` (pcscd's names): the first of vpcd's readers.
pub fn vpcd_reader(readers: &[String]) -> Option<&String> {
    readers
        .iter()
        .filter(|r| r.starts_with(VPCD_READER_PREFIX))
        .min()
}

/// pcsc-lite's socket; `PCSCLITE_CSOCK_NAME` moves it, as for libpcsclite.
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";

/// Holds vpcd's port for one user at a time.
pub struct VpcdLock {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

/// Waits for vpcd's port to be ours.
pub fn lock_vpcd() -> io::Result<VpcdLock> {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    // A test that panicked while holding the lock has released the port all the same.
    let guard = IN_PROCESS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = std::env::temp_dir().join("nuc-card-vpcd-35963.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(VpcdLock {
        _file: file,
        _guard: guard,
    })
}

fn pcscd_socket() -> PathBuf {
    std::env::var_os("PCSCLITE_CSOCK_NAME").map_or_else(|| PCSCD_SOCKET.into(), PathBuf::from)
}

/// Whether a pcscd answers on its socket.
pub fn pcscd_running() -> bool {
    UnixStream::connect(pcscd_socket()).is_ok()
}

/// The pcscd the tests use; stopped on drop only if it was started here.
pub struct Pcscd {
    child: Option<Child>,
}

impl Pcscd {
    /// Uses the running pcscd, or starts `pcscd -f`; either way waits until pcscd lists vpcd's
    /// reader. Its log goes to `nuc-card-pcscd.log` in the temporary directory.
    ///
    /// A pcscd whose socket answers is not enough: vpcd's driver adds its reader only if it could
    /// bind port 35963, and a pcscd started while an earlier one (or a socket-activated one on
    /// its way out) still held the port runs without any reader — every card wait then ends in
    /// "no card reader". A pcscd started here that shows no reader is stopped and started once
    /// more; the machine's own pcscd is never touched, the error says what to look at.
    pub fn ensure(timeout: Duration) -> io::Result<Pcscd> {
        let deadline = Instant::now() + timeout;
        if pcscd_running() {
            wait_for_vpcd_reader(deadline).map_err(|e| {
                io::Error::other(format!(
                    "the machine's pcscd is running but lists no vpcd reader ({e}); is port 35963 \
                     held by another process (`ss -ltnp 'sport = 35963'`)?"
                ))
            })?;
            return Ok(Pcscd { child: None });
        }
        let mut child = start_pcscd(deadline)?;
        // Half of what is left for the first pcscd, the rest for a second one if needed.
        let first = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        if wait_for_vpcd_reader(first).is_ok() {
            return Ok(Pcscd { child: Some(child) });
        }
        stop(&mut child);
        std::thread::sleep(Duration::from_millis(200));
        let mut child = start_pcscd(deadline)?;
        match wait_for_vpcd_reader(deadline) {
            Ok(()) => Ok(Pcscd { child: Some(child) }),
            Err(e) => {
                stop(&mut child);
                Err(io::Error::other(format!(
                    "pcscd started twice and listed no vpcd reader ({e}); see {} and whether \
                     port 35963 is held by another process",
                    pcscd_log().display()
                )))
            }
        }
    }

    /// The pid of the pcscd started here, if this one was.
    pub fn started_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop(child);
        }
    }
}

fn pcscd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NUC_PCSCD") {
        return p.into();
    }
    // Root's PATH has sbin; a plain user's may not.
    let sbin = Path::new("/usr/sbin/pcscd");
    if sbin.exists() {
        sbin.into()
    } else {
        "pcscd".into()
    }
}

fn pcscd_log() -> PathBuf {
    std::env::temp_dir().join("nuc-card-pcscd.log")
}

/// vpcd's port (its reader.conf CHANNELID, 0x8C7B).
const VPCD_PORT: u16 = 35963;

/// Waits until nothing listens on vpcd's port: a pcscd (ours, stopped a moment ago, or one on
/// its way out) still holding it would make the next one start without the reader. Probed by
/// binding it on loopback for an instant (Linux refuses that while any address holds the port).
fn wait_for_vpcd_port_free(deadline: Instant) -> io::Result<()> {
    loop {
        match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, VPCD_PORT)) {
            Ok(probe) => {
                drop(probe);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(io::Error::other(format!(
                    "port {VPCD_PORT} (vpcd's) is still held ({e}): see `ss -ltnp 'sport = {VPCD_PORT}'`"
                )));
            }
        }
    }
}

/// Starts `pcscd -f`, once vpcd's port is free, and waits until its socket answers.
fn start_pcscd(deadline: Instant) -> io::Result<Child> {
    wait_for_vpcd_port_free(deadline)?;
    let log = File::create(pcscd_log())?;
    let mut child = Command::new(pcscd_binary())
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting pcscd: {e}")))?;
    loop {
        if pcscd_running() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "pcscd exited at start ({status}); is another one running, and are we root?"
            )));
        }
        if Instant::now() >= deadline {
            stop(&mut child);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "pcscd did not start",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until pcscd lists vpcd's reader; the last thing pcscd said otherwise.
fn wait_for_vpcd_reader(deadline: Instant) -> Result<(), String> {
    loop {
        let seen = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(|e| format!("connect to pcscd: {e}"))
            .and_then(|ctx| match ctx.list_readers_owned() {
                Ok(names) => Ok(names
                    .into_iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()),
                Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
                Err(e) => Err(format!("list readers: {e}")),
            });
        let last = match seen {
            Ok(readers) if vpcd_reader(&readers).is_some() => return Ok(()),
            Ok(readers) if readers.is_empty() => "no reader at all".to_owned(),
            Ok(readers) => format!("only {readers:?}"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM by pid (through kill(1): no `unsafe` here), so that the process cleans up after
/// itself; SIGKILL if it is still there after 3 seconds.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Where the `card-sim` binary is: `CARD_SIM_BIN`, or beside the running executable (cargo puts
/// test and example executables one directory below the binaries of the same profile).
pub fn locate_binary() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CARD_SIM_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("card-sim");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "card-sim binary not found beside this executable: `cargo build -p card-sim` \
         (with the same profile) or set CARD_SIM_BIN",
    ))
}

/// How a [`SimCard`] behaves once inserted.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub removal: Removal,
    /// vpcd's address.
    pub vpcd: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            removal: Removal::default(),
            vpcd: crate::vpcd::DEFAULT_ADDR.into(),
        }
    }
}

/// One running `card-sim`: the card is in the reader while it runs.
pub struct SimCard {
    child: Child,
}

impl SimCard {
    /// Personalises a card into `state` (replacing any card there).
    pub fn personalise(
        bin: &Path,
        state: &Path,
        kind: CardKind,
        pin: &str,
        serial: Option<&str>,
    ) -> io::Result<()> {
        let mut cmd = Command::new(bin);
        cmd.arg("--state")
            .arg(state)
            .args(["--personalise", "--force", "--kind"]);
        cmd.arg(match kind {
            CardKind::IdCard => "id-card",
            CardKind::Sim => "sim",
        });
        cmd.env("CARD_SIM_PIN", pin);
        if let Some(s) = serial {
            cmd.args(["--serial", s]);
        }
        let out = cmd.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "card-sim --personalise: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Starts `card-sim` on `state`: it connects to vpcd, and pcscd sees a card at its next
    /// presence poll.
    pub fn insert(bin: &Path, state: &Path, options: &SimOptions) -> io::Result<SimCard> {
        let mut cmd = Command::new(bin);
        cmd.arg("--state")
            .arg(state)
            .args(["--vpcd", &options.vpcd, "--quiet"]);
        if let Some(n) = options.removal.after_apdus {
            cmd.args(["--remove-after", &n.to_string()]);
            if options.removal.lose_answer {
                cmd.arg("--lose-answer");
            }
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
        Ok(SimCard { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pulls the card out now: the process is killed (SIGKILL, like a hand yanking the card,
    /// whatever it was doing) and reaped.
    pub fn pull_out(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the card to leave by itself (`--remove-after`), at most `timeout`.
    pub fn wait_gone(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "card-sim still running",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SimCard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
