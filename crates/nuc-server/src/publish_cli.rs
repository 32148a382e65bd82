//! `nuc publish`: the scheduler's client of the PublisherService — the "scheduled CRL
//! publication" caller in its real form (run by `nuc-publish-crls.timer` of the Debian
//! package, or by any other scheduler).
//!
//! It owns the client side only: reading the scheduler's certificate, key and the NUC's root
//! certificate, the mutual-TLS connection, one call, and printing what the service answered
//! (one `key=value` line per CRL) or one error line. It never opens a home, never touches the
//! HSM or the store, and never retries on its own: the timer runs it again at the next tick,
//! and a refusal must be seen, not hidden behind a loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};
use nuc_api::v1::publisher_service_client::PublisherServiceClient;
use nuc_api::v1::{CrlInfo, CrlStatus, GetCrlStatusRequest, PublishCrlsRequest};
use nuc_core::ReasonCode;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::Failure;

/// What `nuc publish` can be asked.
#[derive(Subcommand, Debug)]
pub enum PublishCommand {
    /// Ask the service to sign and publish a complete CRL and a delta CRL now
    /// (PublisherService.PublishCrls, role `scheduler`); prints both.
    Crls {
        #[command(flatten)]
        conn: Connection,
        /// Why, recorded in the audit log with the request (at most 500 characters).
        #[arg(long, default_value = "scheduled publication")]
        reason: String,
    },
    /// Print the CRLs the service serves now, publishing nothing (GetCrlStatus).
    Status {
        #[command(flatten)]
        conn: Connection,
    },
}

/// Where the service is and who the scheduler is.
#[derive(ClapArgs, Debug)]
pub struct Connection {
    /// The service's gRPC address, `https://HOST:PORT` (`[grpc] listen`).
    #[arg(long, default_value = "https://127.0.0.1:8471")]
    endpoint: String,
    /// The scheduler's certificate (PEM): a `system` certificate with role `scheduler`.
    #[arg(long)]
    cert: PathBuf,
    /// The private key of --cert (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The NUC's root CA certificate (PEM; HOME/ca/root.pem), to trust the service.
    #[arg(long)]
    ca: PathBuf,
    /// The name in the service's TLS certificate (`nuc init` makes it for `localhost`).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Seconds to wait for the connection and then for the answer (signing in the HSM).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{what}: cannot read {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("endpoint: {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("timeout_secs: must be between 1 and 3600, not {0}")]
    Timeout(u64),
    #[error("{endpoint}: unreachable: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// The service answered with a refusal; `message` is its own text.
    #[error("{endpoint}: refused: {message}")]
    Refused {
        endpoint: String,
        reason: ReasonCode,
        message: String,
    },
    #[error("{endpoint}: the service answered without a complete CRL")]
    NoCompleteCrl { endpoint: String },
}

