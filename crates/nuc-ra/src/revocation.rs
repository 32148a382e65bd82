//! Revocations: online by the holder (F3), at a CON counter by an operator (F5), by an
//! administrator, and of a dismissed operator's certificates (F6). Each is stored durably
//! with its notice before it is acknowledged; CRL and OCSP read it from storage.

use nuc_core::{ReasonCode, RevocationReason};
use nuc_payloads::RevocationOrder;
use nuc_store::{AuditEntry, CertificateRow, Revocation, RevocationRow};

use crate::signer::HolderKey;
use crate::{Ra, RaError, notices, sha256_hex};

/// A revocation as an administrator, an order or a dismissal asks for it.
#[derive(Debug, Clone)]
pub struct RevocationAsk<'a> {
    /// Serial of the certificate, in hex.
    pub serial: &'a str,
    pub reason: RevocationReason,
    /// When the key is known or suspected to have been compromised (RFC 5280 §5.3.2).
    pub invalidity_date: Option<i64>,
    /// Why, in words, for the audit log and the holder's notice.
    pub why: &'a str,
}

fn canonical_serial(text: &str) -> Result<String, RaError> {
    let serial = text.trim().to_ascii_lowercase();
    if serial.is_empty() || serial.len() > 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RaError::invalid(
            "serial",
            format!("{text:?} is not a certificate serial in hex"),
        ));
    }
    Ok(serial)
}

fn order_reason(order: &RevocationOrder) -> Result<RevocationReason, RaError> {
    RevocationReason::accepted(i64::from(order.reason)).map_err(|e| RaError::invalid("reason", e))
}

impl Ra {
    /// Revokes a certificate (administrator, dismissal, or a verified signed order).
    pub fn revoke(
        &self,
        caller: &str,
        ask: &RevocationAsk<'_>,
        payload_sha256: Option<String>,
    ) -> Result<RevocationRow, RaError> {
        let serial = canonical_serial(ask.serial)?;
        ask.reason
            .check_accepted()
            .map_err(|e| RaError::invalid("reason", e))?;
        let now = self.now();
        if let Some(d) = ask.invalidity_date
            && d < 0
        {
            return Err(RaError::invalid("invalidity_date", "is before 1970"));
        }
        if let Some(d) = ask.invalidity_date
            && d > now
        {
            return Err(RaError::invalid("invalidity_date", "is in the future"));
        }
        let row = RevocationRow {
            serial: serial.clone(),
            reason: ask.reason,
            revoked_at: now,
            invalidity_date: ask.invalidity_date,
            revoked_by: caller.into(),
        };
        // The holder is told at the address of the request the certificate answered, if any.
        let holder_email = match self
            .store
            .certificate(&serial)?
            .and_then(|c| c.request_number)
        {
            Some(n) => self.store.request(&n)?.and_then(|r| r.email),
            None => None,
        };
        self.store.revoke(
            &row,
            payload_sha256,
            holder_email.map(|to| notices::revoked(&to, &serial, ask.why)),
            &AuditEntry {
                actor: caller.into(),
                action: "certificate.revoked".into(),
                object: format!("serial:{serial}"),
                details: serde_json::json!({
                    "reason": ask.reason.code(),
                    "invalidity_date": ask.invalidity_date,
                    "why": ask.why,
                }),
            },
        )?;
        tracing::info!(%serial, reason = %ask.reason, "certificate revoked");
        metrics::counter!("nuc_certificates_revoked_total", "reason" => ask.reason.rfc_name())
            .increment(1);
        Ok(row)
    }

