//! When CRLs go out: at start when none is current, a complete and a delta CRL every
//! `[publication] crl_interval_secs`, a delta shortly after each revocation, and whenever the
//! scheduler asks (PublisherService). Building and signing them is nuc-publisher's; this module
//! only decides the moments, keeps two publications from racing for one CRL number, and keeps
//! the root's CRL fresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::instance::Instance;
use nuc_publisher::crl::{self, PublishError, Published, PublishedDelta, Validity};
use nuc_store::{AuditLog, CrlRow, PublicationStore};
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
    /// One publication at a time: two would build CRLs with the same number, and the database
    /// would refuse the second after its HSM signature was spent.
    one_at_a_time: Mutex<()>,
}

impl Publisher {
    pub fn new(inst: Arc<Instance>) -> Self {
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
        Self {
            inst,
            validity,
            interval,
            delta_delay,
            one_at_a_time: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A complete and a delta CRL, now (blocking: HSM and durable commit).
    pub fn publish(&self, actor: &str) -> Result<Published, PublishError> {
        let _one = self.lock();
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
    pub fn publish_requested(&self, actor: &str, reason: &str) -> Result<Published, PublishError> {
        self.inst.store.audit(&nuc_store::AuditEntry {
            actor: actor.to_owned(),
            action: "crl.publication_requested".into(),
            object: "crl:issuing".into(),
            details: serde_json::json!({ "reason": reason }),
        })?;
        self.publish(actor)
    }

    /// A delta CRL alone, now; both CRLs when no complete CRL exists yet.
    pub fn publish_delta(&self, actor: &str) -> Result<Option<PublishedDelta>, PublishError> {
        let started = Instant::now();
        let delta = {
            let _one = self.lock();
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
        let revocations = self.inst.ra.revocations();
        let me = self.clone();
        let stale = blocking(move || {
            me.ensure_root_crl();
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
                    blocking(move || me.ensure_root_crl()).await;
                    self.publish_in_background("system:publisher").await;
                }
                _ = revocations.notified(), if delta_at.is_none() => {
                    delta_at = Some(tokio::time::Instant::now() + self.delta_delay);
                }
                _ = delta_due => {
                    delta_at = None;
                    let me = self.clone();
                    blocking(move || {
                        if let Err(e) = me.publish_delta("system:publisher") {
                            tracing::error!(error = %e, "delta CRL after a revocation failed; the next publication covers it");
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
            if let Err(e) = me.publish(actor) {
                tracing::error!(error = %e, "CRL publication failed; will retry at the next interval");
            }
        })
        .await;
    }

    /// The root's CRL lives in `HOME/ca/root.crl`; it is made anew, valid one year, when
    /// missing or within 30 days of its nextUpdate. Failures are logged: the issuing CA's
    /// publication does not depend on it.
    fn ensure_root_crl(&self) {
        if let Err(e) = ensure_root_crl(&self.inst) {
            tracing::error!(error = %e, "root CRL could not be published");
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

fn ensure_root_crl(inst: &Instance) -> anyhow::Result<()> {
    use der::Decode;
    let path = inst.home.ca_dir().join("root.crl");
    let now = nuc_core::time::now_unix();
    if let Ok(der) = std::fs::read(&path)
        && let Ok(crl) = <x509_cert::crl::CertificateList>::from_der(&der)
        && let Some(next) = crl.tbs_cert_list.next_update
        && next.to_unix_duration().as_secs() as i64 > now + 30 * 86_400
    {
        return Ok(());
    }
    let next_update = now + 365 * 86_400;
    let der = crl::root_crl(inst.crls(), now, next_update)?;
    let tmp = path.with_extension("crl.tmp");
    std::io::Write::write_all(&mut crate::private_home::create_file(&tmp)?, &der)?;
    std::fs::rename(&tmp, &path)?;
    inst.store.audit(&nuc_store::AuditEntry {
        actor: "system".into(),
        action: "crl.published".into(),
        object: "crl:root".into(),
        details: serde_json::json!({ "kind": "root", "number": now, "next_update": next_update,
            "sha256": hex::encode(openssl::sha::sha256(&der)) }),
    })?;
    tracing::info!(next_update, "root CRL published");
    Ok(())
}
