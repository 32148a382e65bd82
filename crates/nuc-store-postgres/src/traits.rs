//! The storage traits of nuc-store, over PostgreSQL: each method is the inherent one of
//! [`PgStore`] with its error turned into the traits' [`StoreError`].

use nuc_core::{Notice, OperatorStatus};
use nuc_store::{AttemptRecorded, DeadLetter, DeliveryAttempt, OutboxStats, RetryPolicy};
use nuc_store::{
    AuditBreak, AuditEntry, AuditLog, AuditRecord, CaKeyRow, CaKeyStore, CertificateReader,
    CertificateRow, CertificateStore, CrlRow, NewCrl, NewRequest, Notification, OperatorRow,
    OperatorStore, Outbox, PublicationStore, RequestRow, RequestStore, Reservation, Revocation,
    RevocationEntry, RevocationReader, RevocationRow, RevocationStore, SerialStatus, StoreError,
    StoreHealth, Transition, UsedPayloads,
};
use nuc_store::{AuditTree, CheckpointRow, CosignatureRow, TreeHead};
use nuc_store::{PublisherLease, StatusFeed, StatusListener};

use crate::PgStore;

/// `fn name(&self, args…) -> Result<T, StoreError>` calling the inherent method of the same
/// name.
macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> Result<$out, StoreError> {
                Ok(PgStore::$name(self $(, $arg)*)?)
            }
        )*
    };
}

impl RequestStore for PgStore {
    delegate! {
        fn register_request(&self, request: &NewRequest, idempotency: Option<(String, String)>, notice: Option<Notice>, audit: &AuditEntry) -> (RequestRow, bool);
        fn request_by_idempotency(&self, caller: &str, key: &str) -> Option<RequestRow>;
        fn request(&self, number: &str) -> Option<RequestRow>;
        fn transition(&self, t: &Transition) -> RequestRow;
        fn expire_requests(&self, now: i64, actor: &str) -> Vec<String>;
        fn pending_requests_of(&self, iin: &str, now: i64, limit: u32) -> Vec<RequestRow>;
    }
}

impl CertificateStore for PgStore {
    delegate! {
        fn reserve_batch(&self, items: &[(Reservation, AuditEntry)], before: Option<Transition>) -> ();
        fn record_batch(&self, items: &[(String, Vec<u8>, AuditEntry)], after: Option<Transition>) -> ();
        fn abandon(&self, serial: &str, audit: &AuditEntry) -> ();
        fn abandon_stale_reservations(&self, before: i64, actor: &str) -> Vec<String>;
    }
}

impl CertificateReader for PgStore {
    delegate! {
        fn key_certified(&self, spki_sha256: &str) -> Option<String>;
        fn certificate(&self, serial: &str) -> Option<CertificateRow>;
        fn certificates_of_request(&self, number: &str) -> Vec<(String, String, Vec<u8>)>;
        fn serials_for(&self, iin: &str, profile: &str) -> Vec<String>;
        fn certificates_of(&self, iin: &str) -> Vec<CertificateRow>;
        fn certificates_of_bin(&self, bin: &str) -> Vec<CertificateRow>;
        fn certificate_counts(&self) -> Vec<(String, i64)>;
    }
}

impl RevocationStore for PgStore {
    fn revoke_all(
        &self,
        revocations: &[Revocation],
        payload_sha256: Option<String>,
    ) -> Result<(), StoreError> {
        // The feed hears of each from PostgreSQL, as every other instance does.
        Ok(PgStore::revoke_all(self, revocations, payload_sha256)?)
    }
}

