//! When CRLs go out: at start when none is current, a complete and a delta CRL every
//! `[publication] crl_interval_secs`, a delta shortly after each revocation, and whenever the
//! scheduler asks (PublisherService). Building and signing them is nuc-publisher's; this module
//! only decides the moments, and keeps two publications from racing for one CRL number.
//!
//! The root's CRL is a ceremony's (`crate::root_crl`): at each of these moments the publisher
//! only looks at the one served and warns when its next ceremony is due. It signs one itself
//! only in a home with `[publication] root_crl_by = "service"`, the one case where the CA was
//! opened with the root key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::instance::Instance;
use crate::root_crl;
use nuc_ca::RootCrlBy;
use nuc_publisher::crl::{self, PublishError, Published, PublishedDelta, Validity};
use nuc_store::{AuditLog, CrlRow, PublicationStore, PublisherLease, StatusChange, StatusFeed};
use tokio::sync::watch;

/// Default `[publication]` settings.
const DEFAULT_FULL_VALIDITY_SECS: i64 = 86_400;
const DEFAULT_DELTA_VALIDITY_SECS: i64 = 7_200;
const DEFAULT_INTERVAL_SECS: i64 = 3_600;
const DEFAULT_DELTA_AFTER_REVOCATION_MS: u64 = 1_000;

/// The service's CRL publisher.
pub struct Publisher {
    inst: Arc<Instance>,
    validity: Validity,
    interval: Duration,
    delta_delay: Duration,
    /// Who signs the root CRL, and how long before its nextUpdate the next one is due.
    root_crl_by: RootCrlBy,
    root_crl_due_secs: i64,
    /// One publication at a time: two would build CRLs with the same number, and the database
    /// would refuse the second after its HSM signature was spent.
    one_at_a_time: Mutex<()>,
    /// Woken by every revocation that any instance on the store commits (the store's status
    /// feed), for the delta CRL that reports it.
    revoked: Arc<tokio::sync::Notify>,
}

/// Why a publication did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Another instance on the store holds the publisher lease: it publishes, this one does
    /// not (CRL numbers stay one sequence, signed by one instance at a time).
    #[error("CRLs are published by another instance of this CA (it holds the publisher lease)")]
    NotPublisher,
}

impl From<nuc_store::StoreError> for PublicationError {
    fn from(e: nuc_store::StoreError) -> Self {
        Self::Publish(e.into())
    }
}

impl Publisher {
    pub fn new(inst: Arc<Instance>) -> Result<Self, nuc_store::StoreError> {
        let revoked = Arc::new(tokio::sync::Notify::new());
        let wake = revoked.clone();
        inst.store
            .subscribe_status(Arc::new(move |change: &StatusChange| {
                if let StatusChange::Revoked { .. } = change {
                    wake.notify_one();
                }
            }))?;
        let cfg = &inst.home.config.publication;
        let validity = Validity {
            full_secs: cfg.crl_validity_secs.unwrap_or(DEFAULT_FULL_VALIDITY_SECS),
            delta_secs: cfg
                .delta_validity_secs
                .unwrap_or(DEFAULT_DELTA_VALIDITY_SECS),
        };
        let interval = Duration::from_secs(
            cfg.crl_interval_secs
                .unwrap_or(DEFAULT_INTERVAL_SECS)
                .max(1) as u64,
        );
        let delta_delay = Duration::from_millis(
            cfg.delta_after_revocation_ms
                .unwrap_or(DEFAULT_DELTA_AFTER_REVOCATION_MS),
        );
        let root_crl_by = cfg.root_crl_by;
        let root_crl_due_secs = cfg
            .root_crl_due_days
            .unwrap_or(root_crl::DEFAULT_DUE_DAYS)
            .max(0)
            * 86_400;
        Ok(Self {
            inst,
            validity,
            interval,
            delta_delay,
            root_crl_by,
            root_crl_due_secs,
            one_at_a_time: Mutex::new(()),
            revoked,
        })
    }