    /// F5: a revocation at the counter, signed by the operator of the session.
    pub fn revoke_at_counter(
        &self,
        caller: &str,
        session_operator: &str,
        signed: &[u8],
    ) -> Result<RevocationRow, RaError> {
        let now = self.now();
        let s = self.operator_signed::<RevocationOrder>(signed, session_operator, now)?;
        if !s
            .payload
            .operator_serial_hex
            .eq_ignore_ascii_case(&s.signer.serial_hex)
            || s.payload.nonce.trim().is_empty()
        {
            return Err(RaError::operator_signature(
                "the signed order names another operator or has no nonce",
            ));
        }
        if s.payload.all || s.payload.spare_signer {
            return Err(RaError::invalid(
                "all",
                "an order for all of a holder's certificates is the holder's own, online (F3)",
            ));
        }
        // Separation of duties: an operator's own certificates (personal or operator) are
        // revoked at the counter by another operator, or by an administrator.
        if s.payload.iin.trim() == s.signer.iin {
            return Err(RaError::new(
                ReasonCode::SeparationOfDuties,
                format!(
                    "operator {} may not revoke their own certificate at the counter: another operator must",
                    nuc_core::mask_iin(&s.signer.iin)
                ),
            ));
        }
        self.carry_out_order(
            &s.payload,
            &s.content,
            &format!("operator:{}", s.signer.serial_hex),
            &format!("at a CON counter, via {caller}"),
        )
    }