impl From<PublishError> for Failure {
    fn from(e: PublishError) -> Self {
        let code = match &e {
            PublishError::Read { .. }
            | PublishError::Endpoint { .. }
            | PublishError::Timeout(_) => ReasonCode::InvalidArgument,
            PublishError::Unreachable { .. } => ReasonCode::Unavailable,
            PublishError::Refused { reason, .. } => *reason,
            PublishError::NoCompleteCrl { .. } => ReasonCode::Internal,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// Runs one `nuc publish` command: prints the CRLs on success.
pub fn run(cmd: PublishCommand) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: ReasonCode::Internal,
            message: format!("cannot start the async runtime: {e}"),
        })?;
    let (status, published) = match cmd {
        PublishCommand::Crls { conn, reason } => {
            let status = runtime.block_on(async {
                let (mut client, endpoint) = connect(&conn).await?;
                let status = client
                    .publish_crls(PublishCrlsRequest { reason })
                    .await
                    .map_err(|s| refused(&endpoint, &s))?
                    .into_inner();
                if status.full.is_none() {
                    return Err(PublishError::NoCompleteCrl { endpoint });
                }
                Ok(status)
            })?;
            (status, true)
        }
        PublishCommand::Status { conn } => {
            let status = runtime.block_on(async {
                let (mut client, endpoint) = connect(&conn).await?;
                client
                    .get_crl_status(GetCrlStatusRequest {})
                    .await
                    .map_err(|s| refused(&endpoint, &s))
                    .map(tonic::Response::into_inner)
            })?;
            (status, false)
        }
    };
    print!("{}", report(&status, published));
    Ok(())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, PublishError> {
    std::fs::read(path).map_err(|source| PublishError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The mutual-TLS channel to the service's PublisherService, and the endpoint as given (for
/// messages).
async fn connect(
    conn: &Connection,
) -> Result<(PublisherServiceClient<Channel>, String), PublishError> {
    let endpoint = conn.endpoint.clone();
    let bad = |reason: &str| PublishError::Endpoint {
        endpoint: endpoint.clone(),
        reason: reason.into(),
    };
    // TLS only: the service refuses plaintext outside development, and a scheduler that
    // silently fell back to plaintext would send its calls unauthenticated.
    if !endpoint.starts_with("https://") {
        return Err(bad("must be https://HOST:PORT"));
    }
    if conn.timeout_secs == 0 || conn.timeout_secs > 3600 {
        return Err(PublishError::Timeout(conn.timeout_secs));
    }
    let timeout = Duration::from_secs(conn.timeout_secs);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca", &conn.ca)?))
        .identity(Identity::from_pem(
            read("cert", &conn.cert)?,
            read("key", &conn.key)?,
        ))
        .domain_name(conn.server_name.clone());
    let channel = Endpoint::from_shared(endpoint.clone())
        .map_err(|e| bad(&chain(&e)))?
        .tls_config(tls)
        .map_err(|e| bad(&format!("TLS settings: {}", chain(&e))))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| PublishError::Unreachable {
            endpoint: endpoint.clone(),
            detail: chain(&e),
        })?;
    Ok((PublisherServiceClient::new(channel), endpoint))
}

/// An error with its causes, `outer: inner: …` (tonic's transport error alone says only
/// "transport error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// A refusal of the service as ours: its reason code (metadata `nuc-reason`, else from the
/// gRPC code) and its own message without the repeated code.
fn refused(endpoint: &str, s: &tonic::Status) -> PublishError {
    let named = s
        .metadata()
        .get(nuc_api::REASON_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(reason_named);
    let reason = named.unwrap_or(match s.code() {
        Code::InvalidArgument => ReasonCode::InvalidArgument,
        Code::PermissionDenied | Code::Unauthenticated => ReasonCode::PermissionDenied,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ReasonCode::Unavailable,
        _ => ReasonCode::Internal,
    });
    let text = s.message();
    let text = text
        .strip_prefix(reason.as_str())
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(text);
    let message = if named.is_some() {
        text.to_string()
    } else {
        // No reason from the service (e.g. the TLS layer or a proxy answered): say the gRPC code.
        format!("{:?}: {text}", s.code())
    };
    PublishError::Refused {
        endpoint: endpoint.to_string(),
        reason,
        message,
    }
}

/// The reasons the PublisherService and the authorisation in front of it give.
fn reason_named(name: &str) -> Option<ReasonCode> {
    [
        ReasonCode::InvalidArgument,
        ReasonCode::PermissionDenied,
        ReasonCode::Unavailable,
        ReasonCode::HsmFailure,
        ReasonCode::StorageFailure,
        ReasonCode::Internal,
    ]
    .into_iter()
    .find(|r| r.as_str() == name)
}

/// One line per CRL: `full crl_number=… entries=… this_update=… next_update=… sha256=… url=…`,
/// then `delta … base_crl_number=…`; a CRL not published yet is `full none`.
fn report(status: &CrlStatus, published: bool) -> String {
    fn line(kind: &str, info: Option<&CrlInfo>) -> String {
        let Some(c) = info else {
            return format!("{kind} none\n");
        };
        let base = if c.base_crl_number != 0 {
            format!(" base_crl_number={}", c.base_crl_number)
        } else {
            String::new()
        };
        format!(
            "{kind} crl_number={}{base} entries={} this_update={} next_update={} sha256={} url={}\n",
            c.crl_number,
            c.entries,
            nuc_core::time::rfc3339(c.this_update),
            nuc_core::time::rfc3339(c.next_update),
            c.sha256,
            c.url
        )
    }
    let mut out = String::new();
    if published {
        out.push_str("published\n");
    }
    out.push_str(&line("full", status.full.as_ref()));
    out.push_str(&line("delta", status.delta.as_ref()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(number: i64, base: i64) -> CrlInfo {
        CrlInfo {
            crl_number: number,
            base_crl_number: base,
            this_update: 0,
            next_update: 86_400,
            entries: 2,
            sha256: "ab".into(),
            url: "http://x/crl".into(),
        }
    }

    #[test]
    fn report_names_both_crls_and_the_base_of_the_delta() {
        let s = CrlStatus {
            full: Some(crl(7, 0)),
            delta: Some(crl(8, 7)),
        };
        assert_eq!(
            report(&s, true),
            "published\n\
             full crl_number=7 entries=2 this_update=1970-01-01T00:00:00Z next_update=1970-01-02T00:00:00Z sha256=ab url=http://x/crl\n\
             delta crl_number=8 base_crl_number=7 entries=2 this_update=1970-01-01T00:00:00Z next_update=1970-01-02T00:00:00Z sha256=ab url=http://x/crl\n"
        );
        assert_eq!(
            report(&CrlStatus::default(), false),
            "full none\ndelta none\n"
        );
    }

    #[test]
    fn a_refusal_keeps_the_services_reason_and_text_once() {
        let mut s = tonic::Status::unavailable("HSM_FAILURE: CRL publication failed: token gone");
        s.metadata_mut()
            .insert(nuc_api::REASON_METADATA, "HSM_FAILURE".parse().unwrap());
        let f = Failure::from(refused("https://h:1", &s));
        assert_eq!(f.code, ReasonCode::HsmFailure);
        assert_eq!(
            f.message,
            "https://h:1: refused: CRL publication failed: token gone"
        );
        let f = Failure::from(refused(
            "https://h:1",
            &tonic::Status::unauthenticated("no client certificate"),
        ));
        assert_eq!(f.code, ReasonCode::PermissionDenied);
        assert_eq!(
            f.message,
            "https://h:1: refused: Unauthenticated: no client certificate"
        );
    }

    #[test]
    fn plaintext_and_missing_files_are_refused_before_any_connection() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = |endpoint: &str| Connection {
            endpoint: endpoint.into(),
            cert: "/nonexistent/s.pem".into(),
            key: "/nonexistent/s.key".into(),
            ca: "/nonexistent/root.pem".into(),
            server_name: "localhost".into(),
            timeout_secs: 5,
        };
        let e = rt
            .block_on(connect(&conn("http://127.0.0.1:1")))
            .unwrap_err();
        assert!(matches!(e, PublishError::Endpoint { .. }), "{e}");
        let e = rt
            .block_on(connect(&conn("https://127.0.0.1:1")))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ca: cannot read /nonexistent/root.pem: No such file or directory (os error 2)"
        );
    }
}
