//! When checkpoints are made: every `[audit] checkpoint_every_records` records or
//! `checkpoint_every_secs` seconds, whichever comes first, and once more at shutdown. Making
//! one is `nuc_publisher::checkpoint`'s; every instance on a shared database runs this
//! schedule, which is safe for the reasons given there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nuc_publisher::checkpoint::{self, Schedule};
use tokio::sync::watch;

use super::AuditError;
use crate::config::AuditSettings;
use crate::instance::Instance;

/// One pass, with the schedule of `[audit]`.
fn pass(inst: &Instance, settings: &AuditSettings, force: bool) -> Result<(), AuditError> {
    let schedule = Schedule {
        every_records: settings.checkpoint_every_records,
        every_secs: settings.checkpoint_every_secs,
    };
    checkpoint::pass(
        inst.store.as_ref(),
        &inst.ca,
        &settings.origin,
        schedule,
        force,
    )?;
    Ok(())
}

/// The service's checkpointing task, until `stop`; then one last checkpoint.
pub async fn run(inst: Arc<Instance>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let settings = inst.config.audit.clone();
    let tick = Duration::from_secs(settings.checkpoint_every_secs).min(Duration::from_millis(500));
    // A failure repeats every tick until someone acts: said when it starts or changes, then
    // once a minute.
    let mut failing: Option<(String, Instant)> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let (inst, settings) = (inst.clone(), settings.clone());
        let outcome = match tokio::task::spawn_blocking(move || pass(&inst, &settings, false)).await
        {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the checkpoint task failed: {e}")),
        };
        match (outcome, &failing) {
            (None, Some(_)) => {
                tracing::info!("audit checkpoints made again");
                failing = None;
            }
            (None, None) => {}
            (Some(e), Some((last, at))) if *last == e && at.elapsed() < Duration::from_secs(60) => {
            }
            (Some(e), _) => {
                tracing::error!(error = %e, "audit checkpoint failed; retrying");
                failing = Some((e, Instant::now()));
            }
        }
    }
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || pass(&inst, &settings, true)).await {
        Ok(Ok(())) => tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "audit checkpoint at shutdown"
        ),
        Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint at shutdown failed"),
        Err(e) => tracing::error!(error = %e, "audit checkpoint task failed at shutdown"),
    }
    Ok(())
}
