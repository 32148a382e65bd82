//! `nuc ocsp-signer renew`, `nuc report-signer renew` and `nuc tls renew`: a new OCSP-signer
//! certificate and a new report-signer certificate (each on a new key in the HSM) and a new
//! TLS certificate of the gRPC listener (on a new key in a file), made before the old ones
//! expire, while the service keeps running.
//!
//! This module owns the two commands and the atomic writing of what they put in the home
//! (written to a temporary file beside it, then renamed over the old one). Adopting them
//! inside a running service is [`crate::rollover`]'s: the old certificate keeps answering
//! until the new one is in place.
//!
//! It must never leave a file half-written where the service reads it, write a TLS key
//! readable by anyone but the owner, or put anything in place before the store has recorded
//! it (the OCSP signer: the store is what every instance follows). It never prints key
//! material.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use nuc_ca::{CaError, RootKey};
use nuc_core::ReasonCode;

use crate::cli::{Failure, actor, invalid, open_ca};
use crate::config::Config;

/// `nuc ocsp-signer …`.
#[derive(Subcommand, Debug)]
pub enum OcspSignerCommand {
    /// A new OCSP-signer certificate on a new key in the HSM, recorded in the store in place
    /// of the old one. Running instances adopt it within `[service] reload_secs` (or at once
    /// on SIGHUP) and sign with the old one until then.
    Renew {
        #[arg(long)]
        home: PathBuf,
        /// Validity in days (at most the `ocsp-signer` profile's; default the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
}

/// `nuc report-signer …`.
#[derive(Subcommand, Debug)]
pub enum ReportSignerCommand {
    /// A new report-signer certificate (the NUC's document signer, which signs the
    /// certificate reports) on a new key in the HSM, issued and recorded like any certificate,
    /// named in the store in place of the old one. Running instances adopt it within
    /// `[service] reload_secs` (or at once on SIGHUP) and sign with the old one until then;
    /// the old certificate stays valid (revoke it with `nuc cert revoke` if need be).
    Renew {
        #[arg(long)]
        home: PathBuf,
        /// Validity in days (at most the `report-signer` profile's; default the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
}

impl ReportSignerCommand {
    pub fn home(&self) -> &Path {
        match self {
            ReportSignerCommand::Renew { home, .. } => home,
        }
    }
}

/// `nuc tls …`.
#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// A new key and certificate for this home's gRPC listener (`[grpc] tls_key`,
    /// `tls_cert`). The running service uses them for new connections within `[service]
    /// reload_secs` (or at once on SIGHUP); open connections keep theirs.
    Renew {
        #[arg(long)]
        home: PathBuf,
        /// Validity in days (at most the `system` profile's; default the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
}

impl OcspSignerCommand {
    pub fn home(&self) -> &Path {
        match self {
            OcspSignerCommand::Renew { home, .. } => home,
        }
    }
}

impl TlsCommand {
    pub fn home(&self) -> &Path {
        match self {
            TlsCommand::Renew { home, .. } => home,
        }
    }
}

fn check_days(days: Option<u32>) -> Result<(), Failure> {
    match days {
        Some(0) => Err(invalid("days: must be at least 1".into())),
        _ => Ok(()),
    }
}

/// Writes `contents` to `path` as a whole or not at all: a temporary file beside it with
/// `mode` from its creation, synced, then renamed over `path`.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tag = [0u8; 6];
    openssl::rand::rand_bytes(&mut tag).map_err(|e| std::io::Error::other(e.to_string()))?;
    let temp = dir.join(format!(".{name}.{}.tmp", hex::encode(tag)));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure {
        code: ReasonCode::Internal,
        message: format!("{}: {e}", path.display()),
    }
}

pub(crate) fn ocsp_signer(cmd: OcspSignerCommand) -> Result<(), Failure> {
    let OcspSignerCommand::Renew { home, days } = cmd;
    check_days(days)?;
    let config = Config::open(&home).map_err(CaError::from)?;
    let (home, store, ca) = open_ca(&home, RootKey::Offline)?;
    let renewed = ca.renew_ocsp_signer(store.as_ref(), days, &actor())?;
    let path = home.ca_dir().join("ocsp-signer.pem");
    write_atomically(&path, renewed.pem()?.as_bytes(), 0o600).map_err(|e| io_failure(&path, e))?;
    println!(
        "OCSP signer renewed: serial {} (was {}), key {:?} new in the HSM, valid until {}",
        renewed.serial,
        renewed.old_serial,
        renewed.hsm_label,
        nuc_core::time::rfc3339(renewed.not_after)
    );
    println!("certificate: {}", path.display());
    println!(
        "running instances adopt it within {} s ([service] reload_secs) or at once on SIGHUP; they sign with the old one until then",
        config.service.reload_secs
    );
    Ok(())
}

/// This home's copy of the report signer's certificate (`ca/report-signer.pem`), rewritten
/// when it is not `cert_der` already.
pub(crate) fn write_report_signer_pem(ca_dir: &Path, cert_der: &[u8]) -> Result<PathBuf, Failure> {
    let path = ca_dir.join("report-signer.pem");
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, cert_der).map_err(
        |e| Failure {
            code: ReasonCode::Internal,
            message: format!("the report signer's certificate as PEM: {e}"),
        },
    )?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
        write_atomically(&path, pem.as_bytes(), 0o600).map_err(|e| io_failure(&path, e))?;
    }
    Ok(path)
}

