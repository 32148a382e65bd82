//! Every storage trait for `Arc<S>`, forwarded to `S`: a shared store (e.g. the service's
//! `Arc<dyn ServiceStore>`) is itself a store, so it can be handed on as any bundle of traits
//! a role asks for (`Arc<dyn RaStore>` and the like), which trait upcasting alone cannot do.

use std::sync::Arc;

use nuc_core::{Notice, OperatorStatus};

use crate::*;

impl<S: RequestStore + ?Sized> RequestStore for Arc<S> {
    fn register_request(
        &self,
        request: &NewRequest,
        idempotency: Option<(String, String)>,
        notice: Option<Notice>,
        audit: &AuditEntry,
    ) -> Result<(RequestRow, bool), StoreError> {
        (**self).register_request(request, idempotency, notice, audit)
    }

    fn request_by_idempotency(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<RequestRow>, StoreError> {
        (**self).request_by_idempotency(caller, key)
    }

    fn request(&self, number: &str) -> Result<Option<RequestRow>, StoreError> {
        (**self).request(number)
    }

    fn transition(&self, t: &Transition) -> Result<RequestRow, StoreError> {
        (**self).transition(t)
    }

    fn expire_requests(&self, now: i64, actor: &str) -> Result<Vec<String>, StoreError> {
        (**self).expire_requests(now, actor)
    }

    fn pending_requests_of(
        &self,
        iin: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RequestRow>, StoreError> {
        (**self).pending_requests_of(iin, now, limit)
    }
}

impl<S: CertificateStore + ?Sized> CertificateStore for Arc<S> {
    fn reserve_batch(
        &self,
        items: &[(Reservation, AuditEntry)],
        before: Option<Transition>,
    ) -> Result<(), StoreError> {
        (**self).reserve_batch(items, before)
    }

    fn record_batch(
        &self,
        items: &[(String, Vec<u8>, AuditEntry)],
        after: Option<Transition>,
    ) -> Result<(), StoreError> {
        (**self).record_batch(items, after)
    }

    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        (**self).abandon(serial, audit)
    }

    fn abandon_stale_reservations(
        &self,
        before: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        (**self).abandon_stale_reservations(before, actor)
    }
}

impl<S: CertificateReader + ?Sized> CertificateReader for Arc<S> {
    fn key_certified(&self, spki_sha256: &str) -> Result<Option<String>, StoreError> {
        (**self).key_certified(spki_sha256)
    }

    fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>, StoreError> {
        (**self).certificate(serial)
    }

    fn certificates_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        (**self).certificates_of_request(number)
    }

    fn serials_for(&self, iin: &str, profile: &str) -> Result<Vec<String>, StoreError> {
        (**self).serials_for(iin, profile)
    }

    fn certificates_of(&self, iin: &str) -> Result<Vec<CertificateRow>, StoreError> {
        (**self).certificates_of(iin)
    }

    fn certificates_of_bin(&self, bin: &str) -> Result<Vec<CertificateRow>, StoreError> {
        (**self).certificates_of_bin(bin)
    }

    fn certificate_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        (**self).certificate_counts()
    }
}

impl<S: RevocationStore + ?Sized> RevocationStore for Arc<S> {
    fn revoke_all(
        &self,
        revocations: &[Revocation],
        payload_sha256: Option<String>,
    ) -> Result<(), StoreError> {
        (**self).revoke_all(revocations, payload_sha256)
    }
}

impl<S: RevocationReader + ?Sized> RevocationReader for Arc<S> {
    fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, StoreError> {
        (**self).revocation(serial)
    }

    fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, StoreError> {
        (**self).serial_status(serial)
    }

    fn for_each_revocation(
        &self,
        since: Option<i64>,
        f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), StoreError> {
        (**self).for_each_revocation(since, f)
    }
}

impl<S: UsedPayloads + ?Sized> UsedPayloads for Arc<S> {
    fn payload_used(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        (**self).payload_used(sha256)
    }

    fn spend_payload(
        &self,
        sha256: &str,
        used_for: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        (**self).spend_payload(sha256, used_for, audit)
    }
}

impl<S: OperatorStore + ?Sized> OperatorStore for Arc<S> {
    fn put_operator(&self, operator: &OperatorRow, audit: &AuditEntry) -> Result<(), StoreError> {
        (**self).put_operator(operator, audit)
    }

    fn set_operator_status(
        &self,
        iin: &str,
        status: OperatorStatus,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        (**self).set_operator_status(iin, status, audit)
    }

