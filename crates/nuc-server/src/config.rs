//! The whole of `nuc.toml`, as the service reads it: the CA's sections (owned by nuc-ca,
//! [`CaSettings`]) and the service's own — listeners, the registry, the RA, notifications,
//! the OCSP responder's bounds.
//!
//! The CA reads only its sections; the service reads the whole file and refuses unknown keys,
//! so a typo is an error at start, not a silently ignored setting.

use std::path::{Path, PathBuf};

use nuc_ca::home::{CaConfig, CaSettings, HomeError, HsmConfig, PolicyConfig, PublicationConfig};
use serde::{Deserialize, Serialize};

/// `[service]`: the HTTP listener, how long a stop waits, and whether this is a development
/// home.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// HTTP for relying parties (OCSP, CRLs, CA certificates) and health. Loopback by default.
    pub http_listen: String,
    /// Seconds a stop (SIGTERM, Ctrl-C) lets requests in flight finish once the listeners
    /// stopped accepting (default 10); whatever is still open then is closed and the process
    /// exits. A request answered before is committed: nothing acknowledged is lost.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Seconds between two looks of the running service for a renewed OCSP signer (in the
    /// store) and TLS certificate (in the home) (default 60; SIGHUP looks at once).
    #[serde(default = "default_reload_secs")]
    pub reload_secs: u64,
    /// A home for development and tests (`nuc init --development`): only here does the service
    /// accept its test hooks — a clock moved by `NUC_CLOCK_OFFSET_SECS`, and plaintext gRPC
    /// with the caller's role in a header (`[grpc] dev_plaintext`). Never set in production.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub development: bool,
    /// The admin listener: Prometheus metrics at `/metrics` (docs/operations.md). Apart from
    /// the public OCSP/CRL port, so that only the monitoring network reaches it; loopback by
    /// default (`nuc init` writes 127.0.0.1:8473). Absent: no admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
}

/// The admin listener a new home gets.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8473";

fn default_shutdown_grace_secs() -> u64 {
    10
}

fn default_reload_secs() -> u64 {
    60
}

/// `[grpc]`: the API over mutual TLS. The server's TLS certificate is issued by our own CA
/// (`nuc init` makes one for `localhost`); callers must present a `system` certificate of ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: String,
    /// Relative to the home.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Plaintext gRPC for local debugging only; refused unless `listen` is on loopback and the
    /// home is a development home.
    pub dev_plaintext: bool,
    /// Seconds a new connection has to complete its TLS handshake (default 10): a peer that
    /// connects and sends no ClientHello holds a connection slot no longer than this. A real
    /// client on loopback or a LAN handshakes in milliseconds.
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may pass without a byte either way before it is closed (default
    /// 300). Our callers' calls last well under a second; a client keeping a channel open
    /// reconnects transparently.
    pub idle_timeout_secs: u64,
    /// Connections open at once, handshaking or established (default 1024); one more is
    /// closed as soon as it is accepted. The callers are a known set of systems (the portal,
    /// the CON workstations, the scheduler), each holding a few HTTP/2 channels.
    pub max_connections: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8471".into(),
            tls_cert: "tls/server.pem".into(),
            tls_key: "tls/server.key".into(),
            dev_plaintext: false,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            max_connections: 1024,
        }
    }
}

/// `[http]`: the bounds of the HTTP listener of relying parties (OCSP, CRLs, CA certificates,
/// health), which anyone who can reach it may open connections to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds within which a request's header must have arrived whole, counted from the
    /// moment the server waits for it (default 10). This also bounds a keep-alive connection
    /// waiting idle for its next request: a slow or silent client holds a slot no longer.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may pass without a byte either way, whatever it is doing (a body
    /// trickled in, an answer the client does not read), before it is closed (default 30).
    pub idle_timeout_secs: u64,
    /// Connections open at once (default 4096); one more is closed as soon as it is accepted.
    /// Each is a file descriptor: the service raises its soft RLIMIT_NOFILE to the hard limit
    /// at start and warns when the two listeners' limits do not fit.
    pub max_connections: usize,
    /// Milliseconds `/readyz` waits for each of its checks (HSM session, database) before
    /// calling it failed (default 2000).
    pub readiness_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_connections: 4096,
            readiness_timeout_ms: 2000,
        }
    }
}