impl RevocationReader for PgStore {
    delegate! {
        fn revocation(&self, serial: &str) -> Option<RevocationRow>;
        fn serial_status(&self, serial: &str) -> Option<SerialStatus>;
        fn for_each_revocation(&self, since: Option<i64>, f: &mut dyn FnMut(RevocationEntry<'_>)) -> ();
    }
}

impl UsedPayloads for PgStore {
    delegate! {
        fn payload_used(&self, sha256: &str) -> Option<String>;
        fn spend_payload(&self, sha256: &str, used_for: &str, audit: &AuditEntry) -> ();
    }
}

impl OperatorStore for PgStore {
    delegate! {
        fn put_operator(&self, operator: &OperatorRow, audit: &AuditEntry) -> ();
        fn set_operator_status(&self, iin: &str, status: OperatorStatus, audit: &AuditEntry) -> ();
        fn operator(&self, iin: &str) -> Option<OperatorRow>;
        fn operators(&self) -> Vec<OperatorRow>;
    }
}

impl AuditLog for PgStore {
    delegate! {
        fn audit(&self, entry: &AuditEntry) -> ();
        fn audit_records(&self) -> Vec<AuditRecord>;
        fn verify_audit(&self) -> Result<u64, AuditBreak>;
    }
}

impl AuditTree for PgStore {
    delegate! {
        fn grow_audit_tree(&self, max: u64) -> TreeHead;
        fn audit_tree_size(&self) -> u64;
        fn audit_log_size(&self) -> u64;
        fn audit_node(&self, level: u8, index: u64) -> Option<nuc_tlog::Hash>;
        fn audit_records_from(&self, seq: i64, limit: i64) -> Vec<AuditRecord>;
        fn put_checkpoint(&self, checkpoint: &CheckpointRow) -> bool;
        fn checkpoint_at(&self, size: u64) -> Option<CheckpointRow>;
        fn latest_checkpoint(&self) -> Option<CheckpointRow>;
        fn checkpoints(&self) -> Vec<CheckpointRow>;
        fn put_cosignature(&self, cosignature: &CosignatureRow) -> bool;
        fn cosignatures(&self, size: u64) -> Vec<CosignatureRow>;
    }
}

impl PublicationStore for PgStore {
    delegate! {
        fn next_crl_number(&self) -> i64;
        fn record_crls(&self, crls: Vec<NewCrl>, actor: &str) -> Vec<CrlRow>;
        fn latest_full_crl(&self) -> Option<CrlRow>;
        fn latest_full_crl_info(&self) -> Option<CrlRow>;
        fn latest_delta_crl(&self) -> Option<CrlRow>;
        fn latest_delta_crl_info(&self) -> Option<CrlRow>;
        fn crl_chunk(&self, crl_number: i64, seq: i64) -> Option<Vec<u8>>;
    }
}

impl Outbox for PgStore {
    delegate! {
        fn pending_notifications(&self, limit: i64) -> Vec<Notification>;
        fn notifications_attempted(&self, attempts: &[DeliveryAttempt], policy: &RetryPolicy) -> Vec<AttemptRecorded>;
        fn outbox_stats(&self) -> OutboxStats;
        fn dead_letters(&self) -> Vec<DeadLetter>;
        fn revive_notifications(&self, ids: Option<&[i64]>, actor: &str) -> Vec<i64>;
    }
}

impl CaKeyStore for PgStore {
    delegate! {
        fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> ();
        fn ca_keys(&self) -> Vec<CaKeyRow>;
        fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> ();
    }
}

impl StoreHealth for PgStore {
    delegate! {
        fn ping(&self) -> ();
    }
}

impl StatusFeed for PgStore {
    fn subscribe_status(&self, listener: StatusListener) -> Result<(), StoreError> {
        let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        if feed.is_none() {
            // Listening before this returns: every change committed afterwards is delivered.
            let connector = self.connector.clone();
            *feed = Some(
                crate::off_runtime(|| {
                    crate::feed::Feed::start(connector).map_err(crate::DbError::Store)
                })
                .map_err(StoreError::from)?,
            );
        }
        if let Some(f) = feed.as_ref() {
            f.subscribe(listener);
        }
        Ok(())
    }
}

/// A session advisory lock: one instance at a time, until it stops or loses its connection.
impl PublisherLease for PgStore {
    fn hold_publisher_lease(&self) -> Result<bool, StoreError> {
        crate::off_runtime(|| {
            self.lease
                .hold(&self.connector)
                .map_err(crate::DbError::Store)
        })
        .map_err(StoreError::from)
    }
}