    /// Refuses unless this instance holds the publisher lease (taking it if it is free).
    fn lease(&self) -> Result<(), PublicationError> {
        if self.inst.store.hold_publisher_lease()? {
            Ok(())
        } else {
            Err(PublicationError::NotPublisher)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A complete and a delta CRL, now (blocking: HSM and durable commit).
    pub fn publish(&self, actor: &str) -> Result<Published, PublicationError> {
        let _one = self.lock();
        self.lease()?;
        let started = Instant::now();
        let p = crl::publish_as(self.inst.crls(), now(), self.validity, actor)?;
        tracing::info!(
            full = p.full_number,
            delta = p.delta_number,
            entries = p.full_entries,
            millis = started.elapsed().as_millis() as u64,
            %actor,
            "CRLs published"
        );
        Ok(p)
    }

    /// A publication the scheduler asked for: the request with its reason in the audit log,
    /// then a complete and a delta CRL (their own `crl.published` records name the same
    /// caller).
    pub fn publish_requested(
        &self,
        actor: &str,
        reason: &str,
    ) -> Result<Published, PublicationError> {
        self.lease()?;
        self.inst.store.audit(&nuc_store::AuditEntry {
            actor: actor.to_owned(),
            action: "crl.publication_requested".into(),
            object: "crl:issuing".into(),
            details: serde_json::json!({ "reason": reason }),
        })?;
        self.publish(actor)
    }

    /// A delta CRL alone, now; both CRLs when no complete CRL exists yet.
    pub fn publish_delta(&self, actor: &str) -> Result<Option<PublishedDelta>, PublicationError> {
        let started = Instant::now();
        let delta = {
            let _one = self.lock();
            self.lease()?;
            crl::publish_delta(self.inst.crls(), now(), self.validity.delta_secs, actor)?
        };
        match &delta {
            Some(d) => tracing::info!(
                delta = d.number,
                base = d.base_number,
                entries = d.entries,
                millis = started.elapsed().as_millis() as u64,
                "delta CRL published"
            ),
            None => {
                self.publish(actor)?;
            }
        }
        Ok(delta)
    }

    /// The CRLs served now, without their bytes.
    pub fn current(&self) -> Result<(Option<CrlRow>, Option<CrlRow>), nuc_store::StoreError> {
        let store = &self.inst.store;
        Ok((
            store.latest_full_crl_info()?,
            store.latest_delta_crl_info()?,
        ))
    }

    /// Publishes on its own until `stop`: at once when the current complete CRL is missing or
    /// past its nextUpdate, then every interval, and a delta `delta_after_revocation_ms` after
    /// a revocation (revocations arriving meanwhile go out in the same delta).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let revocations = self.revoked.clone();
        let me = self.clone();
        let stale = blocking(move || {
            me.root_crl();
            match me.inst.store.latest_full_crl_info() {
                Ok(Some(row)) => row.next_update <= now(),
                _ => true,
            }
        })
        .await
        .unwrap_or(true);
        if stale {
            self.publish_in_background("system:publisher").await;
        }
        let mut next_full = tokio::time::Instant::now() + self.interval;
        // Set by a revocation: when the delta that reports it goes out.
        let mut delta_at: Option<tokio::time::Instant> = None;
        loop {
            let delta_due = async {
                match delta_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next_full) => {
                    next_full += self.interval;
                    // The complete publication carries a delta too.
                    delta_at = None;
                    let me = self.clone();
                    blocking(move || me.root_crl()).await;
                    self.publish_in_background("system:publisher").await;
                }
                _ = revocations.notified(), if delta_at.is_none() => {
                    delta_at = Some(tokio::time::Instant::now() + self.delta_delay);
                }
                _ = delta_due => {
                    delta_at = None;
                    let me = self.clone();
                    blocking(move || {
                        match me.publish_delta("system:publisher") {
                            Ok(_) => {}
                            Err(PublicationError::NotPublisher) => tracing::debug!("another instance publishes the delta CRL"),
                            Err(e) => {
                                tracing::error!(error = %e, "delta CRL after a revocation failed; the next publication covers it");
                            }
                        }
                    })
                    .await;
                }
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    async fn publish_in_background(self: &Arc<Self>, actor: &'static str) {
        let me = self.clone();
        blocking(move || {
            match me.publish(actor) {
                Ok(_) => {}
                Err(PublicationError::NotPublisher) => {
                    tracing::debug!("another instance publishes CRLs")
                }
                Err(e) => {
                    tracing::error!(error = %e, "CRL publication failed; will retry at the next interval")
                }
            }
        })
        .await;
    }

    /// Looks at the root CRL served: in a ceremony home, warns when the ceremony is due (or
    /// overdue); in a `service` home, signs the next one then. Nothing here stops the issuing
    /// CA's publication.
    fn root_crl(&self) {
        let now = now();
        let served = match root_crl::current(&self.inst.home) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "root CRL: the one served cannot be read");
                return;
            }
        };
        let due = served.is_none_or(|c| c.next_update - self.root_crl_due_secs <= now);
        if !due {
            return;
        }
        match self.root_crl_by {
            RootCrlBy::Ceremony => match served {
                None => tracing::warn!(
                    path = %root_crl::path(&self.inst.home).display(),
                    "no root CRL is served: the root CRL ceremony is due (`nuc root crl`)"
                ),
                Some(c) if c.next_update <= now => tracing::error!(
                    number = c.number,
                    next_update = %nuc_core::time::rfc3339(c.next_update),
                    "the root CRL served is past its nextUpdate: the root CRL ceremony is overdue (`nuc root crl`)"
                ),
                Some(c) => tracing::warn!(
                    number = c.number,
                    next_update = %nuc_core::time::rfc3339(c.next_update),
                    days_left = (c.next_update - now) / 86_400,
                    "the root CRL served comes close to its nextUpdate: the root CRL ceremony is due (`nuc root crl`)"
                ),
            },
            RootCrlBy::Service if self.lease().is_err() => {
                tracing::debug!("another instance publishes the root CRL")
            }
            RootCrlBy::Service => match root_crl::make(
                &self.inst.home,
                self.inst.crls(),
                self.inst.store.as_ref(),
                "system:publisher",
                root_crl::DEFAULT_NEXT_UPDATE_DAYS,
                now,
            ) {
                Ok(m) => tracing::info!(
                    number = m.number,
                    next_update = m.next_update,
                    "root CRL published by the service"
                ),
                Err(e) => tracing::error!(error = %e, "root CRL could not be published"),
            },
        }
    }
}

/// CRLs carry the real time, also when tests move the RA's clock (`NUC_CLOCK_OFFSET_SECS`):
/// relying parties compare thisUpdate and nextUpdate with their own clocks.
fn now() -> i64 {
    nuc_core::time::now_unix()
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "publication task failed");
            None
        }
    }
}