/// `[registry]`: the state registry (ГБД ФЛ/ЮЛ through SHEP). Over https with a CA bundle of
/// its own (`ca_cert`; never the system's roots), or plain http to a loopback address only
/// (the fixture service, or a local TLS gateway).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    pub url: String,
    pub timeout_ms: u64,
    /// PEM file of the CA certificate(s) the registry's TLS certificate must chain to,
    /// relative to the home. Required when `url` is https; refused when it is http. No default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate chain presented to the registry when it asks for one (with
    /// `client_key`), relative to the home. No default: no client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`, relative to the home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8472".into(),
            timeout_ms: 3000,
            ca_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl RegistryConfig {
    /// The registry client this section describes, its files read relative to `home`.
    pub fn client(
        &self,
        home: &Path,
    ) -> Result<nuc_registry::HttpRegistry, nuc_registry::RegistryError> {
        use nuc_registry::RegistryError;
        let identity = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((home.join(cert), home.join(key))),
            (Some(_), None) | (None, Some(_)) => {
                return Err(RegistryError::Setting {
                    setting: "client_cert".into(),
                    reason: "client_cert and client_key go together: set both or neither".into(),
                });
            }
        };
        let tls = match &self.ca_cert {
            Some(ca) => Some(nuc_registry::ClientTls::from_pem_files(
                &home.join(ca),
                identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            )?),
            None if identity.is_some() => {
                return Err(RegistryError::Setting {
                    setting: "client_cert".into(),
                    reason: "a client certificate is only presented over https, with ca_cert"
                        .into(),
                });
            }
            None => None,
        };
        nuc_registry::HttpRegistry::with_tls(
            &self.url,
            std::time::Duration::from_millis(self.timeout_ms),
            tls,
        )
    }
}

/// `[ra]`: the registration authority.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaSettings {
    /// Days a registered application waits for the CON visit.
    pub request_ttl_days: i64,
    /// Download link sent to applicants; `{number}` is the request number.
    pub download_url: String,
    /// Seconds a signed payload (operator decision, revocation order, renewal) stays
    /// acceptable after it was signed (default 600).
    pub payload_window_secs: i64,
    /// Seconds a signer's clock may run ahead of the service's (default 120).
    pub clock_skew_secs: i64,
    /// Remote renewals (F2) that may follow one another since the holder's last visit to a
    /// CON; the next one is refused with CON_VISIT_REQUIRED (default 1; 0 turns remote renewal
    /// off).
    pub max_remote_renewals: u32,
}

impl Default for RaSettings {
    fn default() -> Self {
        Self {
            request_ttl_days: 30,
            download_url: "https://pki.gov.kz/download/{number}".into(),
            payload_window_secs: nuc_ra::DEFAULT_PAYLOAD_WINDOW_SECS,
            clock_skew_secs: nuc_ra::DEFAULT_CLOCK_SKEW_SECS,
            max_remote_renewals: nuc_ra::DEFAULT_MAX_REMOTE_RENEWALS,
        }
    }
}

/// `[notifications]`: how e-mail leaves the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// `file` (one .eml file per message under `dir`) or `smtp`.
    pub sink: String,
    /// For the file sink, relative to the home.
    pub dir: PathBuf,
    /// For the smtp sink: `host:port` of the relay.
    pub smtp_relay: Option<String>,
    pub from: String,
    /// Seconds between sender passes over the outbox.
    pub interval_secs: u64,
    /// Delivery attempts in all before a message becomes a dead letter (`nuc outbox dead`).
    pub max_attempts: u32,
    /// The wait after a message's first failed attempt; it doubles after each further one.
    pub retry_base_secs: u64,
    /// The longest wait between two attempts of a message.
    pub retry_max_secs: u64,
}

impl NotificationsConfig {
    /// The retry policy the sender hands the outbox.
    pub fn retry_policy(&self) -> nuc_store::RetryPolicy {
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        nuc_store::RetryPolicy {
            max_attempts: i64::from(self.max_attempts),
            base_secs: secs(self.retry_base_secs),
            max_secs: secs(self.retry_max_secs),
        }
    }

