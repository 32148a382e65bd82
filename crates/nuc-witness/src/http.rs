//! The witness's HTTP client of the log. The log is not trusted: every request is bounded in
//! time (connect 5 s, whole request 15 s), every body is read with a 1 MiB cap, redirects are
//! not followed, and what comes back is only bytes for the caller to verify.
//!
//! TLS is rustls on ring, handed to reqwest as a preconfigured configuration (never a
//! process-wide provider, never aws-lc). Over https the server's certificate must chain to the
//! configured roots; there is no "accept invalid certificates".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nuc_tlog::Hash;
use reqwest::{StatusCode, Url};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::WitnessError;

/// Connecting to the log must succeed within this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, body included, must be over within this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// No response body is read beyond this many bytes.
pub const MAX_BODY: usize = 1 << 20;
/// The latest checkpoint, under the log's base URL.
pub(crate) const CHECKPOINT_PATH: &str = "/audit/checkpoint";
/// At most this much of a refusal's text is quoted in an error.
const MAX_REASON_CHARS: usize = 200;
/// A consistency proof between two u64 sizes has at most this many hashes (2·64); more is
/// refused before a single one is decoded.
const MAX_PROOF_HASHES: usize = 128;

/// Where the system's CA bundle usually lives when `SSL_CERT_FILE` is not set (Debian/Ubuntu,
/// Fedora/RHEL, openSUSE, Alpine).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn url_refused(url: &str, reason: impl Into<String>) -> WitnessError {
    WitnessError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

fn tls_error(reason: impl std::fmt::Display) -> WitnessError {
    WitnessError::Tls {
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration on ring trusting exactly `roots`, speaking HTTP/1.1.
pub fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, WitnessError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built without HTTP/2 in this workspace.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's trusted CAs: the PEM bundle named by `SSL_CERT_FILE`, else the first of the
/// usual distribution bundles that holds a usable certificate.
pub fn system_roots() -> Result<RootCertStore, WitnessError> {
    let candidates: Vec<PathBuf> = match std::env::var_os("SSL_CERT_FILE") {
        Some(path) => vec![PathBuf::from(path)],
        None => CA_BUNDLES.iter().map(PathBuf::from).collect(),
    };
    for path in &candidates {
        if !path.is_file() {
            continue;
        }
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_error(format!("{}: not PEM certificates: {e}", path.display())))?;
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certs);
        if !roots.is_empty() {
            return Ok(roots);
        }
    }
    Err(tls_error(
        "no CA bundle with a usable certificate found for https (set SSL_CERT_FILE to a PEM file)",
    ))
}

/// Text the log sent, made safe to quote: control characters replaced, length capped.
fn quoted(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_REASON_CHARS).is_some() {
        out.push('…');
    }
    out.trim().to_owned()
}

#[derive(serde::Deserialize)]
struct ConsistencyResponse {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

/// The client of one log.
#[derive(Debug, Clone)]
pub(crate) struct LogClient {
    base: String,
    client: reqwest::Client,
}

impl LogClient {
    /// `log_url` is the log's base URL (`http://` or `https://`, no query, no fragment, no
    /// credentials); `tls` is the configuration for https (default: the system's roots).
    pub(crate) fn new(
        log_url: &str,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<LogClient, WitnessError> {
        let url = Url::parse(log_url).map_err(|e| url_refused(log_url, e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(url_refused(log_url, "must not carry a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(url_refused(log_url, "must not carry credentials"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(url_refused(log_url, "has no host"));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        let builder = match url.scheme() {
            "https" => {
                let config = match tls {
                    Some(config) => config,
                    None => client_config(system_roots()?)?,
                };
                builder.tls_backend_preconfigured(config).https_only(true)
            }
            // Integrity comes from the signatures, not the transport, so plain http is allowed.
            // The client still gets a configuration of ours (trusting nothing, never used as
            // redirects are off), or reqwest would look for a process-wide crypto provider.
            "http" => builder.tls_backend_preconfigured(client_config(RootCertStore::empty())?),
            other => {
                return Err(url_refused(
                    log_url,
                    format!("scheme {other:?} is neither http nor https"),
                ));
            }
        };
        let client = builder
            .build()
            .map_err(|e| tls_error(format!("building the HTTP client: {e}")))?;
        Ok(LogClient {
            base: url.as_str().trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send, then read the status and at most [`MAX_BODY`] bytes of the body.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(StatusCode, Vec<u8>), WitnessError> {
        let http = |source| WitnessError::Http {
            url: url.to_owned(),
            source,
        };
        let mut response = request.send().await.map_err(http)?;
        let status = response.status();
        let too_large = || WitnessError::BodyTooLarge {
            url: url.to_owned(),
            limit: MAX_BODY,
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn refused(url: &str, status: StatusCode, body: &[u8]) -> WitnessError {
        WitnessError::HttpStatus {
            url: url.to_owned(),
            status: status.as_u16(),
            reason: quoted(body),
        }
    }

    /// The latest checkpoint note, or None when the log has none yet (404).
    pub(crate) async fn latest_checkpoint(&self) -> Result<Option<Vec<u8>>, WitnessError> {
        let url = self.url(CHECKPOINT_PATH);
        let (status, body) = self.exchange(self.client.get(&url), &url).await?;
        match status {
            StatusCode::OK => Ok(Some(body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::refused(&url, status, &body)),
        }
    }

    /// The consistency proof from `from` to `to`, decoded; malformed is a refusal.
    pub(crate) async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, WitnessError> {
        let url = self.url(&format!("/audit/proof/consistency?from={from}&to={to}"));
        let (status, body) = self.exchange(self.client.get(&url), &url).await?;
        if status != StatusCode::OK {
            return Err(Self::refused(&url, status, &body));
        }
        let bad = |reason: String| WitnessError::BadProof { from, to, reason };
        let parsed: ConsistencyResponse =
            serde_json::from_slice(&body).map_err(|e| bad(format!("not the proof JSON: {e}")))?;
        if parsed.from != from || parsed.to != to {
            return Err(bad(format!(
                "the log answered for sizes {} to {}",
                parsed.from, parsed.to
            )));
        }
        if parsed.proof.len() > MAX_PROOF_HASHES {
            return Err(bad(format!(
                "{} hashes, more than any proof between two sizes has",
                parsed.proof.len()
            )));
        }
        parsed
            .proof
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(h, &mut hash).map_err(|_| {
                    bad(format!(
                        "hash {i} is not 64 hex digits: {:?}",
                        quoted(h.as_bytes())
                    ))
                })?;
                Ok(hash)
            })
            .collect()
    }

    /// POST a cosignature note; anything but 200 is an error naming the log's reason.
    pub(crate) async fn post_cosignature(&self, note: String) -> Result<(), WitnessError> {
        let url = self.url("/audit/cosignature");
        let request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(note);
        let (status, body) = self.exchange(request, &url).await?;
        if status == StatusCode::OK {
            return Ok(());
        }
        Err(WitnessError::CosignatureRefused {
            url,
            status: status.as_u16(),
            reason: quoted(&body),
        })
    }
}
