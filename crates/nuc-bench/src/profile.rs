//! Where a process's CPU goes, by step of the service: `perf record` with DWARF call stacks on
//! the running `nuc serve`, then each sample given to the first step its stack names, walking
//! from the innermost frame out (issue 15, item 4).
//!
//! Why sampling and not timers in the service: TLS and gRPC framing run inside rustls, hyper
//! and h2, where the service has no place to put a timer, and a timer per step would cost on
//! every call what it measures. A sample's stack says both the code that ran (a SHA-256 block,
//! a bignum multiplication) and on whose behalf (a CMS verification, an HSM signature, a TLS
//! record): the innermost frame that belongs to a known step decides. OpenSSL's libcrypto
//! serves SoftHSM2's signatures, the CMS verification and the CSR checks alike; only the
//! frames above it tell them apart.
//!
//! Sampling costs the profiled process some speed (perf copies 8 KiB of stack per sample), so
//! the rates of a profiled run are not the benchmark's figures: the profile is an explanation.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// Samples per second and thread: low enough that the stacks stay a few MB a second.
const FREQUENCY: &str = "499";

/// Steps that own everything beneath them, wherever they appear in a stack: the HSM's
/// signatures (SoftHSM2 runs inside the process, on OpenSSL) and the database connection of
/// PostgreSQL (its TLS, its protocol, its own async runtime).
const OWNERS: &[(&str, &[&str])] = &[
    (HSM_STEP, &["softhsm", "nuc_hsm::"]),
    (
        DATABASE_STEP,
        &["tokio_postgres::", "postgres::", "postgres_protocol::"],
    ),
];

/// The steps, each with the frame names (substrings of a demangled symbol, or of the shared
/// object) that put a sample in it. Within one frame the first step listed that matches wins.
const STEPS: &[(&str, &[&str])] = &[
    ("audit", &["::audit::", "audit_tree", "nuc_tlog::"]),
    ("storage", &["sqlite3", "rusqlite::", "nuc_store"]),
    ("CMS verification", &["nuc_cms::", "nuc_verify::"]),
    (
        "registry client",
        &[
            "nuc_registry::",
            "nuc_ra::registry",
            "hyper_util::client",
            "hyper::client",
        ],
    ),
    ("certificate (CSR check, TBS, lint)", &["nuc_ca::"]),
    (
        "TLS",
        &["rustls::", "ring::", "ring_core_", "tokio_rustls::"],
    ),
    (
        "gRPC and HTTP/2",
        &[
            "h2::",
            "tonic::",
            "prost::",
            "hyper::",
            "tower::",
            "http::",
            "nuc_api::",
            "axum::",
        ],
    ),
    (
        "notifications (outbox, mail)",
        &["lettre::", "outbox", "mail"],
    ),
    (
        "request logic (RA, server)",
        &["nuc_ra::", "nuc_server::", "nuc_payloads::", "nuc_core::"],
    ),
];

/// Steps that serve every other one: a sample counts here only when no step above claims any
/// frame of its stack.
const GENERIC: &[(&str, &[&str])] = &[
    ("logs and metrics", &["tracing", "metrics"]),
    ("async runtime", &["tokio::"]),
];

/// The step of the HSM's signatures (SoftHSM2 here runs inside the process).
pub(crate) const HSM_STEP: &str = "HSM signatures";

/// The step of PostgreSQL's client connection.
const DATABASE_STEP: &str = "storage: PostgreSQL connection (TLS, protocol)";

/// The label of samples no step claims (allocator, libc, thread start, unresolved frames).
pub(crate) const OTHER: &str = "other (allocator, libc, kernel without a known caller)";

/// A `perf record` running on one process.
pub(crate) struct Profiler {
    child: Child,
    data: PathBuf,
}