    /// Refuses retry settings that would never wait or never try.
    fn check(&self) -> Result<(), HomeError> {
        let refuse = |m: String| Err(HomeError::Invalid(format!("[notifications] {m}")));
        if self.max_attempts == 0 {
            return refuse("max_attempts = 0: must be at least 1 (the first attempt)".into());
        }
        if self.retry_base_secs == 0 {
            return refuse("retry_base_secs = 0: must be at least 1".into());
        }
        if self.retry_max_secs < self.retry_base_secs {
            return refuse(format!(
                "retry_max_secs = {} is below retry_base_secs = {}: the cap must be at least the first wait",
                self.retry_max_secs, self.retry_base_secs
            ));
        }
        Ok(())
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            sink: "file".into(),
            dir: "outbox".into(),
            smtp_relay: None,
            from: "noreply@pki.gov.kz".into(),
            interval_secs: 2,
            max_attempts: 10,
            retry_base_secs: 30,
            retry_max_secs: 3600,
        }
    }
}

/// `[store]`: where the records are. Absent, the embedded default: SQLite in `HOME/nuc.db`, one
/// instance. A PostgreSQL URL lets several instances (each with its own home) share one
/// database; the password is never in the URL nor on a command line, but in the environment
/// (`NUC_STORE_PASSWORD`) or in `password_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (the default) or `postgres://USER@HOST:PORT/DATABASE[?sslmode=require]`.
    pub url: String,
    /// A hot standby for the reads that may lag the primary (see docs/cluster.md): the CRLs
    /// served over HTTP. Unset: every read goes to `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_url: Option<String>,
    /// A file (relative to the home, readable by the owner only) holding the database
    /// password; `NUC_STORE_PASSWORD` takes precedence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that issued the database server's certificate: with it, the server's
    /// certificate is verified (use with `sslmode=require`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Read connections kept open (default 8); changes go through one more, the writer's.
    pub pool_size: usize,
    /// Seconds to wait for a connection to the database (default 5): past it, a call is
    /// answered UNAVAILABLE.
    pub connect_timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: SQLITE.into(),
            read_url: None,
            password_file: None,
            tls_ca: None,
            pool_size: 8,
            connect_timeout_secs: 5,
        }
    }
}

/// `[store] url` of the embedded default.
pub const SQLITE: &str = "sqlite";

impl StoreConfig {
    /// Whether this is the embedded default (no `[store]` written).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[ocsp]`: what the OCSP responder may spend. Anyone who reaches the HTTP listener chooses
/// the CertIDs and nonces, so both the cache and the signing are bounded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcspSettings {
    /// Bytes the cache of signed responses may hold, bookkeeping counted (default 64 MiB);
    /// the oldest go first. 0 caches nothing.
    pub cache_bytes: usize,
    /// HSM sessions of OCSP's own (default 2): OCSP signatures never use the sessions
    /// issuance signs on, nor more than these.
    pub signing_sessions: usize,
    /// Responses that may wait for one of those sessions (default 16); beyond, the answer is
    /// an unsigned `tryLater` at once.
    pub signing_queue: usize,
    /// Serials known to be issued that OCSP keeps in memory (default 1,000,000; about 100
    /// bytes each); past it the set starts over. A serial not in it costs one database read,
    /// then answers from memory. Revocations are all kept, whatever this says.
    pub known_serials: usize,
}

/// Default of `[ocsp] signing_sessions`.
pub const DEFAULT_OCSP_SIGNING_SESSIONS: usize = 2;
/// Default of `[ocsp] signing_queue`.
pub const DEFAULT_OCSP_SIGNING_QUEUE: usize = 16;

impl Default for OcspSettings {
    fn default() -> Self {
        Self {
            cache_bytes: nuc_publisher::ocsp::DEFAULT_CACHE_BYTES,
            signing_sessions: DEFAULT_OCSP_SIGNING_SESSIONS,
            signing_queue: DEFAULT_OCSP_SIGNING_QUEUE,
            known_serials: 1_000_000,
        }
    }
}

/// `[audit]`: the Merkle tree over the audit log and its signed checkpoints (see
/// `docs/audit.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The log's name, first line of every checkpoint and name of its signing key. It must
    /// never change once checkpoints exist: auditors and witnesses pin it.
    pub origin: String,
    /// A checkpoint is signed once this many records are not yet under one (default 1,000)…
    pub checkpoint_every_records: u64,
    /// …or once this long has passed since the last checkpoint (default 60 s) and a record
    /// is not under it, whichever comes first; and at shutdown. Checked every half second.
    pub checkpoint_every_secs: u64,
    /// The witnesses whose cosignatures are accepted and served with the checkpoints: their
    /// verifier keys (`name+id+base64`, as `nuc audit witness` prints them).
    pub witnesses: Vec<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            origin: DEFAULT_AUDIT_ORIGIN.into(),
            checkpoint_every_records: 1_000,
            checkpoint_every_secs: 60,
            witnesses: Vec::new(),
        }
    }
}

