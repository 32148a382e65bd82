//! What several instances need beyond the records: the status feed (every revocation committed
//! by any instance, through LISTEN/NOTIFY) and the publisher lease (a session advisory lock).
//!
//! The feed's listener has its own connection and thread. When that connection breaks, the
//! subscribers are told [`StatusChange::Lost`] (what they built from the feed may be stale),
//! the listener reconnects with a backoff of at most a second, listens again and tells them
//! [`StatusChange::Restored`] (build it again from the store). A dead connection is noticed
//! within about two seconds even when nothing is announced: between notifications the
//! listener makes a cheap round trip.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nuc_core::RevocationReason;
use nuc_store::{RevocationRow, StatusChange, StatusListener, StoreError};

use crate::{Connector, DbError, LOCK_CLASS, LOCK_PUBLISHER, STATUS_CHANNEL, classify};

/// How long the listener waits for a notification before it checks its connection.
const IDLE: Duration = Duration::from_millis(700);
/// How long that check may take.
const PROBE: Duration = Duration::from_secs(1);
/// The longest pause between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The payload of a revocation's notification: what [`StatusChange::Revoked`] carries.
pub(crate) fn revoked_payload(r: &RevocationRow) -> String {
    serde_json::json!({
        "serial": r.serial,
        "reason": r.reason.code(),
        "revoked_at": r.revoked_at,
    })
    .to_string()
}

fn parse_revoked(payload: &str) -> Option<StatusChange> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    Some(StatusChange::Revoked {
        serial: v.get("serial")?.as_str()?.to_owned(),
        reason: RevocationReason::from_code(v.get("reason")?.as_i64()?)?,
        revoked_at: v.get("revoked_at")?.as_i64()?,
    })
}

#[derive(Default)]
struct Shared {
    listeners: Mutex<Vec<StatusListener>>,
    /// Whether the listener is between a `Lost` and a `Restored`.
    lost: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn publish(&self, change: &StatusChange) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for l in listeners {
            l(change);
        }
    }
}

pub(crate) struct Feed {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn listen(connector: &Connector) -> Result<postgres::Client, DbError> {
    let mut client = connector.connect()?;
    client.batch_execute(&format!("LISTEN {STATUS_CHANNEL}"))?;
    Ok(client)
}

impl Feed {
    /// Listens before returning, so that every change committed after the first subscription
    /// returned reaches the subscribers (or a `Lost` does).
    pub(crate) fn start(connector: Arc<Connector>) -> Result<Self, StoreError> {
        let client = listen(&connector)?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nuc-store-pg-feed".into())
            .spawn(move || run(&connector, client, &s))
            .map_err(|e| StoreError::Database(format!("cannot start the status listener: {e}")))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn subscribe(&self, listener: StatusListener) {
        self.shared
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener.clone());
        // Subscribed while the feed is lost: this listener must not trust it either.
        if self.shared.lost.load(Ordering::SeqCst) {
            listener(&StatusChange::Lost);
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for notifications until the connection fails (gives the failure) or the store is
/// dropped (gives `None`).
fn serve(client: &mut postgres::Client, shared: &Shared) -> Option<postgres::Error> {
    loop {
        {
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(IDLE);
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return None;
                }
                match postgres::fallible_iterator::FallibleIterator::next(&mut iter) {
                    Ok(Some(n)) if n.channel() == STATUS_CHANNEL => {
                        match parse_revoked(n.payload()) {
                            Some(change) => shared.publish(&change),
                            None => {
                                // A notice this build cannot read: whatever was built from the
                                // feed must be built again from the store.
                                tracing::warn!("unreadable status notification; feed restarted");
                                shared.publish(&StatusChange::Lost);
                                shared.publish(&StatusChange::Restored);
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Some(e),
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        if let Err(e) = client.is_valid(PROBE) {
            return Some(e);
        }
    }
}

fn run(connector: &Connector, mut client: postgres::Client, shared: &Shared) {
    loop {
        let Some(error) = serve(&mut client, shared) else {
            return;
        };
        tracing::warn!(error = %classify(&error), "status feed lost its connection");
        shared.lost.store(true, Ordering::SeqCst);
        shared.publish(&StatusChange::Lost);
        let mut backoff = Duration::from_millis(50);
        client = loop {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            match listen(connector) {
                Ok(c) => break c,
                Err(_) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        shared.lost.store(false, Ordering::SeqCst);
        tracing::info!("status feed listening again");
        shared.publish(&StatusChange::Restored);
    }
}

/// The publisher lease: a session advisory lock on a connection of its own, held until this
/// process ends or that connection breaks (the server then frees it for another instance).
#[derive(Default)]
pub(crate) struct Lease {
    conn: Mutex<Option<(postgres::Client, bool)>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        crate::drop_off_runtime(conn);
    }
}

impl Lease {
    pub(crate) fn hold(&self, connector: &Connector) -> Result<bool, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((client, held)) = guard.as_mut() {
            match client.is_valid(PROBE) {
                Ok(()) if *held => return Ok(true),
                Ok(()) => {}
                Err(e) => {
                    if *held {
                        tracing::warn!(error = %classify(&e), "publisher lease lost with its connection");
                    }
                    *guard = None;
                }
            }
        }
        if guard.is_none() {
            *guard = Some((connector.connect()?, false));
        }
        let Some((client, held)) = guard.as_mut() else {
            return Err(StoreError::Unavailable("no lease connection".into()));
        };
        match client.query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_PUBLISHER],
        ) {
            Ok(row) => {
                *held = row.try_get(0).map_err(|e| classify(&e))?;
                Ok(*held)
            }
            Err(e) => {
                *guard = None;
                Err(classify(&e))
            }
        }
    }
}
