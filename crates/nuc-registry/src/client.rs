//! [`HttpRegistry`]: the registry over HTTP or HTTPS, as the `nuc-registry` service (or a
//! gateway that speaks its protocol) serves it.
//!
//! Protocol: `GET {base}/v1/individuals/{iin}` and `GET {base}/v1/legal-entities/{bin}` answer
//! 200 with the record as JSON, or 404 with `{"error": "not-found", ...}`. Anything else is a
//! failure of the registry, never a refusal of the applicant: a 404 without that body (a wrong
//! base URL, a proxy's error page) is [`RegistryError::Invalid`], not "not found".
//!
//! Personal data never crosses a network in clear: plain http is accepted only to a loopback
//! address (a local stand-in or TLS gateway), https only with a configured CA bundle
//! ([`ClientTls`]) and never with the system's roots.

use std::error::Error as _;
use std::time::Duration;

use nuc_core::{Bin, Iin};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::{BoxFuture, ClientTls, LegalEntity, Person, Registry, RegistryError};

/// The largest answer read, in bytes; a record is a few hundred.
const MAX_BODY: usize = 1 << 20;

/// A [`Registry`] reached over HTTP (loopback only) or HTTPS.
///
/// The timeout bounds both the connection (with its TLS handshake) and the whole exchange.
/// Environment proxies (`HTTP_PROXY`…) are ignored: the registry is reached directly at the
/// configured URL, and redirects are not followed.
#[derive(Debug, Clone)]
pub struct HttpRegistry {
    client: reqwest::Client,
    /// The base URL without its trailing slash.
    base: String,
    /// `host:port` of the base URL, for messages.
    endpoint: String,
    timeout: Duration,
}

fn url_refused(base_url: &str, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Setting {
        setting: "url".into(),
        reason: format!("{base_url:?}: {reason}"),
    }
}

/// Whether the URL's host is this machine: an IP loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl HttpRegistry {
    /// A client of the registry at `base_url` over plain http, which must be on loopback
    /// (`http://127.0.0.1:port[/prefix]`): an https URL needs [`HttpRegistry::with_tls`].
    pub fn new(base_url: &str, timeout: Duration) -> Result<HttpRegistry, RegistryError> {
        HttpRegistry::with_tls(base_url, timeout, None)
    }

    /// A client of the registry at `base_url`: `https://…` with `tls` (the CA bundle the
    /// registry's certificate must chain to), or `http://` on loopback without it. Refuses,
    /// with [`RegistryError::Setting`], a URL that does not parse, is neither, carries a query
    /// or fragment, is plain http to another machine, is https without `tls`, or is http with
    /// it (a CA bundle that would never be used is a configuration mistake).
    pub fn with_tls(
        base_url: &str,
        timeout: Duration,
        tls: Option<ClientTls>,
    ) -> Result<HttpRegistry, RegistryError> {
        let url = Url::parse(base_url).map_err(|e| url_refused(base_url, e))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(url_refused(base_url, "must not carry a query or fragment"));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let builder = match (url.scheme(), tls) {
            ("https", Some(tls)) => builder
                .tls_backend_preconfigured(tls.into_config())
                .https_only(true),
            ("https", None) => {
                return Err(url_refused(
                    base_url,
                    "https needs the CA bundle the registry's certificate is issued under \
                     ([registry] ca_cert); the system's roots are not trusted for personal data",
                ));
            }
            // A plain client still gets a TLS configuration of ours, which trusts nothing: it
            // is never used (redirects are off), and reqwest would otherwise look for a
            // process-wide crypto provider.
            ("http", None) if is_loopback(&url) => {
                builder.tls_backend_preconfigured(ClientTls::trusting_nothing()?.into_config())
            }
            ("http", None) => {
                return Err(url_refused(
                    base_url,
                    "plain http only to a loopback address: personal data must not cross a \
                     network in clear (use https with [registry] ca_cert)",
                ));
            }
            ("http", Some(_)) => {
                return Err(url_refused(
                    base_url,
                    "a CA bundle ([registry] ca_cert) is set but the URL is plain http: \
                     use https",
                ));
            }
            (other, _) => {
                return Err(url_refused(
                    base_url,
                    format!("scheme {other:?}: only https (or http on loopback)"),
                ));
            }
        };
        let host = url.host_str().unwrap_or_default();
        let endpoint = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let client = builder
            .build()
            .map_err(|e| url_refused(base_url, format!("registry client: {e}")))?;
        Ok(HttpRegistry {
            client,
            base: url.as_str().trim_end_matches('/').to_owned(),
            endpoint,
            timeout,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: String,
        what: &'static str,
        id: &str,
    ) -> Result<T, RegistryError> {
        let ep = &self.endpoint;
        let url = format!("{}{path}", self.base);
        tracing::debug!(registry = %ep, id, what, "registry look-up");
        let response = self
            .client
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(RegistryError::Unavailable(format!(
                "registry at {ep} answered {status}"
            )));
        }
        if status != StatusCode::OK && status != StatusCode::NOT_FOUND {
            return Err(RegistryError::Invalid(format!(
                "registry at {ep} answered {status} to GET {path}"
            )));
        }
        let body = self.read_body(response).await?;
        if status == StatusCode::NOT_FOUND {
            #[derive(serde::Deserialize)]
            struct NotFoundBody {
                error: String,
            }
            return match serde_json::from_slice::<NotFoundBody>(&body) {
                Ok(b) if b.error == "not-found" => Err(RegistryError::NotFound {
                    what,
                    id: id.to_owned(),
                }),
                _ => Err(RegistryError::Invalid(format!(
                    "registry at {ep} answered 404 to GET {path} without a not-found record \
                     (is the registry URL right?)"
                ))),
            };
        }
        serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Invalid(format!(
                "registry at {ep} answered GET {path} with an unreadable {what} record: {}",
                decode_error(&e)
            ))
        })
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, RegistryError> {
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(RegistryError::Invalid(format!(
                            "registry at {} answered more than {MAX_BODY} bytes",
                            self.endpoint
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(self.transport_error(&e)),
            }
        }
    }

    /// Maps a failure to exchange with the registry. The registry could not be asked (refused,
    /// reset, timed out) → Unavailable; it spoke something that is not HTTP → Invalid.
    fn transport_error(&self, e: &reqwest::Error) -> RegistryError {
        let ep = &self.endpoint;
        let t = self.timeout;
        if e.is_timeout() {
            return if e.is_connect() {
                RegistryError::Unavailable(format!("registry at {ep}: no connection within {t:?}"))
            } else {
                RegistryError::Unavailable(format!("registry at {ep} did not answer within {t:?}"))
            };
        }
        if let Some(tls) = tls_failure(e) {
            return RegistryError::Unavailable(format!(
                "registry at {ep} refused over TLS: {tls} (its certificate must chain to the \
                 configured CA bundle and name {host})",
                host = self
                    .endpoint
                    .rsplit_once(':')
                    .map_or(ep.as_str(), |(h, _)| h)
            ));
        }
        let cause = root_cause(e);
        if e.is_connect() {
            return RegistryError::Unavailable(format!("registry at {ep} unreachable: {cause}"));
        }
        if is_protocol_error(e) {
            return RegistryError::Invalid(format!(
                "registry at {ep} did not answer in HTTP: {cause}"
            ));
        }
        RegistryError::Unavailable(format!("registry at {ep} failed: {cause}"))
    }
}