/// Default of `[audit] origin`.
pub const DEFAULT_AUDIT_ORIGIN: &str = "pki.gov.kz/nuc-rk/audit";

impl AuditSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[log]`: how the service and the CLI write their log to stderr. Whatever the format, IINs
/// are masked on the way out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (the default: one human-readable line per event, coloured only on a terminal)
    /// or `json` (one JSON object per line: timestamp, level, fields with the message, and the
    /// current span and its parents).
    pub format: LogFormat,
}

impl LogSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "[log] format = {other:?}: must be \"text\" or \"json\""
            )),
        }
    }
}

impl From<LogFormat> for &'static str {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The whole of `nuc.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub service: ServiceConfig,
    pub publication: PublicationConfig,
    pub hsm: HsmConfig,
    pub ca: CaConfig,
    pub policy: PolicyConfig,
    #[serde(default)]
    pub grpc: GrpcConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub ra: RaSettings,
    #[serde(default)]
    pub notifications: NotificationsConfig,
    #[serde(default)]
    pub ocsp: OcspSettings,
    #[serde(default, skip_serializing_if = "StoreConfig::is_default")]
    pub store: StoreConfig,
    #[serde(default, skip_serializing_if = "AuditSettings::is_default")]
    pub audit: AuditSettings,
    #[serde(default, skip_serializing_if = "LogSettings::is_default")]
    pub log: LogSettings,
}

impl Config {
    /// Defaults for a developer's home: loopback, SoftHSM2 under the home, dev PINs.
    pub fn dev(http_listen: &str) -> Self {
        let ca = CaSettings::dev(http_listen);
        Self {
            service: ServiceConfig {
                http_listen: http_listen.into(),
                shutdown_grace_secs: default_shutdown_grace_secs(),
                reload_secs: default_reload_secs(),
                development: false,
                admin_listen: Some(DEFAULT_ADMIN_LISTEN.into()),
            },
            publication: ca.publication,
            hsm: ca.hsm,
            ca: ca.ca,
            policy: ca.policy,
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            registry: RegistryConfig::default(),
            ra: RaSettings::default(),
            notifications: NotificationsConfig::default(),
            ocsp: OcspSettings::default(),
            store: StoreConfig::default(),
            audit: AuditSettings::default(),
            log: LogSettings::default(),
        }
    }

    /// The CA's sections, as nuc-ca reads them.
    pub fn ca_settings(&self) -> CaSettings {
        CaSettings {
            publication: self.publication.clone(),
            hsm: self.hsm.clone(),
            ca: self.ca.clone(),
            policy: self.policy.clone(),
        }
    }