pub(crate) fn report_signer(cmd: ReportSignerCommand) -> Result<(), Failure> {
    let ReportSignerCommand::Renew { home, days } = cmd;
    check_days(days)?;
    let config = Config::open(&home).map_err(CaError::from)?;
    let (home, store, ca) = open_ca(&home, RootKey::Offline)?;
    let made = ca.renew_report_signer(store.as_ref(), days, &actor())?;
    let path = write_report_signer_pem(&home.ca_dir(), &made.cert_der)?;
    println!(
        "report signer {}: serial {}{}, key {:?} ({}) new in the HSM, valid until {}",
        if made.old_serial.is_some() {
            "renewed"
        } else {
            "made"
        },
        made.serial,
        made.old_serial
            .as_deref()
            .map(|s| format!(" (was {s}, still valid)"))
            .unwrap_or_default(),
        made.hsm_label,
        made.algorithm,
        nuc_core::time::rfc3339(made.not_after)
    );
    println!("certificate: {}", path.display());
    println!(
        "running instances adopt it within {} s ([service] reload_secs) or at once on SIGHUP; they sign with the old one until then",
        config.service.reload_secs
    );
    Ok(())
}

pub(crate) fn tls(cmd: TlsCommand) -> Result<(), Failure> {
    let TlsCommand::Renew { home, days } = cmd;
    check_days(days)?;
    let config = Config::open(&home).map_err(CaError::from)?;
    let (home, store, ca) = open_ca(&home, RootKey::Offline)?;
    let (key_path, cert_path) = (
        home.dir.join(&config.grpc.tls_key),
        home.dir.join(&config.grpc.tls_cert),
    );
    let identity =
        crate::tls::new_server_identity(&ca, store.as_ref(), &actor(), days).map_err(|e| {
            Failure {
                code: ReasonCode::Internal,
                message: format!("TLS identity of the service: {e}"),
            }
        })?;
    if let Some(dir) = key_path.parent() {
        crate::private_home::create_dir_all(dir).map_err(|e| io_failure(dir, e))?;
    }
    // Key first, then certificate: a service looking in between sees a pair that does not
    // match, refuses it and keeps the old one until the next look.
    write_atomically(&key_path, &identity.key_pem, 0o600).map_err(|e| io_failure(&key_path, e))?;
    write_atomically(&cert_path, identity.chain_pem.as_bytes(), 0o600)
        .map_err(|e| io_failure(&cert_path, e))?;
    println!(
        "gRPC TLS certificate renewed: serial {}, new key in {} (0600)",
        identity.serial,
        key_path.display()
    );
    println!("certificate: {}", cert_path.display());
    println!(
        "the running service presents it to new connections within {} s ([service] reload_secs) or at once on SIGHUP",
        config.service.reload_secs
    );
    Ok(())
}
