//! What several instances of the service on one database need from it, beyond the records:
//! to learn at once of a status change committed by any of them ([`StatusFeed`]), and to agree
//! on which one publishes CRLs ([`PublisherLease`]).
//!
//! An embedded store (one process) keeps both promises trivially: its feed is its own commits,
//! its lease is always held. A shared store keeps them across processes (PostgreSQL:
//! LISTEN/NOTIFY and a session advisory lock).

use std::sync::Arc;

use nuc_core::RevocationReason;

use crate::StoreError;

/// A change every instance must learn of, as the feed delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// A certificate was revoked; delivered only after the revocation is durable.
    Revoked {
        serial: String,
        reason: RevocationReason,
        revoked_at: i64,
    },
    /// Changes may be missed from now on (the feed's connection broke): whatever was learnt
    /// from the feed must no longer be trusted until [`StatusChange::Restored`].
    Lost,
    /// The feed is listening again: every change committed from now on is delivered, but those
    /// committed while it was lost were not, so whatever was built from the feed must be built
    /// again from the store.
    Restored,
}

/// Called with each change, on the feed's own thread; must not block.
pub type StatusListener = Arc<dyn Fn(&StatusChange) + Send + Sync>;

/// Status changes committed by any instance on this store.
pub trait StatusFeed: Send + Sync {
    /// Registers `listener`: every change committed after this call returns, by any instance,
    /// reaches it, or a [`StatusChange::Lost`] does. The listener stays for the store's life.
    fn subscribe_status(&self, listener: StatusListener) -> Result<(), StoreError>;
}

/// The right to publish CRLs, held by one instance at a time.
pub trait PublisherLease: Send + Sync {
    /// Whether this instance holds the right now; takes it if nobody does. Once held it stays
    /// held until this instance stops or loses its connection to the store, so a publisher
    /// asks again before each publication.
    fn hold_publisher_lease(&self) -> Result<bool, StoreError>;
}

/// The feed of a store that only one process writes: its own commits, delivered by the
/// committing thread once the change is durable. Never [`StatusChange::Lost`].
#[derive(Default)]
pub struct LocalStatusFeed {
    listeners: std::sync::Mutex<Vec<StatusListener>>,
}

impl std::fmt::Debug for LocalStatusFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStatusFeed").finish_non_exhaustive()
    }
}

impl LocalStatusFeed {
    pub fn subscribe(&self, listener: StatusListener) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Delivers a committed change to every listener.
    pub fn publish(&self, change: &StatusChange) {
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