    /// F3: a revocation signed online by the holder's own (valid) certificate: of the
    /// certificate it names, or with `all` of every valid certificate of the holder (sparing
    /// the signing one if the order says so). Returns what was revoked.
    pub fn revoke_online(
        &self,
        caller: &str,
        signed: &[u8],
    ) -> Result<Vec<RevocationRow>, RaError> {
        let now = self.now();
        let s = self.applicant_signed::<RevocationOrder>(signed, HolderKey::Any, now)?;
        if s.payload.iin != s.signer.iin {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!(
                    "the order names IIN {}, the signer is {}",
                    s.payload.iin, s.signer.iin
                ),
            ));
        }
        if s.payload.nonce.trim().is_empty() {
            return Err(RaError::applicant_signature(
                "the signed order has no nonce",
            ));
        }
        let actor = format!("holder:{}", s.signer.serial_hex);
        let why = format!("online by the holder, via {caller}");
        if s.payload.all {
            return self.revoke_all_of_holder(
                &s.payload,
                &s.content,
                &s.signer.serial_hex,
                &actor,
                &why,
            );
        }
        if s.payload.spare_signer {
            return Err(RaError::invalid(
                "spare_signer",
                "goes only with an order for all of the holder's certificates",
            ));
        }
        Ok(vec![
            self.carry_out_order(&s.payload, &s.content, &actor, &why)?,
        ])
    }

    /// Every valid certificate of the order's holder (not revoked, not expired; the signer's
    /// own spared if asked), revoked in one transaction, one audit record and notice each. A
    /// retry of an order carried out gets the revocations it made back, and changes nothing.
    fn revoke_all_of_holder(
        &self,
        order: &RevocationOrder,
        signed_content: &[u8],
        signer_serial: &str,
        actor: &str,
        why: &str,
    ) -> Result<Vec<RevocationRow>, RaError> {
        if !order.serial_hex.trim().is_empty() {
            return Err(RaError::invalid(
                "serial_hex",
                "an order for all of a holder's certificates names none",
            ));
        }
        let reason = order_reason(order)?;
        let payload_sha256 = sha256_hex(signed_content);
        let theirs = self.store.certificates_of(&order.iin)?;
        if self.store.payload_used(&payload_sha256)?.is_some() {
            let mut again = Vec::new();
            for c in &theirs {
                if let Some(r) = self.store.revocation(&c.serial)?
                    && r.revoked_by == actor
                {
                    again.push(r);
                }
            }
            return Ok(again);
        }
        let now = self.now();
        let mut batch = Vec::new();
        for c in theirs {
            if order.spare_signer && c.serial.eq_ignore_ascii_case(signer_serial) {
                continue;
            }
            if self.store.revocation(&c.serial)?.is_some() || expired(&c, now) {
                continue;
            }
            let notice = match &c.request_number {
                Some(n) => self
                    .store
                    .request(n)?
                    .and_then(|r| r.email)
                    .map(|to| notices::revoked(&to, &c.serial, why)),
                None => None,
            };
            batch.push(Revocation {
                row: RevocationRow {
                    serial: c.serial.clone(),
                    reason,
                    revoked_at: now,
                    invalidity_date: None,
                    revoked_by: actor.into(),
                },
                notice,
                audit: AuditEntry {
                    actor: actor.into(),
                    action: "certificate.revoked".into(),
                    object: format!("serial:{}", c.serial),
                    details: serde_json::json!({
                        "reason": reason.code(),
                        "invalidity_date": null,
                        "why": why,
                        "order": "all",
                    }),
                },
            });
        }
        if batch.is_empty() {
            return Err(RaError::new(
                ReasonCode::CertificateNotFound,
                format!(
                    "holder {} has no valid certificate left to revoke",
                    nuc_core::mask_iin(&order.iin)
                ),
            ));
        }
        self.store.revoke_all(&batch, Some(payload_sha256))?;
        tracing::info!(
            count = batch.len(),
            holder = %nuc_core::mask_iin(&order.iin),
            %reason,
            "certificates revoked at the holder's order for all"
        );
        metrics::counter!("nuc_certificates_revoked_total", "reason" => reason.rfc_name())
            .increment(batch.len() as u64);
        Ok(batch.into_iter().map(|r| r.row).collect())
    }

    /// A checked revocation order: a retry of one already carried out gets its revocation
    /// back; otherwise the certificate must be the named holder's, and it is revoked.
    fn carry_out_order(
        &self,
        order: &RevocationOrder,
        signed_content: &[u8],
        actor: &str,
        why: &str,
    ) -> Result<RevocationRow, RaError> {
        let payload_sha256 = sha256_hex(signed_content);
        if let Some(earlier) = self.earlier_revocation(order, &payload_sha256)? {
            return Ok(earlier);
        }
        self.check_holder(order)?;
        self.revoke(
            actor,
            &RevocationAsk {
                serial: &order.serial_hex,
                reason: order_reason(order)?,
                invalidity_date: None,
                why,
            },
            Some(payload_sha256),
        )
    }

    /// A signed order already carried out answers again with its revocation: the retry of a
    /// call whose answer was lost. Nothing changes.
    fn earlier_revocation(
        &self,
        order: &RevocationOrder,
        payload_sha256: &str,
    ) -> Result<Option<RevocationRow>, RaError> {
        if self.store.payload_used(payload_sha256)?.is_none() {
            return Ok(None);
        }
        Ok(self
            .store
            .revocation(&order.serial_hex.trim().to_ascii_lowercase())?)
    }

    /// The certificate named by a revocation order belongs to the IIN the order names.
    fn check_holder(&self, order: &RevocationOrder) -> Result<(), RaError> {
        let serial = order.serial_hex.trim().to_ascii_lowercase();
        let cert = self.store.certificate(&serial)?.ok_or_else(|| {
            RaError::new(
                ReasonCode::CertificateNotFound,
                format!("no certificate {serial}"),
            )
        })?;
        if cert.iin.as_deref() != Some(order.iin.as_str()) {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!("certificate {serial} does not belong to IIN {}", order.iin),
            ));
        }
        Ok(())
    }
}

/// Past its notAfter at `now` (a certificate whose bytes do not parse counts as valid: it is
/// revoked rather than left out).
fn expired(c: &CertificateRow, now: i64) -> bool {
    use der::Decode;
    c.der
        .as_deref()
        .and_then(|d| x509_cert::Certificate::from_der(d).ok())
        .is_some_and(|cert| {
            let not_after = cert
                .tbs_certificate()
                .validity()
                .not_after
                .to_unix_duration()
                .as_secs();
            i64::try_from(not_after).is_ok_and(|t| t < now)
        })
}
