//! When checkpoints are made: every `[audit] checkpoint_every_records` records or
//! `checkpoint_every_secs` seconds, whichever comes first, and once more at shutdown. Making
//! one is `nuc_publisher::checkpoint`'s; every instance on a shared database runs this
//! schedule, which is safe for the reasons given there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nuc_publisher::checkpoint::{catch_up, checkpoint_now};
use nuc_store::AuditTree;
use tokio::sync::watch;

use super::AuditError;
use crate::config::AuditSettings;
use crate::instance::Instance;

/// What one pass decided.
fn pass(inst: &Instance, settings: &AuditSettings, force: bool) -> Result<(), AuditError> {
    let store: &dyn AuditTree = inst.store.as_ref();
    let (log, tree) = (store.audit_log_size()?, store.audit_tree_size()?);
    let latest = store.latest_checkpoint()?;
    let covered = latest.as_ref().map_or(0, |c| c.size);
    if log < covered || log < tree {
        return Err(nuc_publisher::checkpoint::CheckpointError::LogCut(format!(
            "the log holds {log} records, its tree covers {tree} and its last checkpoint {covered}"
        ))
        .into());
    }
    if log == covered {
        return Ok(());
    }
    let waited = latest
        .as_ref()
        .map_or(i64::MAX, |c| nuc_core::time::now_unix() - c.at);
    let due = force
        || log - covered >= settings.checkpoint_every_records
        || waited >= settings.checkpoint_every_secs as i64;
    if due {
        checkpoint_now(store, &inst.ca, &settings.origin)?;
    } else if log > tree {
        // Keep the tree close behind the log, so that the checkpoint, when due, is quick.
        catch_up(store)?;
    }
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
