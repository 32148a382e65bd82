//! A service home, as the CA sees it: its sections of `nuc.toml` (`[publication]`, `[hsm]`,
//! `[ca]`, `[policy]`), the HSM token directory, the database path, the policy copy and the
//! published CA certificates. Everything an instance needs lives under one directory, so a
//! home can be backed up, moved, or thrown away as a whole.
//!
//! The service's own sections (listeners, registry, RA, notifications) are nuc-server's: the
//! CA reads past them, and never carries settings it does not use.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("configuration: {0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.into(),
        source,
    }
}

/// `[publication]`: the URLs that certificates carry. Unset ones derive from `base_url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicationConfig {
    pub base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_full: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_delta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_issuers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_crl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_issuers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cps: Option<String>,
    /// Seconds between thisUpdate and nextUpdate of the CRLs (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_validity_secs: Option<i64>,
    /// Seconds between two CRL publications by the built-in timer (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_interval_secs: Option<i64>,
    /// Seconds a delta CRL is valid (default two hours): deltas are published with every
    /// complete CRL and again shortly after each revocation, so they can expire sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_validity_secs: Option<i64>,
    /// Milliseconds the service waits after a revocation before publishing a delta CRL
    /// (default 1000): revocations that arrive together go out in one delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_after_revocation_ms: Option<u64>,
    /// Who signs the root CA's CRL (default `ceremony`: the service never opens the root key).
    #[serde(default)]
    pub root_crl_by: RootCrlBy,
    /// Days before the root CRL's nextUpdate from which it is due again (default 30): the
    /// service warns in its log (`ceremony`) or signs the next one itself (`service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_crl_due_days: Option<i64>,
}

/// Who signs the root CA's CRL, and so whether the service may hold the root key at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootCrlBy {
    /// An administrator, with `nuc root crl`, while the root key is present for the ceremony.
    /// The service serves the file that made and never looks the root key up: the root can stay
    /// offline, as production CAs keep it.
    #[default]
    Ceremony,
    /// The service itself, on its publication timer: it opens the root key at start and keeps
    /// it. Only for homes whose root is not meant to be offline.
    Service,
}

impl RootCrlBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RootCrlBy::Ceremony => "ceremony",
            RootCrlBy::Service => "service",
        }
    }
}

impl PublicationConfig {
    fn url(&self, explicit: &Option<String>, path: &str) -> String {
        explicit
            .clone()
            .unwrap_or_else(|| format!("{}{path}", self.base_url.trim_end_matches('/')))
    }

    /// Fills `{crl_full}`, `{ocsp}`… in a profile's URL template.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{crl_full}", &self.url(&self.crl_full, "/crl/issuing.crl"))
            .replace(
                "{crl_delta}",
                &self.url(&self.crl_delta, "/crl/issuing-delta.crl"),
            )
            .replace("{ocsp}", &self.url(&self.ocsp, "/ocsp"))
            .replace(
                "{ca_issuers}",
                &self.url(&self.ca_issuers, "/ca/issuing.cer"),
            )
            .replace("{root_crl}", &self.url(&self.root_crl, "/crl/root.crl"))
            .replace(
                "{root_issuers}",
                &self.url(&self.root_issuers, "/ca/root.cer"),
            )
            .replace("{cps}", &self.url(&self.cps, "/cps"))
    }
}

/// `[hsm]`: the PKCS#11 module and token. PINs here are for dev homes only; `NUC_HSM_PIN`
/// and `NUC_HSM_SO_PIN` take precedence and are what production should use.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    pub module: PathBuf,
    pub token_label: String,
    /// SoftHSM2 only: its configuration file, relative to the home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softhsm2_conf: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub so_pin: Option<String>,
}

impl std::fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PINs never reach a log line.
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("softhsm2_conf", &self.softhsm2_conf)
            .finish_non_exhaustive()
    }
}

