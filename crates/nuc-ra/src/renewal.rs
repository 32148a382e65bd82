//! F2: repeat issuance online, signed by the applicant's currently valid certificate. No CON
//! visit: the request is registered as verified and its certificates issued at once, with the
//! identification method "remote".

use nuc_core::{Identification, KeyStorage, ReasonCode, RequestKind, RequestState};
use nuc_payloads::RenewalApplication;
use nuc_store::RequestRow;

use crate::application::{Application, Registration, idempotency_key};
use crate::{Ra, RaError, number, sha256_hex};

impl Ra {
    /// F2: a renewal signed by the applicant's currently valid certificate, checked like a new
    /// application (fields, keys, registry) and issued at once. A retry under the same
    /// idempotency key answers with the first one's certificates.
    pub async fn submit_renewal(
        &self,
        caller: &str,
        idempotency: Option<&str>,
        signed: &[u8],
    ) -> Result<(RequestRow, Vec<nuc_ca::Issued>), RaError> {
        let key = idempotency_key(idempotency)?;
        let now = self.now();
        let s = self.applicant_signed::<RenewalApplication>(signed, now)?;
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
            notice: None,
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
}
