//! F2: repeat issuance online, signed by the applicant's currently valid SIGN certificate. No
//! CON visit: the request is registered as verified and its certificates issued at once, with
//! the identification method "remote".
//!
//! What a stolen key can get here is bounded, and this module must never loosen that: only the
//! SIGN (non-repudiation) certificate signs a renewal, never the AUTH one that logs in; the
//! address on record for the signing certificate hears of every renewal, whatever new address
//! the renewal names; and at most `[ra] max_remote_renewals` renewals follow one another before
//! the holder proves who they are at a CON again (each request keeps the certificate that
//! signed it and its place in that chain).

use nuc_core::{Identification, KeyStorage, ReasonCode, RequestKind, RequestState};
use nuc_payloads::RenewalApplication;
use nuc_store::RequestRow;

use crate::application::{Application, Registration, idempotency_key};
use crate::signer::{CheckedSigner, HolderKey};
use crate::{Ra, RaError, notices, number, sha256_hex};

impl Ra {
    /// F2: a renewal signed by the applicant's currently valid SIGN certificate, within the
    /// allowed number of remote renewals in a row, checked like a new application (fields,
    /// keys, registry) and issued at once; the address on record for the signing certificate
    /// is told. A retry under the same idempotency key answers with the first one's
    /// certificates.
    pub async fn submit_renewal(
        &self,
        caller: &str,
        idempotency: Option<&str>,
        signed: &[u8],
    ) -> Result<(RequestRow, Vec<nuc_ca::Issued>), RaError> {
        let key = idempotency_key(idempotency)?;
        let now = self.now();
        let s = self.applicant_signed::<RenewalApplication>(signed, HolderKey::Sign, now)?;
        let renewal = &s.payload;
        if renewal.iin.trim() != s.signer.iin {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!(
                    "the renewal is for IIN {}, the signer's certificate names IIN {}",
                    renewal.iin, s.signer.iin
                ),
            ));
        }
        if renewal.nonce.trim().is_empty() {
            return Err(RaError::applicant_signature(
                "the signed renewal has no nonce",
            ));
        }
        let predecessor = self.renewable(&s.signer)?;
        let app = Application {
            idempotency_key: key.clone(),
            iin: renewal.iin.clone(),
            bin: Some(renewal.bin.clone()),
            email: renewal.email.clone(),
            auth_csr: renewal.auth_csr.clone(),
            sign_csr: renewal.sign_csr.clone(),
            key_storage: KeyStorage::File,
            card_serial: None,
        };
        if let Some(existing) = self.replayed_request(caller, key.as_deref(), &app)? {
            let issued = self.issued_of(&existing.number)?;
            return Ok((existing, issued));
        }
        let checked = self.check_application(&app)?;
        let subject = self
            .registry_subject(&checked.iin, checked.bin.as_ref())
            .await?;
        let number = number::generate();
        // The holder of record hears of the renewal at the address they gave, not only at the
        // one the renewal names: a thief who changes the address is found out.
        let notice = predecessor
            .email
            .as_deref()
            .map(|to| notices::renewal(to, &s.signer.serial_hex, &number, &checked.email));
        let (row, created) = self.register(Registration {
            caller,
            checked: &checked,
            app: &app,
            subject,
            idempotency_key: key,
            number: &number,
            kind: RequestKind::Renewal,
            state: RequestState::Verified,
            expires_at: now,
            payload_sha256: Some(sha256_hex(&s.content)),
            notice,
            renewed_from: Some(s.signer.serial_hex.clone()),
            remote_renewals: predecessor.remote_renewals.saturating_add(1),
        })?;
        if !created {
            // A concurrent retry registered it: answer with what that one issues.
            let issued = self.issued_of(&row.number)?;
            return Ok((row, issued));
        }
        let actor = format!("holder:{}", s.signer.serial_hex);
        let issued = self
            .issue_for(
                &row,
                Identification::Remote,
                &actor,
                None,
                RequestState::Verified,
            )
            .await?;
        Ok((self.request(&row.number)?, issued))
    }

    /// The request that produced the signing certificate, if another remote renewal may follow
    /// it: one made at a CON, or a renewal fewer than `max_remote_renewals` renewals away from
    /// one. A certificate issued outside the RA's requests has no CON visit on record.
    fn renewable(&self, signer: &CheckedSigner) -> Result<RequestRow, RaError> {
        let max = self.config.max_remote_renewals;
        let predecessor = match &signer.request_number {
            Some(n) => self.store.request(n)?,
            None => None,
        };
        let Some(predecessor) = predecessor else {
            return Err(RaError::new(
                ReasonCode::ConVisitRequired,
                format!(
                    "certificate {} was not issued for a request of the NUC, so no visit to a CON is on record for it: apply at a CON",
                    signer.serial_hex
                ),
            ));
        };
        if predecessor.remote_renewals >= max {
            return Err(RaError::new(
                ReasonCode::ConVisitRequired,
                format!(
                    "certificate {} comes from {} remote renewal(s) in a row since the last visit to a CON, and [ra] max_remote_renewals allows {max}: apply at a CON",
                    signer.serial_hex, predecessor.remote_renewals
                ),
            ));
        }
        Ok(predecessor)
    }
}
