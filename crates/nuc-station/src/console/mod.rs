//! `nuc-station console`: the CON operator's workstation as a web page, served by this agent
//! on the loopback interface (issue 14; the boundary is described in `docs/console.md`).
//!
//! The agent owns everything that matters: the mTLS channel to the NUC, the operator's token
//! (logged in once with its PIN), the signatures. The page owns only what is shown. The agent
//! must never listen beyond loopback, never answer another origin, and never give the page a
//! key, a PIN or anything that would let another page in the same browser drive it.

pub mod api;
pub mod counter;
pub mod guard;
pub mod i18n;
pub mod reader;
pub mod server;
pub mod session;

#[cfg(test)]
mod boundary_tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nuc_api::v1::operator_service_client::OperatorServiceClient;
use tonic::transport::Channel;

use crate::StationError;
use crate::nuc::NucConfig;

/// The default address of the console.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";

/// Where the operator's token and certificate are.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub module: PathBuf,
    pub label: String,
    pub key_label: String,
    pub operator_cert: PathBuf,
}

/// Everything `nuc-station console` is started with.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub listen: SocketAddr,
    pub nuc: NucConfig,
    pub token: TokenConfig,
    /// A session idle this long ends (and the token is logged out).
    pub idle: Duration,
}

/// The running agent's state, shared by every request.
pub struct Agent {
    pub(crate) own: guard::Own,
    pub(crate) nuc: NucConfig,
    pub(crate) token: TokenConfig,
    /// The operator's name from the operator certificate, shown on the page.
    pub(crate) operator_name: String,
    pub(crate) sessions: session::Sessions,
    pub(crate) client: tokio::sync::Mutex<Option<OperatorServiceClient<Channel>>>,
    /// How often the live channel speaks.
    pub(crate) heartbeat: Duration,
    /// The card readers, as last seen.
    pub(crate) readers: tokio::sync::watch::Receiver<reader::ReaderView>,
    /// F4 at this counter: one enrollment at a time.
    pub(crate) counter: counter::Counter,
}

/// Refuses an address that is not on the loopback interface: the console has no TLS and no
/// other defence against the network than never being reachable from it.
pub fn check_listen(addr: &SocketAddr) -> Result<(), StationError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(StationError::Config(format!(
            "--listen {addr}: the console listens on the loopback interface only (127.0.0.1 or [::1]), never on a network address"
        )))
    }
}

/// The common name in the operator's certificate, or empty when it cannot be read (the
/// token login checks the certificate properly and says why).
fn operator_name(cert: &std::path::Path) -> String {
    std::fs::read(cert)
        .ok()
        .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok())
        .and_then(|x| {
            x.subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().to_string().ok())
        })
        .unwrap_or_default()
}

impl Agent {
    pub fn new(cfg: &ConsoleConfig, bound: SocketAddr) -> Agent {
        Agent {
            own: guard::Own::new(bound),
            nuc: cfg.nuc.clone(),
            token: cfg.token.clone(),
            operator_name: operator_name(&cfg.token.operator_cert),
            sessions: session::Sessions::new(cfg.idle),
            client: tokio::sync::Mutex::new(None),
            heartbeat: Duration::from_secs(5),
            readers: reader::watch_readers(Duration::from_millis(250)),
            counter: counter::Counter::default(),
        }
    }
}

/// Binds the console's address (loopback only) and serves until the process is stopped.
/// Prints `console on http://ADDR/` on stdout once it accepts connections.
pub async fn run(cfg: ConsoleConfig) -> Result<(), StationError> {
    check_listen(&cfg.listen)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StationError::Config(format!("--listen {}: {e}", cfg.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StationError::Config(format!("--listen {}: {e}", cfg.listen)))?;
    let agent = std::sync::Arc::new(Agent::new(&cfg, bound));
    println!("console on http://{bound}/");
    server::serve(listener, agent).await
}
