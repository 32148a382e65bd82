//! TLS for the registry, at both ends: what the client trusts ([`ClientTls`]: the CA bundle
//! named in the configuration, and optionally a certificate of our own to present) and what
//! the fixture service presents ([`server_config`], served by [`TlsListener`]).
//!
//! Cryptography is rustls on ring, chosen here explicitly (never a process-wide default
//! provider, never aws-lc). This module must never trust a server whose certificate does not
//! chain to the configured bundle: no system roots, no "accept invalid certificates", no
//! hostname exceptions. It never logs or echoes key material: a file it refuses is named by
//! its path and the reason only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::RegistryError;

/// A client's TLS handshake, and a server's, must be over within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes the fixture service runs at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 64;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setting(setting: &str, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Setting {
        setting: setting.to_owned(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file, at least one; `what` names the setting for messages.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let shown = path.display();
    if let Err(e) = std::fs::metadata(path) {
        return Err(setting(what, format!("{shown}: {e}")));
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setting(what, format!("{shown}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(setting(
            what,
            format!("{shown}: holds no PEM certificate (BEGIN CERTIFICATE)"),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, RegistryError> {
    let shown = path.display();
    if let Err(e) = std::fs::metadata(path) {
        return Err(setting(what, format!("{shown}: {e}")));
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| setting(what, format!("{shown}: no PEM private key: {e}")))
}

/// What the registry client trusts and presents over https.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: rustls::ClientConfig,
}

impl ClientTls {
    /// Trusts exactly the CA certificates in the PEM file `ca_cert` (the `[registry] ca_cert`
    /// setting); with `identity` = (certificate chain PEM, private key PEM), presents that
    /// certificate when the registry asks for one (`client_cert`, `client_key`).
    pub fn from_pem_files(
        ca_cert: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, RegistryError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_cert, "ca_cert")? {
            roots.add(cert).map_err(|e| {
                setting(
                    "ca_cert",
                    format!("{}: not a usable CA certificate: {e}", ca_cert.display()),
                )
            })?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setting("ca_cert", format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert, "client_cert")?;
                let key = read_key(key, "client_key")?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    setting(
                        "client_key",
                        format!("does not go with client_cert {}: {e}", cert.display()),
                    )
                })?
            }
        };
        // The registry speaks HTTP/1.1 only (this client is built without HTTP/2).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls { config })
    }

    /// A configuration with no trusted CA: every server certificate is refused.
    pub(crate) fn trusting_nothing() -> Result<ClientTls, RegistryError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setting("url", format!("TLS versions: {e}")))?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        Ok(ClientTls { config })
    }

    pub(crate) fn into_config(self) -> rustls::ClientConfig {
        self.config
    }
}

/// The fixture service's TLS: the certificate chain and key of PEM files; with `client_ca`,
/// it demands a client certificate issued by a CA of that file.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, RegistryError> {
    let chain = read_certs(cert, "--tls-cert")?;
    let key_der = read_key(key, "--tls-key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| setting("--tls-cert", format!("TLS versions: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(path, "--tls-client-ca")? {
                roots
                    .add(c)
                    .map_err(|e| setting("--tls-client-ca", format!("{}: {e}", path.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .map_err(|e| setting("--tls-client-ca", format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
        setting(
            "--tls-key",
            format!("does not go with --tls-cert {}: {e}", cert.display()),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener that hands `axum::serve` connections whose TLS handshake is done. Handshakes
/// run beside the accept loop, each bounded by [`HANDSHAKE_TIMEOUT`] and a few at a time, so a
/// client that never finishes its handshake holds up nobody else.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (sock, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                        Err(_) => tracing::info!(%peer, "TLS handshake not done in time"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop ended (its task was aborted): no connection will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
