//! The OCSP responder's view of serials' statuses, kept in memory so that a cached answer costs
//! no database round trip, and kept current by the store's [`StatusFeed`] so that it never
//! says `good` of a certificate whose revocation any instance has acknowledged.
//!
//! What it holds, and why that is enough:
//! - every revocation: loaded at start and after each loss of the feed, then added as the
//!   feed delivers them. A revocation is never undone, so the set only grows;
//! - the serials known to be issued, learnt from the store on a first question and bounded in
//!   number (past [`StatusSnapshot::new`]'s cap the set starts over). Issuance is never undone
//!   either, so what is learnt stays true; a serial not known yet is asked of the store.
//!
//! While the feed is lost (its connection broke) nothing in memory is trusted: every question
//! goes to the store until the feed is back and the revocations were loaded again.
//!
//! It must never answer from memory while the feed is lost, and never change a status.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use nuc_core::RevocationReason;
use nuc_store::{
    RevocationEntry, RevocationReader, RevocationRow, SerialStatus, StatusChange, StatusFeed,
    StoreError,
};

/// Serials' statuses in memory, over a store that answers what memory does not know.
pub struct StatusSnapshot {
    store: Arc<dyn RevocationReader>,
    issued_cap: usize,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Whether memory may answer: the feed is listening and the revocations are loaded.
    trusted: bool,
    /// Bumped by every loss and every return of the feed: a load started before the last of
    /// them must not make memory trusted.
    generation: u64,
    revoked: HashMap<Box<str>, (RevocationReason, i64)>,
    issued: HashSet<Box<str>>,
}

impl StatusSnapshot {
    /// Subscribes to `feed`, then loads every revocation from `store` (in that order, so that
    /// no revocation can fall between the two). Keeps at most `issued_cap` issued serials.
    pub fn start(
        store: Arc<dyn RevocationReader>,
        feed: &dyn StatusFeed,
        issued_cap: usize,
    ) -> Result<Arc<Self>, StoreError> {
        let me = Arc::new(Self {
            store,
            issued_cap: issued_cap.max(1),
            state: RwLock::new(State::default()),
        });
        let weak = Arc::downgrade(&me);
        feed.subscribe_status(Arc::new(move |change| {
            if let Some(me) = weak.upgrade() {
                me.apply(change);
            }
        }))?;
        let generation = me.read().generation;
        me.load(generation)?;
        Ok(me)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads every revocation; trusts memory afterwards unless the feed was lost or came back
    /// since `generation`.
    fn load(&self, generation: u64) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut loaded = Vec::new();
        self.store.for_each_revocation(None, &mut |r| {
            loaded.push((Box::<str>::from(r.serial_hex), (r.reason, r.revoked_at)));
        })?;
        let count = loaded.len();
        let mut st = self.write();
        st.revoked.extend(loaded);
        if st.generation == generation {
            st.trusted = true;
        }
        drop(st);
        tracing::info!(
            revocations = count,
            millis = started.elapsed().as_millis() as u64,
            "OCSP status snapshot loaded"
        );
        Ok(())
    }

    /// A change from the feed (on the feed's thread: the reload after a return runs apart).
    fn apply(self: &Arc<Self>, change: &StatusChange) {
        match change {
            StatusChange::Revoked {
                serial,
                reason,
                revoked_at,
            } => {
                self.write()
                    .revoked
                    .insert(serial.as_str().into(), (*reason, *revoked_at));
            }
            StatusChange::Lost => {
                let mut st = self.write();
                st.trusted = false;
                st.generation += 1;
                tracing::warn!("status feed lost: OCSP asks the database until it is back");
            }
            StatusChange::Restored => {
                let generation = {
                    let mut st = self.write();
                    st.generation += 1;
                    st.generation
                };
                let me = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("nuc-status-reload".into())
                    .spawn(move || {
                        if let Err(e) = me.load(generation) {
                            tracing::error!(error = %e, "OCSP status snapshot reload failed; OCSP keeps asking the database");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start the status snapshot reload");
                }
            }
        }
    }

    /// The status memory knows, when memory may answer.
    fn known(&self, serial: &str) -> Option<SerialStatus> {
        let st = self.read();
        if !st.trusted {
            return None;
        }
        if let Some(&(reason, at)) = st.revoked.get(serial) {
            return Some(SerialStatus {
                issued: true,
                revocation: Some((reason, at)),
            });
        }
        st.issued.contains(serial).then_some(SerialStatus {
            issued: true,
            revocation: None,
        })
    }

    /// Whether memory answers now (the feed is listening and the revocations are loaded).
    pub fn is_trusted(&self) -> bool {
        self.read().trusted
    }

    /// How many revocations memory holds.
    pub fn revocations(&self) -> usize {
        self.read().revoked.len()
    }

    /// A reader that answers only from memory and refuses the rest
    /// (`StoreError::Unavailable`): for a caller that must not wait on the database.
    pub fn memory_only(&self) -> MemoryOnly<'_> {
        MemoryOnly(self)
    }
}

impl RevocationReader for StatusSnapshot {
    fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, StoreError> {
        self.store.revocation(serial)
    }

    fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, StoreError> {
        if let Some(s) = self.known(serial) {
            return Ok(Some(s));
        }
        let status = self.store.serial_status(serial)?;
        if let Some(SerialStatus {
            issued: true,
            revocation: None,
        }) = status
        {
            let mut st = self.write();
            if st.issued.len() >= self.issued_cap {
                st.issued.clear();
            }
            st.issued.insert(serial.into());
        }
        Ok(status)
    }

