//! The whole of `nuc.toml`, as the service reads it: the CA's sections (owned by nuc-ca,
//! [`CaSettings`]) and the service's own — listeners, the registry, the RA, notifications.
//!
//! The CA reads only its sections; the service reads the whole file and refuses unknown keys,
//! so a typo is an error at start, not a silently ignored setting.

use std::path::{Path, PathBuf};

use nuc_ca::home::{CaConfig, CaSettings, HomeError, HsmConfig, PolicyConfig, PublicationConfig};
use serde::{Deserialize, Serialize};

/// `[service]`: the HTTP listener, and whether this is a development home.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// HTTP for relying parties (OCSP, CRLs, CA certificates) and health. Loopback by default.
    pub http_listen: String,
    /// A home for development and tests (`nuc init --development`): only here does the service
    /// accept its test hooks — a clock moved by `NUC_CLOCK_OFFSET_SECS`, and plaintext gRPC
    /// with the caller's role in a header (`[grpc] dev_plaintext`). Never set in production.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub development: bool,
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
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8471".into(),
            tls_cert: "tls/server.pem".into(),
            tls_key: "tls/server.key".into(),
            dev_plaintext: false,
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
}

impl Default for RaSettings {
    fn default() -> Self {
        Self {
            request_ttl_days: 30,
            download_url: "https://pki.gov.kz/download/{number}".into(),
            payload_window_secs: nuc_ra::DEFAULT_PAYLOAD_WINDOW_SECS,
            clock_skew_secs: nuc_ra::DEFAULT_CLOCK_SKEW_SECS,
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
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            sink: "file".into(),
            dir: "outbox".into(),
            smtp_relay: None,
            from: "noreply@pki.gov.kz".into(),
            interval_secs: 2,
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
    pub registry: RegistryConfig,
    #[serde(default)]
    pub ra: RaSettings,
    #[serde(default)]
    pub notifications: NotificationsConfig,
}

impl Config {
    /// Defaults for a developer's home: loopback, SoftHSM2 under the home, dev PINs.
    pub fn dev(http_listen: &str) -> Self {
        let ca = CaSettings::dev(http_listen);
        Self {
            service: ServiceConfig {
                http_listen: http_listen.into(),
                development: false,
            },
            publication: ca.publication,
            hsm: ca.hsm,
            ca: ca.ca,
            policy: ca.policy,
            grpc: GrpcConfig::default(),
            registry: RegistryConfig::default(),
            ra: RaSettings::default(),
            notifications: NotificationsConfig::default(),
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
        toml::from_str(&text).map_err(|source| HomeError::Toml { path, source })
    }

    /// Writes `DIR/nuc.toml` (a new file: never over an existing one).
    pub fn write_new(&self, dir: &Path) -> Result<PathBuf, HomeError> {
        let path = nuc_ca::Home::config_path(dir);
        let text = toml::to_string(self).map_err(|e| HomeError::Invalid(e.to_string()))?;
        let header = "# NUC RK core service configuration (written by `nuc init`; see README.md).\n\
                      # PINs here are dev defaults: production sets NUC_HSM_PIN / NUC_HSM_SO_PIN instead.\n\n";
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
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
}
