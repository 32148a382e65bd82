//! The connection to the NUC: gRPC over mutual TLS, as a `workstation` caller (the client
//! certificate of this workstation, issued by the NUC with the workstation role).

use std::path::PathBuf;
use std::time::Duration;

use nuc_api::v1::operator_service_client::OperatorServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::StationError;

/// Where the NUC is and who this workstation is.
#[derive(Debug, Clone)]
pub struct NucConfig {
    /// `host:port` of the NUC's gRPC service.
    pub address: String,
    /// The name in the NUC's TLS certificate.
    pub server_name: String,
    /// The NUC's root certificate (PEM), to trust the server.
    pub root_ca: PathBuf,
    /// This workstation's certificate and key (PEM).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, StationError> {
    std::fs::read(path).map_err(|e| StationError::Config(format!("{what} {}: {e}", path.display())))
}

/// Connects to the OperatorService.
pub async fn connect(cfg: &NucConfig) -> Result<OperatorServiceClient<Channel>, StationError> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cfg.root_ca, "--root-ca")?))
        .identity(Identity::from_pem(
            read(&cfg.tls_cert, "--tls-cert")?,
            read(&cfg.tls_key, "--tls-key")?,
        ))
        .domain_name(cfg.server_name.clone());
    let channel = Endpoint::from_shared(format!("https://{}", cfg.address))
        .map_err(|e| StationError::Config(format!("--nuc {}: {e}", cfg.address)))?
        .tls_config(tls)
        .map_err(|e| StationError::Config(format!("TLS: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| StationError::Unreachable {
            step: "connect to the NUC",
            message: format!("{}: {e}", cfg.address),
        })?;
    Ok(OperatorServiceClient::new(channel))
}