    fn operator(&self, iin: &str) -> Result<Option<OperatorRow>, StoreError> {
        (**self).operator(iin)
    }

    fn operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        (**self).operators()
    }
}

impl<S: AuditLog + ?Sized> AuditLog for Arc<S> {
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        (**self).audit(entry)
    }

    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        (**self).audit_records()
    }

    fn verify_audit(&self) -> Result<Result<u64, AuditBreak>, StoreError> {
        (**self).verify_audit()
    }
}

impl<S: PublicationStore + ?Sized> PublicationStore for Arc<S> {
    fn next_crl_number(&self) -> Result<i64, StoreError> {
        (**self).next_crl_number()
    }

    fn record_crls(&self, crls: Vec<NewCrl>, actor: &str) -> Result<Vec<CrlRow>, StoreError> {
        (**self).record_crls(crls, actor)
    }

    fn latest_full_crl(&self) -> Result<Option<CrlRow>, StoreError> {
        (**self).latest_full_crl()
    }

    fn latest_full_crl_info(&self) -> Result<Option<CrlRow>, StoreError> {
        (**self).latest_full_crl_info()
    }

    fn latest_delta_crl(&self) -> Result<Option<CrlRow>, StoreError> {
        (**self).latest_delta_crl()
    }

    fn latest_delta_crl_info(&self) -> Result<Option<CrlRow>, StoreError> {
        (**self).latest_delta_crl_info()
    }

    fn crl_chunk(&self, crl_number: i64, seq: i64) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).crl_chunk(crl_number, seq)
    }
}

impl<S: Outbox + ?Sized> Outbox for Arc<S> {
    fn pending_notifications(&self, limit: i64) -> Result<Vec<Notification>, StoreError> {
        (**self).pending_notifications(limit)
    }

    fn notifications_attempted(
        &self,
        attempts: &[DeliveryAttempt],
        policy: &RetryPolicy,
    ) -> Result<Vec<AttemptRecorded>, StoreError> {
        (**self).notifications_attempted(attempts, policy)
    }

    fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        (**self).outbox_stats()
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        (**self).dead_letters()
    }

    fn revive_notifications(
        &self,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<Vec<i64>, StoreError> {
        (**self).revive_notifications(ids, actor)
    }
}

impl<S: CaKeyStore + ?Sized> CaKeyStore for Arc<S> {
    fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> Result<(), StoreError> {
        (**self).put_ca_keys(keys, audit)
    }

    fn ca_keys(&self) -> Result<Vec<CaKeyRow>, StoreError> {
        (**self).ca_keys()
    }

    fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> Result<(), StoreError> {
        (**self).replace_ca_key(key, audit)
    }
}

impl<S: StoreHealth + ?Sized> StoreHealth for Arc<S> {
    fn ping(&self) -> Result<(), StoreError> {
        (**self).ping()
    }
}

impl<S: StatusFeed + ?Sized> StatusFeed for Arc<S> {
    fn subscribe_status(&self, listener: StatusListener) -> Result<(), StoreError> {
        (**self).subscribe_status(listener)
    }
}

impl<S: PublisherLease + ?Sized> PublisherLease for Arc<S> {
    fn hold_publisher_lease(&self) -> Result<bool, StoreError> {
        (**self).hold_publisher_lease()
    }
}

impl<S: AuditTree + ?Sized> AuditTree for Arc<S> {
    fn grow_audit_tree(&self, max: u64) -> Result<TreeHead, StoreError> {
        (**self).grow_audit_tree(max)
    }

    fn audit_tree_size(&self) -> Result<u64, StoreError> {
        (**self).audit_tree_size()
    }

    fn audit_log_size(&self) -> Result<u64, StoreError> {
        (**self).audit_log_size()
    }

    fn audit_node(&self, level: u8, index: u64) -> Result<Option<nuc_tlog::Hash>, StoreError> {
        (**self).audit_node(level, index)
    }

    fn audit_records_from(&self, seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        (**self).audit_records_from(seq, limit)
    }

    fn put_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<bool, StoreError> {
        (**self).put_checkpoint(checkpoint)
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<CheckpointRow>, StoreError> {
        (**self).checkpoint_at(size)
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        (**self).latest_checkpoint()
    }

    fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        (**self).checkpoints()
    }

    fn put_cosignature(&self, cosignature: &CosignatureRow) -> Result<bool, StoreError> {
        (**self).put_cosignature(cosignature)
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<CosignatureRow>, StoreError> {
        (**self).cosignatures(size)
    }
}