impl Profiler {
    /// Starts sampling process `pid` into `dir`; `None` (with the reason on stderr) when perf is
    /// missing or refuses, so that a benchmark still runs without it.
    pub(crate) fn start(pid: u32, dir: &Path) -> Option<Self> {
        let data = dir.join("perf.data");
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                FREQUENCY,
                "--call-graph",
                "dwarf,8192",
                "-p",
            ])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match child {
            Ok(child) => {
                // perf needs a moment to attach to every thread before the load starts.
                std::thread::sleep(std::time::Duration::from_millis(500));
                Some(Self { child, data })
            }
            Err(e) => {
                eprintln!("profile: perf could not be started ({e}); no split by step");
                None
            }
        }
    }

    /// Stops sampling (SIGINT, as Ctrl-C would) and splits the samples by step.
    pub(crate) fn finish(self) -> Result<Split> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .context("kill -INT perf")?;
        if !status.success() {
            bail!("could not stop perf");
        }
        let out = self.child.wait_with_output().context("wait for perf")?;
        if !self.data.exists() {
            bail!(
                "perf wrote no data: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut script = Command::new("perf")
            .args(["script", "-F", "comm,tid,ip,sym,dso", "-i"])
            .arg(&self.data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("perf script")?;
        let split = Split::read(BufReader::new(
            script.stdout.take().context("perf script stdout")?,
        ))?;
        script.wait().context("perf script")?;
        let _ = std::fs::remove_file(&self.data);
        Ok(split)
    }
}

/// Samples by step.
#[derive(Debug, Default)]
pub(crate) struct Split {
    pub(crate) samples: BTreeMap<&'static str, u64>,
    pub(crate) total: u64,
}

impl Split {
    /// Reads `perf script` output: a sample is a header line, then one line per frame
    /// (innermost first), then an empty line.
    fn read(input: impl BufRead) -> Result<Self> {
        let mut split = Split::default();
        let mut frames: Vec<String> = Vec::new();
        let mut in_sample = false;
        for line in input.lines() {
            let line = line.context("read perf script")?;
            if line.trim().is_empty() {
                if in_sample {
                    split.add(classify(&frames));
                }
                frames.clear();
                in_sample = false;
            } else if line.starts_with(|c: char| c.is_whitespace()) {
                frames.push(line);
            } else {
                if in_sample {
                    split.add(classify(&frames));
                    frames.clear();
                }
                in_sample = true;
            }
        }
        if in_sample {
            split.add(classify(&frames));
        }
        Ok(split)
    }

    fn add(&mut self, step: &'static str) {
        *self.samples.entry(step).or_default() += 1;
        self.total += 1;
    }

    /// The share of the samples in `step`.
    pub(crate) fn share(&self, step: &str) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.samples.get(step).copied().unwrap_or(0) as f64 / self.total as f64
    }

    /// The steps in the order of [`STEPS`], then [`OTHER`].
    pub(crate) fn steps() -> impl Iterator<Item = &'static str> {
        OWNERS
            .iter()
            .chain(STEPS)
            .chain(GENERIC)
            .map(|(name, _)| *name)
            .chain([OTHER])
    }
}

/// The step of one sample's stack (frames innermost first): an owner anywhere in it, else
/// the innermost frame of a step, else the innermost frame of a generic step.
fn classify(frames: &[String]) -> &'static str {
    let matches = |frame: &String, marks: &[&str]| marks.iter().any(|m| frame.contains(m));
    for (step, marks) in OWNERS {
        if frames.iter().any(|f| matches(f, marks)) {
            return step;
        }
    }
    for table in [STEPS, GENERIC] {
        for frame in frames {
            if let Some((step, _)) = table.iter().find(|(_, marks)| matches(frame, marks)) {
                return step;
            }
        }
    }
    OTHER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_known_frame_decides() {
        let script = "\
nuc 101/102\n\
\t7f01 bn_mul_mont (/usr/lib/x86_64-linux-gnu/libcrypto.so.3)\n\
\t7f02 SoftHSM::C_Sign (/usr/lib/softhsm/libsofthsm2.so)\n\
\t55a0 nuc_ca::ca::Ca::complete (/x/nuc)\n\
\n\
nuc 101/103\n\
\t7f01 bn_mul_mont (/usr/lib/x86_64-linux-gnu/libcrypto.so.3)\n\
\t55a1 nuc_cms::verify::verify (/x/nuc)\n\
\t55a2 tokio::runtime::task::raw::poll (/x/nuc)\n\
\n\
nuc 101/103\n\
\tffff entry_SYSCALL_64 ([kernel.kallsyms])\n\
\t55a3 <tokio_rustls::server::TlsStream<IO> as tokio::io::AsyncWrite>::poll_write (/x/nuc)\n\
\n\
nuc 101/104\n\
\t7f09 malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
\n\
nuc 101/105\n\
\t7f0a aes_gcm_enc (/x/nuc)\n\
\t55a4 rustls::conn::ConnectionCommon::write_tls (/x/nuc)\n\
\t55a5 tokio_postgres::connection::Connection::poll (/x/nuc)\n\
\n\
nuc 101/106\n\
\tffff epoll_wait ([kernel.kallsyms])\n\
\t55a6 tokio::runtime::io::driver::Driver::turn (/x/nuc)\n\
\t55a7 h2::proto::connection::Connection::poll (/x/nuc)\n\
";
        let split = Split::read(script.as_bytes()).unwrap();
        assert_eq!(split.total, 6);
        assert_eq!(split.samples[HSM_STEP], 1);
        assert_eq!(split.samples["CMS verification"], 1);
        assert_eq!(split.samples["TLS"], 1);
        assert_eq!(split.samples[OTHER], 1);
        // TLS under the database connection is the database's; the runtime under h2 is gRPC's.
        assert_eq!(split.samples[DATABASE_STEP], 1);
        assert_eq!(split.samples["gRPC and HTTP/2"], 1);
        assert!((split.share("TLS") - 1.0 / 6.0).abs() < 1e-9);
    }
}