impl HsmConfig {
    pub fn user_pin(&self) -> Result<String, HomeError> {
        std::env::var("NUC_HSM_PIN")
            .ok()
            .or_else(|| self.pin.clone())
            .ok_or_else(|| {
                HomeError::Invalid("no HSM user PIN: set NUC_HSM_PIN or [hsm] pin".into())
            })
    }

    pub fn so_pin(&self) -> Result<String, HomeError> {
        std::env::var("NUC_HSM_SO_PIN")
            .ok()
            .or_else(|| self.so_pin.clone())
            .ok_or_else(|| {
                HomeError::Invalid("no HSM SO PIN: set NUC_HSM_SO_PIN or [hsm] so_pin".into())
            })
    }
}

/// `[ca]`: algorithms of the CA's own keys (used by `nuc init`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    pub root_key: String,
    pub issuing_key: String,
    pub ocsp_key: String,
}

/// `[policy]`: where the profiles are, relative to the home.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub file: PathBuf,
}

/// The CA's sections of `nuc.toml`. Other sections (the service's) are read past: the service
/// checks the whole file, with unknown keys refused, when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaSettings {
    pub publication: PublicationConfig,
    pub hsm: HsmConfig,
    pub ca: CaConfig,
    pub policy: PolicyConfig,
}

impl CaSettings {
    /// Defaults for a developer's home: URLs on `http_listen`, SoftHSM2 under the home, dev
    /// PINs.
    pub fn dev(http_listen: &str) -> Self {
        Self {
            publication: PublicationConfig {
                base_url: format!("http://{http_listen}"),
                crl_full: None,
                crl_delta: None,
                ocsp: None,
                ca_issuers: None,
                root_crl: None,
                root_issuers: None,
                cps: None,
                crl_validity_secs: None,
                crl_interval_secs: None,
                delta_validity_secs: None,
                delta_after_revocation_ms: None,
                root_crl_by: RootCrlBy::Ceremony,
                root_crl_due_days: None,
            },
            hsm: HsmConfig {
                module: std::env::var_os("NUC_PKCS11_MODULE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into()),
                token_label: "nuc-ca".into(),
                softhsm2_conf: Some("hsm/softhsm2.conf".into()),
                pin: Some("nuc-dev-user-pin".into()),
                so_pin: Some("nuc-dev-so-pin".into()),
            },
            ca: CaConfig {
                root_key: "rsa-3072".into(),
                issuing_key: "rsa-2048".into(),
                ocsp_key: "rsa-2048".into(),
            },
            policy: PolicyConfig {
                file: "policy/profiles.toml".into(),
            },
        }
    }
}

/// An opened home directory.
#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
    pub config: CaSettings,
}

impl Home {
    pub fn config_path(dir: &Path) -> PathBuf {
        dir.join("nuc.toml")
    }

    /// Reads `DIR/nuc.toml`.
    pub fn open(dir: &Path) -> Result<Self, HomeError> {
        let path = Self::config_path(dir);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let config = toml::from_str(&text).map_err(|source| HomeError::Toml {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            dir: dir.into(),
            config,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("nuc.db")
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.join(&self.config.policy.file)
    }

    /// The SoftHSM2 configuration this home wants in `SOFTHSM2_CONF`, if it uses SoftHSM2.
    pub fn softhsm2_conf(&self) -> Option<PathBuf> {
        self.config
            .hsm
            .softhsm2_conf
            .as_ref()
            .map(|p| self.dir.join(p))
    }

    /// Whether the process environment already points SoftHSM2 at this home's token.
    /// SoftHSM2 reads `SOFTHSM2_CONF` once, when the module loads; the binary re-executes
    /// itself with the variable set rather than mutate its own environment.
    pub fn softhsm2_env_ok(&self) -> bool {
        match self.softhsm2_conf() {
            None => true,
            Some(want) => std::env::var_os("SOFTHSM2_CONF").is_some_and(|have| {
                let have = PathBuf::from(have);
                have == want || have.canonicalize().ok() == want.canonicalize().ok()
            }),
        }
    }
}
