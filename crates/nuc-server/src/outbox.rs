//! The notification sender: works through the outbox table, one message at a time.
//!
//! A message leaves the outbox only when its delivery succeeded; a failed attempt is counted
//! and retried on the next pass, so a failing sink never loses a notification. The file sink
//! writes one RFC 5322 message per file (what a dev or a test reads); SMTP is a later step
//! behind the same loop.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nuc_ca::home::NotificationsConfig;
use nuc_ra::Ra;
use nuc_store::Notification;
use tokio::sync::watch;

fn deliver_to_file(dir: &std::path::Path, from: &str, n: &Notification) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let final_path = dir.join(format!("{:08}-{}.eml", n.id, n.kind));
    let tmp = dir.join(format!(".{:08}.tmp", n.id));
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    write!(
        f,
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Nuc-Request: {}\r\n\r\n{}",
        n.recipient,
        n.subject,
        n.request_number.as_deref().unwrap_or("-"),
        n.body
    )
    .and_then(|_| f.sync_all())
    .map_err(|e| format!("{}: {e}", tmp.display()))?;
    // Renamed into place only once complete: a reader never sees half a message.
    std::fs::rename(&tmp, &final_path).map_err(|e| format!("{}: {e}", final_path.display()))
}

/// One pass over the pending messages; returns how many were delivered.
pub fn pass(ra: &Ra, cfg: &NotificationsConfig, home: &std::path::Path) -> usize {
    let pending = match ra.ca.store.pending_notifications(100) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "outbox unreadable");
            return 0;
        }
    };
    let dir: PathBuf = home.join(&cfg.dir);
    let mut sent = 0;
    for n in pending {
        let result = match cfg.sink.as_str() {
            "file" => deliver_to_file(&dir, &cfg.from, &n),
            other => Err(format!(
                "notification sink {other:?} is not available in this build"
            )),
        };
        let error = result.err();
        match &error {
            None => {
                sent += 1;
                tracing::info!(id = n.id, kind = %n.kind, "notification delivered");
            }
            Some(e) => {
                tracing::warn!(id = n.id, attempts = n.attempts + 1, error = %e, "notification not delivered; will retry")
            }
        }
        if let Err(e) = ra.ca.store.notification_attempted(n.id, error) {
            tracing::error!(error = %e, "could not record a delivery attempt");
        }
    }
    sent
}

/// Runs passes every `interval_secs` until `stop` turns true (then one last pass).
pub async fn run(
    ra: Arc<Ra>,
    cfg: NotificationsConfig,
    home: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs(cfg.interval_secs.max(1));
    loop {
        let (ra2, cfg2, home2) = (ra.clone(), cfg.clone(), home.clone());
        let _ = tokio::task::spawn_blocking(move || pass(&ra2, &cfg2, &home2)).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}
