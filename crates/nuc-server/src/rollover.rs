//! Rollover inside a running `nuc serve`: the OCSP signer's certificate and the gRPC
//! listener's TLS certificate change under it without a restart (`nuc ocsp-signer renew`,
//! `nuc tls renew`, see [`crate::renew`]).
//!
//! This module owns what the service answers with while a renewal lands:
//! - the OCSP responder in force with its own response cache ([`OcspSlot`]): an answer is
//!   signed, named and cached by one responder taken whole, and a new responder comes with a
//!   new, empty cache, so no answer signed by the old signer is served from the cache after the
//!   switch (one still being signed when it happens is answered, and is valid: the old
//!   certificate is);
//! - the TLS identity ([`TlsIdentity`]): a `ResolvesServerCert` whose certificate and key are
//!   swapped together for new handshakes; connections already open keep theirs;
//! - the watcher ([`watch`]) that looks for both every `[service] reload_secs` seconds and on
//!   SIGHUP: the OCSP signer the store names (every instance of a shared store sees a renewal
//!   made by any of them), the TLS files of this home.
//!
//! It must never install a certificate whose key does not match it, nor drop the one in force
//! because a new one is unreadable or half-written: it keeps the old one, says why, and looks
//! again at the next check. It never logs key material.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nuc_ca::OcspResponder;
use nuc_publisher::ocsp::OcspCache;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch as watch_channel};
use tokio_rustls::server::TlsStream;

use crate::instance::Instance;
use crate::listeners::Bounded;

/// Why a TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    #[error("{path} ([grpc] {setting}): {reason}")]
    File {
        path: PathBuf,
        setting: &'static str,
        reason: String,
    },
    #[error("[grpc] tls_key does not match the certificate of [grpc] tls_cert: {0}")]
    Mismatch(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

// ------------------------------------------------------------------------------------ OCSP

/// One OCSP responder and the answers it signed.
pub struct OcspGeneration {
    pub responder: Arc<OcspResponder>,
    pub cache: OcspCache,
}

/// The OCSP responder in force, with its cache; swapped whole.
pub struct OcspSlot {
    current: RwLock<Arc<OcspGeneration>>,
    validity: i64,
    cache_bytes: usize,
}

impl OcspSlot {
    /// `responder` in force, its answers valid `validity` seconds, cached up to `cache_bytes`.
    pub fn new(responder: Arc<OcspResponder>, validity: i64, cache_bytes: usize) -> Self {
        Self {
            current: RwLock::new(Arc::new(OcspGeneration {
                responder,
                cache: OcspCache::new(validity, cache_bytes),
            })),
            validity,
            cache_bytes,
        }
    }

    /// The responder in force and its cache: answer one request with this one alone.
    pub fn current(&self) -> Arc<OcspGeneration> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `responder` in force from now on, with an empty cache.
    fn install(&self, responder: Arc<OcspResponder>) {
        let generation = Arc::new(OcspGeneration {
            responder,
            cache: OcspCache::new(self.validity, self.cache_bytes),
        });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = generation;
    }
}

// ------------------------------------------------------------------------------------- TLS

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The gRPC listener's certificate and key, swapped together for new handshakes.
#[derive(Debug)]
pub struct TlsIdentity {
    current: RwLock<Arc<CertifiedKey>>,
    /// The PEM bytes (certificate file, key file) the one in force was made of.
    loaded: RwLock<(Vec<u8>, Vec<u8>)>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl ResolvesServerCert for TlsIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsLoadError> {
    std::fs::read(path).map_err(|e| TlsLoadError::File {
        path: path.into(),
        setting,
        reason: e.to_string(),
    })
}

/// A certificate chain and its key from PEM, checked to match.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsLoadError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsLoadError::File {
            path: cert_path.into(),
            setting: "tls_cert",
            reason: format!("not PEM certificates: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsLoadError::File {
            path: cert_path.into(),
            setting: "tls_cert",
            reason: "holds no certificate".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsLoadError::File {
        path: key_path.into(),
        setting: "tls_key",
        reason: format!("not a PEM private key: {e}"),
    })?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsLoadError::Mismatch(e.to_string()))
}

impl TlsIdentity {
    /// The identity in the files `cert_path` and `key_path`.
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, TlsLoadError> {
        let (cert, key) = (read(&cert_path, "tls_cert")?, read(&key_path, "tls_key")?);
        let certified = certified_key(&cert, &key, &cert_path, &key_path)?;
        Ok(Self {
            current: RwLock::new(Arc::new(certified)),
            loaded: RwLock::new((cert, key)),
            cert_path,
            key_path,
        })
    }

    /// Reads the files again; installs what they hold when it changed and the key matches
    /// the certificate. Gives whether it changed.
    pub fn reload(&self) -> Result<bool, TlsLoadError> {
        let (cert, key) = (
            read(&self.cert_path, "tls_cert")?,
            read(&self.key_path, "tls_key")?,
        );
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.0 == cert && loaded.1 == key {
                return Ok(false);
            }
        }
        // Between the renewal's two renames the files may be one old, one new: refused here
        // as a mismatch, and the old pair stays until the next look.
        let certified = certified_key(&cert, &key, &self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = (cert, key);
        Ok(true)
    }