/// What went wrong in a JSON answer, without its content: serde quotes offending values
/// (`invalid type: string "…"`), which may be a person's data. Messages known to hold only
/// field names or our own IIN/BIN check are kept; the others are reduced to their category.
fn decode_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let safe = ["missing field", "iin: ", "bin: "];
    if safe.iter().any(|p| text.starts_with(p)) {
        text
    } else {
        format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    }
}

/// The innermost cause, which says what happened (`Connection refused (os error 111)`).
fn root_cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The TLS failure behind a failed exchange, if that is what it was (an untrusted or
/// misnamed certificate, a refused client certificate). rustls's error travels inside
/// `io::Error`s, whose `source()` skips what they wrap, so each is opened by hand.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| find(inner));
        if inner.is_some() {
            return inner;
        }
        err.source().and_then(find)
    }
    e.source().and_then(find).map(|tls| tls.to_string())
}

/// Whether the exchange failed because the peer's bytes were not HTTP (as opposed to the
/// connection failing). hyper's error type is not ours to name, so this goes by the absence of
/// an I/O cause and hyper's wording of its parse errors.
fn is_protocol_error(e: &reqwest::Error) -> bool {
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(err) = cur {
        if err.is::<std::io::Error>() {
            return false;
        }
        let text = err.to_string();
        if text.starts_with("invalid HTTP") || text.starts_with("message head is too large") {
            return true;
        }
        cur = err.source();
    }
    false
}

impl Registry for HttpRegistry {
    fn person(&self, iin: &Iin) -> BoxFuture<'_, Result<Person, RegistryError>> {
        let iin = iin.clone();
        Box::pin(async move {
            let path = format!("/v1/individuals/{iin}");
            let person: Person = self.get(path, "individual", iin.as_str()).await?;
            if person.iin != iin {
                return Err(RegistryError::Invalid(format!(
                    "registry at {} answered for IIN {} when asked for {iin}",
                    self.endpoint, person.iin
                )));
            }
            Ok(person)
        })
    }

    fn legal_entity(&self, bin: &Bin) -> BoxFuture<'_, Result<LegalEntity, RegistryError>> {
        let bin = bin.clone();
        Box::pin(async move {
            let path = format!("/v1/legal-entities/{bin}");
            let entity: LegalEntity = self.get(path, "legal entity", bin.as_str()).await?;
            if entity.bin != bin {
                return Err(RegistryError::Invalid(format!(
                    "registry at {} answered for BIN {} when asked for {bin}",
                    self.endpoint, entity.bin
                )));
            }
            Ok(entity)
        })
    }
}