    fn for_each_revocation(
        &self,
        since: Option<i64>,
        f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), StoreError> {
        self.store.for_each_revocation(since, f)
    }
}

/// See [`StatusSnapshot::memory_only`].
pub struct MemoryOnly<'a>(&'a StatusSnapshot);

impl RevocationReader for MemoryOnly<'_> {
    fn revocation(&self, _serial: &str) -> Result<Option<RevocationRow>, StoreError> {
        Err(not_in_memory())
    }

    fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, StoreError> {
        self.0.known(serial).map(Some).ok_or_else(not_in_memory)
    }

    fn for_each_revocation(
        &self,
        _since: Option<i64>,
        _f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), StoreError> {
        Err(not_in_memory())
    }
}

fn not_in_memory() -> StoreError {
    StoreError::Unavailable("not in memory: ask the store".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuc_store::memory::MemoryStore;
    use nuc_store::{
        AuditEntry, CertificateStore, LocalStatusFeed, Reservation, RevocationStore, StatusListener,
    };

    /// A feed the test drives by hand (loss and return included).
    #[derive(Default)]
    struct HandFeed(LocalStatusFeed);

    impl StatusFeed for HandFeed {
        fn subscribe_status(&self, listener: StatusListener) -> Result<(), StoreError> {
            self.0.subscribe(listener);
            Ok(())
        }
    }

    fn audit() -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: "x".into(),
            object: "x".into(),
            details: serde_json::json!({}),
        }
    }

    fn issue(store: &MemoryStore, serial: &str) {
        store
            .reserve_batch(
                &[(
                    Reservation {
                        serial: serial.into(),
                        profile: "individual-auth".into(),
                        subject: "CN=x".into(),
                        iin: None,
                        bin: None,
                        spki_sha256: format!("spki-{serial}"),
                        not_before: 0,
                        not_after: 1,
                        request_number: None,
                    },
                    audit(),
                )],
                None,
            )
            .unwrap();
        store
            .record_batch(&[(serial.into(), vec![0x30, 0x00], audit())], None)
            .unwrap();
    }

    fn revocation(serial: &str) -> RevocationRow {
        RevocationRow {
            serial: serial.into(),
            reason: RevocationReason::KeyCompromise,
            revoked_at: 1_700_000_000,
            invalidity_date: None,
            revoked_by: "test".into(),
        }
    }

    fn revoked(s: Option<SerialStatus>) -> bool {
        s.is_some_and(|s| s.revocation.is_some())
    }

    #[test]
    fn memory_answers_issued_and_revoked_once_learnt_and_a_revocation_through_the_feed_at_once() {
        let store = Arc::new(MemoryStore::new());
        issue(&store, "0a");
        issue(&store, "0b");
        store
            .revoke(&revocation("0b"), None, None, &audit())
            .unwrap();
        let snap = StatusSnapshot::start(store.clone(), store.as_ref(), 10).unwrap();
        assert!(snap.is_trusted());
        assert_eq!(snap.revocations(), 1);
        // Revoked: known at once. Issued: learnt on the first question.
        assert!(revoked(snap.memory_only().serial_status("0b").unwrap()));
        assert!(snap.memory_only().serial_status("0a").is_err());
        assert!(!revoked(snap.serial_status("0a").unwrap()));
        assert!(!revoked(snap.memory_only().serial_status("0a").unwrap()));
        // Never issued: asked of the store each time, never remembered.
        assert_eq!(snap.serial_status("0c").unwrap(), None);
        assert!(snap.memory_only().serial_status("0c").is_err());
        // A revocation after the start reaches memory before revoke returns.
        store
            .revoke(&revocation("0a"), None, None, &audit())
            .unwrap();
        assert!(revoked(snap.memory_only().serial_status("0a").unwrap()));
    }

    #[test]
    fn nothing_is_answered_from_memory_while_the_feed_is_lost_and_what_was_missed_is_loaded_on_its_return()
     {
        let store = Arc::new(MemoryStore::new());
        let feed = HandFeed::default();
        issue(&store, "0a");
        let snap = StatusSnapshot::start(store.clone(), &feed, 10).unwrap();
        assert!(!revoked(snap.serial_status("0a").unwrap()));
        assert!(snap.memory_only().serial_status("0a").is_ok());
        feed.0.publish(&StatusChange::Lost);
        // Revoked while the feed was lost: this feed never delivers it.
        store
            .revoke(&revocation("0a"), None, None, &audit())
            .unwrap();
        assert!(snap.memory_only().serial_status("0a").is_err());
        assert!(
            revoked(snap.serial_status("0a").unwrap()),
            "the store answers while memory is not trusted"
        );
        feed.0.publish(&StatusChange::Restored);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !snap.is_trusted() {
            assert!(std::time::Instant::now() < deadline, "reload never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(revoked(snap.memory_only().serial_status("0a").unwrap()));
    }

    #[test]
    fn the_issued_serials_kept_are_bounded() {
        let store = Arc::new(MemoryStore::new());
        for i in 0..5 {
            issue(&store, &format!("0{i}"));
        }
        let snap = StatusSnapshot::start(store.clone(), store.as_ref(), 2).unwrap();
        for i in 0..5 {
            snap.serial_status(&format!("0{i}")).unwrap();
        }
        assert!(snap.read().issued.len() <= 2);
    }
}