    /// The leaf certificate in force (DER).
    pub fn leaf_der(&self) -> Vec<u8> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }
}

/// The gRPC listener's rustls configuration: callers must present a certificate of our
/// issuing CA (mutual TLS), HTTP/2 only, the server's identity from `identity`.
pub fn server_config(
    identity: Arc<TlsIdentity>,
    client_ca_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsLoadError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(client_ca_der.to_vec()))
        .map_err(|e| TlsLoadError::Config(format!("the issuing CA as client root: {e}")))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsLoadError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsLoadError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS connections of `conns`: each handshake on a task of its own, given `timeout` to
/// finish (a peer that never sends its ClientHello holds its slot no longer); a failed one is
/// closed. Ends when `conns` does.
pub fn handshakes(
    mut conns: mpsc::Receiver<Bounded<TcpStream>>,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> mpsc::Receiver<TlsStream<Bounded<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Some(conn) = conns.recv().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(tls).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "gRPC TLS handshake failed"),
                    Err(_) => tracing::debug!("gRPC TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

// --------------------------------------------------------------------------------- watcher

/// The serial (hex) of a DER certificate, for the logs.
fn serial(der: &[u8]) -> String {
    nuc_ca::ocsp_signer::serial_of(der).unwrap_or_else(|_| "?".into())
}

/// Adopts a renewed OCSP signer and TLS identity, every `every` and on SIGHUP, until `stop`.
/// A failure is logged and leaves what is in force; the same failure is said once, not at
/// every look.
pub async fn watch(
    inst: Arc<Instance>,
    ocsp: Arc<OcspSlot>,
    tls: Option<Arc<TlsIdentity>>,
    every: Duration,
    mut stop: watch_channel::Receiver<bool>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: renewals are picked up by the periodic check only");
            None
        }
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_failure: (Option<String>, Option<String>, Option<String>) = (None, None, None);
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticker.tick() => {}
            _ = hup => tracing::info!("SIGHUP received: looking for a renewed OCSP signer and TLS certificate"),
        }
        let (inst, ocsp, tls) = (inst.clone(), ocsp.clone(), tls.clone());
        let looked = tokio::task::spawn_blocking(move || {
            (
                reload_ocsp(&inst, &ocsp),
                tls.map(|t| reload_tls(&t)),
                reload_report_signer(&inst),
            )
        })
        .await;
        let Ok((o, t, r)) = looked else { continue };
        note(&mut last_failure.0, o, "OCSP signer");
        if let Some(t) = t {
            note(&mut last_failure.1, t, "gRPC TLS certificate");
        }
        note(&mut last_failure.2, r, "report signer");
    }
}

/// Logs a failure when it is not the one said last time.
fn note(last: &mut Option<String>, result: Result<(), String>, what: &str) {
    match result {
        Ok(()) => *last = None,
        Err(e) => {
            if last.as_deref() != Some(e.as_str()) {
                tracing::warn!(error = %e, "renewed {what} not adopted; the one in force stays");
            }
            *last = Some(e);
        }
    }
}

fn reload_ocsp(inst: &Instance, slot: &OcspSlot) -> Result<(), String> {
    let Some(responder) = inst
        .ca
        .reload_ocsp_signer(inst.store.as_ref())
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let old = serial(&slot.current().responder.identity().cert_der);
    let new = serial(&responder.identity().cert_der);
    slot.install(responder.clone());
    tracing::info!(old_serial = %old, serial = %new, key = %responder.hsm_label(), "OCSP signer renewed: new answers are signed by the new certificate");
    // This home's copy of the certificate follows the store (another instance renewed it).
    let path = inst.home.ca_dir().join("ocsp-signer.pem");
    let pem = der::pem::encode_string(
        "CERTIFICATE",
        der::pem::LineEnding::LF,
        &responder.identity().cert_der,
    )
    .map_err(|e| e.to_string())?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str())
        && let Err(e) = crate::renew::write_atomically(&path, pem.as_bytes(), 0o600)
    {
        tracing::warn!(path = %path.display(), error = %e, "could not update this home's copy of the OCSP signer certificate");
    }
    Ok(())
}

/// Adopts the report signer the store names when another instance (or `nuc report-signer
/// renew`) made a new one; this home's copy of its certificate follows.
fn reload_report_signer(inst: &Instance) -> Result<(), String> {
    let Some(id) = inst
        .ca
        .reload_report_signer(inst.store.as_ref())
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    tracing::info!(serial = %serial(&id.cert_der), "report signer renewed: new reports are signed by the new certificate");
    if let Err(e) = crate::renew::write_report_signer_pem(&inst.home.ca_dir(), &id.cert_der) {
        tracing::warn!(error = %e.message, "could not update this home's copy of the report signer certificate");
    }
    Ok(())
}

fn reload_tls(identity: &TlsIdentity) -> Result<(), String> {
    if identity.reload().map_err(|e| e.to_string())? {
        tracing::info!(serial = %serial(&identity.leaf_der()), "gRPC TLS certificate renewed: new connections get it, open ones keep theirs");
    }
    Ok(())
}