    /// Reads `DIR/nuc.toml`, refusing unknown keys.
    pub fn open(dir: &Path) -> Result<Self, HomeError> {
        let path = nuc_ca::Home::config_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|source| HomeError::Io {
            path: path.clone(),
            source,
        })?;
        let config: Self =
            toml::from_str(&text).map_err(|source| HomeError::Toml { path, source })?;
        config.check()?;
        Ok(config)
    }

    /// Refuses bounds that would stop a listener from serving at all.
    fn check(&self) -> Result<(), HomeError> {
        let positive = [
            (
                "[service] shutdown_grace_secs",
                self.service.shutdown_grace_secs,
            ),
            ("[service] reload_secs", self.service.reload_secs),
            (
                "[grpc] handshake_timeout_secs",
                self.grpc.handshake_timeout_secs,
            ),
            ("[grpc] idle_timeout_secs", self.grpc.idle_timeout_secs),
            ("[grpc] max_connections", self.grpc.max_connections as u64),
            (
                "[http] header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("[http] idle_timeout_secs", self.http.idle_timeout_secs),
            ("[http] max_connections", self.http.max_connections as u64),
            (
                "[http] readiness_timeout_ms",
                self.http.readiness_timeout_ms,
            ),
            ("[store] pool_size", self.store.pool_size as u64),
            (
                "[audit] checkpoint_every_records",
                self.audit.checkpoint_every_records,
            ),
            (
                "[audit] checkpoint_every_secs",
                self.audit.checkpoint_every_secs,
            ),
            (
                "[store] connect_timeout_secs",
                self.store.connect_timeout_secs,
            ),
        ];
        self.notifications.check()?;
        match positive.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(HomeError::Invalid(format!(
                "{name} = 0: must be at least 1 (0 would close every connection or stop at once)"
            ))),
            None => Ok(()),
        }
    }

    /// Writes `DIR/nuc.toml` (a new file: never over an existing one).
    pub fn write_new(&self, dir: &Path) -> Result<PathBuf, HomeError> {
        let path = nuc_ca::Home::config_path(dir);
        let text = toml::to_string(self).map_err(|e| HomeError::Invalid(e.to_string()))?;
        let header = "# NUC RK core service configuration (written by `nuc init`; see README.md).\n\
                      # PINs here are dev defaults: production sets NUC_HSM_PIN / NUC_HSM_SO_PIN instead.\n\n";
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Private from its first byte: it may hold PINs.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::private_home::FILE_MODE)
            .open(&path)
            .map_err(|source| HomeError::Io {
                path: path.clone(),
                source,
            })?;
        f.write_all(format!("{header}{text}").as_bytes())
            .map_err(|source| HomeError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_config_round_trips_and_the_ca_reads_its_sections_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::dev("127.0.0.1:9000");
        c.service.development = true;
        c.registry.url = "http://127.0.0.1:9002".into();
        c.write_new(dir.path()).unwrap();
        let back = Config::open(dir.path()).unwrap();
        assert!(back.service.development);
        assert_eq!(back.registry.url, "http://127.0.0.1:9002");
        let home = nuc_ca::Home::open(dir.path()).unwrap();
        assert_eq!(home.config.publication.base_url, "http://127.0.0.1:9000");
        assert_eq!(home.config.hsm.token_label, back.hsm.token_label);
        // Never over an existing file.
        assert!(c.write_new(dir.path()).is_err());
    }

    #[test]
    fn the_listeners_bounds_have_their_defaults_and_a_zero_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        Config::dev("127.0.0.1:9000").write_new(dir.path()).unwrap();
        let back = Config::open(dir.path()).unwrap();
        assert_eq!(back.service.shutdown_grace_secs, 10);
        assert_eq!(
            (
                back.grpc.handshake_timeout_secs,
                back.grpc.idle_timeout_secs
            ),
            (10, 300)
        );
        assert_eq!(back.grpc.max_connections, 1024);
        assert_eq!(back.http.header_read_timeout_secs, 10);
        assert_eq!(back.http.max_connections, 4096);
        let path = nuc_ca::Home::config_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("max_connections = 4096", "max_connections = 0"),
        )
        .unwrap();
        let e = Config::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("[http] max_connections = 0"), "{e}");
    }

    #[test]
    fn the_root_crl_is_the_ceremonys_unless_the_home_says_service() {
        use nuc_ca::RootCrlBy;
        let dir = tempfile::tempdir().unwrap();
        Config::dev("127.0.0.1:9000").write_new(dir.path()).unwrap();
        let path = nuc_ca::Home::config_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        // Written out by `nuc init`, so an administrator sees the choice.
        assert!(text.contains("root_crl_by = \"ceremony\"\n"), "{text}");
        let with = |line: &str| {
            std::fs::write(&path, text.replace("root_crl_by = \"ceremony\"\n", line)).unwrap();
            Config::open(dir.path())
        };
        // A home written before the setting existed keeps its root offline.
        let c = with("").unwrap();
        assert_eq!(c.publication.root_crl_by, RootCrlBy::Ceremony);
        assert_eq!(
            nuc_ca::Home::open(dir.path())
                .unwrap()
                .config
                .publication
                .root_crl_by,
            RootCrlBy::Ceremony
        );
        let c = with("root_crl_by = \"service\"\n").unwrap();
        assert_eq!(c.publication.root_crl_by, RootCrlBy::Service);
        let e = with("root_crl_by = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("root_crl_by") && e.contains("ceremony"), "{e}");
    }

    #[test]
    fn a_typo_in_a_service_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Config::dev("127.0.0.1:9000").write_new(dir.path()).unwrap();
        let path = nuc_ca::Home::config_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("[registry]\n", "[registry]\ntimeout_msec = 5\n"),
        )
        .unwrap();
        let e = Config::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("timeout_msec"), "{e}");
    }

    #[test]
    fn the_log_format_is_text_unless_the_home_says_json_and_nothing_else_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        Config::dev("127.0.0.1:9000").write_new(dir.path()).unwrap();
        let path = nuc_ca::Home::config_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        // The default is not written out, and reads back as text.
        assert!(!text.contains("[log]"), "{text}");
        assert_eq!(
            Config::open(dir.path()).unwrap().log.format,
            LogFormat::Text
        );
        let with = |section: &str| {
            std::fs::write(&path, format!("{text}\n[log]\n{section}")).unwrap();
            Config::open(dir.path())
        };
        assert_eq!(with("").unwrap().log.format, LogFormat::Text);
        assert_eq!(
            with("format = \"text\"\n").unwrap().log.format,
            LogFormat::Text
        );
        let c = with("format = \"json\"\n").unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        // Written back, a json home says so.
        let round = toml::to_string(&c).unwrap();
        assert!(round.contains("[log]\nformat = \"json\""), "{round}");
        let e = with("format = \"xml\"\n").unwrap_err().to_string();
        assert!(
            e.contains("[log] format = \"xml\"") && e.contains("\"json\""),
            "{e}"
        );
        let e = with("format = \"JSON\"\n").unwrap_err().to_string();
        assert!(e.contains("[log] format"), "{e}");
        let e = with("colour = false\n").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn ocsp_bounds_default_and_are_read() {
        let dir = tempfile::tempdir().unwrap();
        Config::dev("127.0.0.1:9000").write_new(dir.path()).unwrap();
        let c = Config::open(dir.path()).unwrap();
        assert_eq!(c.ocsp.cache_bytes, 64 * 1024 * 1024);
        assert_eq!((c.ocsp.signing_sessions, c.ocsp.signing_queue), (2, 16));
        assert_eq!(c.ocsp.known_serials, 1_000_000);
        let path = nuc_ca::Home::config_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        // The whole [ocsp] section out, then one written by hand with two of its keys.
        let text = text.replace("[ocsp]\n", "");
        let text = text
            .lines()
            .filter(|l| {
                !["cache_bytes", "signing_", "known_serials"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(
            &path,
            format!("{text}\n[ocsp]\ncache_bytes = 1024\nsigning_queue = 0\n"),
        )
        .unwrap();
        let c = Config::open(dir.path()).unwrap();
        assert_eq!(
            (
                c.ocsp.cache_bytes,
                c.ocsp.signing_sessions,
                c.ocsp.signing_queue
            ),
            (1024, 2, 0)
        );
        assert_eq!(
            c.ocsp.known_serials, 1_000_000,
            "a key left out takes its default"
        );
    }

    #[test]
    fn the_retry_settings_have_their_defaults_and_one_that_never_waits_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        Config::dev("127.0.0.1:9000").write_new(dir.path()).unwrap();
        let path = nuc_ca::Home::config_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let policy = Config::open(dir.path())
            .unwrap()
            .notifications
            .retry_policy();
        assert_eq!(
            policy,
            nuc_store::RetryPolicy {
                max_attempts: 10,
                base_secs: 30,
                max_secs: 3600
            }
        );
        let with = |from: &str, to: &str| {
            assert!(text.contains(from), "{from} not in {text}");
            std::fs::write(&path, text.replace(from, to)).unwrap();
            Config::open(dir.path()).map(|c| c.notifications.retry_policy())
        };
        let refused = |from: &str, to: &str| with(from, to).unwrap_err().to_string();
        let e = refused("max_attempts = 10", "max_attempts = 0");
        assert!(e.contains("[notifications] max_attempts = 0"), "{e}");
        let e = refused("retry_base_secs = 30", "retry_base_secs = 0");
        assert!(e.contains("[notifications] retry_base_secs = 0"), "{e}");
        let e = refused("retry_max_secs = 3600", "retry_max_secs = 10");
        assert!(
            e.contains("retry_max_secs = 10 is below retry_base_secs = 30"),
            "{e}"
        );
        assert_eq!(
            with("retry_base_secs = 30", "retry_base_secs = 1")
                .unwrap()
                .base_secs,
            1
        );
    }
}
