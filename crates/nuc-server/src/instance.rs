//! One instance of the service, opened: its home (configuration, directories), its store, its
//! CA and its RA. Every part of the server — CLI commands, gRPC handlers, the HTTP listener,
//! the CRL publisher, the outbox sender — is handed what it needs from here, as the narrow
//! handle of its role: the RA as [`Ra`], the publisher a [`CrlContext`], verification
//! read-only [`Lookups`], the sender an [`Outbox`].
//!
//! The store is opened here, through [`crate::store`], as `[store]` of the home says.

use std::path::Path;
use std::sync::Arc;

use nuc_ca::{Ca, CaError, Home};
use nuc_publisher::CrlContext;
use nuc_ra::{Clock, Ra, RaConfig};
use nuc_store::StoreError;
use nuc_verify::Lookups;

use crate::config::Config;
use crate::store::{OpenStoreError, Store};

/// Why an instance could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    OpenStore(#[from] OpenStoreError),
    /// The `[registry]` section is refused; the message names the setting.
    #[error("[registry] {0}")]
    Registry(String),
}

/// An opened instance. Cheap to share behind an `Arc`.
pub struct Instance {
    /// The whole of `nuc.toml`, as the service reads it.
    pub config: Config,
    /// The home as the CA sees it (its sections of `nuc.toml`, its paths).
    pub home: Home,
    pub store: Store,
    pub ca: Arc<Ca>,
    pub ra: Arc<Ra>,
}

/// The store of an initialised home, as its `[store]` says.
pub fn open_store(home: &Home) -> Result<Store, OpenError> {
    let config = Config::open(&home.dir).map_err(CaError::from)?;
    Ok(crate::store::open(&home.dir, &config.store)?)
}

impl Instance {
    /// Opens the home at `dir`: configuration, store, CA (HSM login), and the RA with the
    /// registry of the configuration and `clock`.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let config = Config::open(dir).map_err(CaError::from)?;
        let home = Home {
            dir: dir.into(),
            config: config.ca_settings(),
        };
        let store = crate::store::open(dir, &config.store)?;
        let cfg = &config;
        let mut ca = Ca::open(&home, store.as_ref())?;
        // OCSP signs on sessions of its own, so a nonce flood cannot hold issuance up.
        ca.set_ocsp_lane(cfg.ocsp.signing_sessions, cfg.ocsp.signing_queue)?;
        let ca = Arc::new(ca);
        let registry = cfg
            .registry
            .client(dir)
            .map_err(|e| OpenError::Registry(e.to_string()))?;
        let ra = Arc::new(Ra::new(
            Arc::new(store.clone()),
            ca.clone(),
            Arc::new(registry),
            clock,
            RaConfig {
                request_ttl_secs: cfg.ra.request_ttl_days * 86_400,
                download_url: cfg.ra.download_url.clone(),
                payload_window_secs: cfg.ra.payload_window_secs,
                clock_skew_secs: cfg.ra.clock_skew_secs,
                max_remote_renewals: cfg.ra.max_remote_renewals,
            },
        ));
        Ok(Self {
            config,
            home,
            store,
            ca,
            ra,
        })
    }

    /// What CRLs are made with: the CA's CRL signer, revocations and publications.
    pub fn crls(&self) -> CrlContext<'_> {
        CrlContext {
            ca: self.ca.as_ref(),
            store: &self.store,
        }
    }

    /// What a signature is verified against (F8): read-only.
    pub fn lookups(&self) -> Lookups<'_> {
        Lookups {
            issuing_der: &self.ca.issuing().cert_der,
            certificates: self.store.as_ref(),
            revocations: self.store.as_ref(),
        }
    }
}
