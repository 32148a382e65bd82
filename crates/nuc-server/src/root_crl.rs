//! The root CA's CRL: signed by a ceremony (`nuc root crl`, and `nuc init` when the root key is
//! born), written to `HOME/ca/root.crl` where the service serves `/crl/root.crl`, and audited
//! (`crl.published`, object `crl:root`). The service reads the file to say when the next
//! ceremony is due; it signs one itself only in a home with `[publication] root_crl_by =
//! "service"`.
//!
//! This module must never open the root key itself (its caller's CA was opened with it or
//! without it), give a root CRL a number that is not above every earlier one, or leave a
//! half-written CRL where relying parties fetch it.

use std::io::Write;
use std::path::{Path, PathBuf};

use der::Decode;
use nuc_ca::Home;
use nuc_core::ReasonCode;
use nuc_publisher::CrlContext;
use nuc_publisher::crl::{self, PublishError};
use nuc_store::{AuditEntry, AuditLog, StoreError};

/// Days from thisUpdate to nextUpdate of a root CRL unless the ceremony says otherwise.
pub const DEFAULT_NEXT_UPDATE_DAYS: i64 = 365;
/// The longest a root CRL may be valid: the CA/Browser Forum's Baseline Requirements (§4.9.7)
/// allow at most 12 months for the CRLs of a root.
pub const MAX_NEXT_UPDATE_DAYS: i64 = 365;
/// Days before nextUpdate from which the next root CRL is due (`[publication]
/// root_crl_due_days`).
pub const DEFAULT_DUE_DAYS: i64 = 30;

const AUDIT_OBJECT: &str = "crl:root";

/// Why a root CRL was not made, or the one in the home cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RootCrlError {
    #[error("next-update-days: {0}")]
    NextUpdateDays(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The CRL in the home is not one a ceremony can follow: its number is unknown.
    #[error(
        "{path}: not a readable root CRL ({reason}); move it away to start a new sequence above \
         the numbers in the audit log"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("root CRL: {0}")]
    Publish(#[from] PublishError),
    #[error("root CRL: audit log: {0}")]
    Audit(#[from] StoreError),
}

impl RootCrlError {
    pub fn reason(&self) -> ReasonCode {
        match self {
            RootCrlError::NextUpdateDays(_) => ReasonCode::InvalidArgument,
            RootCrlError::Unreadable { .. } => ReasonCode::CaState,
            RootCrlError::Publish(PublishError::Hsm(e)) => e.reason(),
            RootCrlError::Publish(PublishError::Store(_)) | RootCrlError::Audit(_) => {
                ReasonCode::StorageFailure
            }
            RootCrlError::Publish(_) | RootCrlError::Io { .. } => ReasonCode::Internal,
        }
    }
}

/// The root CRL a home serves, as far as its due date and numbering need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
}

/// A root CRL just made.
#[derive(Debug, Clone)]
pub struct Made {
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
    pub sha256: String,
    pub path: PathBuf,
}

/// Where the home keeps the root CRL it serves.
pub fn path(home: &Home) -> PathBuf {
    home.ca_dir().join("root.crl")
}

/// The root CRL the home serves now; `None` when there is none.
pub fn current(home: &Home) -> Result<Option<Current>, RootCrlError> {
    let path = path(home);
    let der = match std::fs::read(&path) {
        Ok(der) => der,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RootCrlError::Io { path, source }),
    };
    parse(&der)
        .map(Some)
        .map_err(|reason| RootCrlError::Unreadable { path, reason })
}

fn parse(der: &[u8]) -> Result<Current, String> {
    use const_oid::db::rfc5280::ID_CE_CRL_NUMBER;
    let crl = <x509_cert::crl::CertificateList>::from_der(der).map_err(|e| e.to_string())?;
    let tbs = &crl.tbs_cert_list;
    let next = tbs.next_update.ok_or("it has no nextUpdate")?;
    let number = tbs
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_CE_CRL_NUMBER)
        .ok_or("it has no CRL number")?;
    let number = x509_cert::ext::pkix::CrlNumber::from_der(number.extn_value.as_bytes())
        .map_err(|e| format!("CRL number: {e}"))?;
    let bytes = number.0.as_bytes();
    if bytes.len() > 8 {
        return Err("its CRL number is larger than this service makes".into());
    }
    let number = bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
    Ok(Current {
        number,
        this_update: tbs.this_update.to_unix_duration().as_secs() as i64,
        next_update: next.to_unix_duration().as_secs() as i64,
    })
}

/// The highest root CRL number the audit log has recorded: a sequence survives the loss of
/// the file.
fn highest_audited(audit: &dyn AuditLog) -> Result<u64, StoreError> {
    Ok(audit
        .audit_records()?
        .iter()
        .filter(|r| r.action == "crl.published" && r.object == AUDIT_OBJECT)
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.details).ok())
        .filter_map(|d| d.get("number").and_then(|n| n.as_u64()))
        .max()
        .unwrap_or(0))
}

/// Signs the next root CRL with the root key of `crls.ca`, valid `next_update_days` from
/// `now`, numbered above the one served and every one audited (at least `now`, as Unix time),
/// then records it in the audit log and puts it where the service serves it. The audit record
/// comes first: a CRL is never served that the log does not name.
pub fn make(
    home: &Home,
    crls: CrlContext<'_>,
    audit: &dyn AuditLog,
    actor: &str,
    next_update_days: i64,
    now: i64,
) -> Result<Made, RootCrlError> {
    if !(1..=MAX_NEXT_UPDATE_DAYS).contains(&next_update_days) {
        return Err(RootCrlError::NextUpdateDays(format!(
            "{next_update_days} is outside 1..={MAX_NEXT_UPDATE_DAYS} (a root's CRL is valid at \
             most 12 months)"
        )));
    }
    let served = current(home)?.map_or(0, |c| c.number);
    let number = (now.max(0) as u64)
        .max(served + 1)
        .max(highest_audited(audit)? + 1);
    let next_update = now + next_update_days * 86_400;
    let der = crl::root_crl(crls, number, now, next_update)?;
    let path = path(home);
    let tmp = path.with_extension("crl.tmp");
    write_synced(&tmp, &der)?;
    let sha256 = hex::encode(openssl::sha::sha256(&der));
    let audited = audit.audit(&AuditEntry {
        actor: actor.to_owned(),
        action: "crl.published".into(),
        object: AUDIT_OBJECT.into(),
        details: serde_json::json!({ "kind": "root", "number": number, "this_update": now,
            "next_update": next_update, "sha256": sha256 }),
    });
    if let Err(e) = audited {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, &path).map_err(|source| RootCrlError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(Made {
        number,
        this_update: now,
        next_update,
        sha256,
        path,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RootCrlError> {
    let io = |source| RootCrlError::Io {
        path: path.into(),
        source,
    };
    let mut f = crate::private_home::create_file(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}
