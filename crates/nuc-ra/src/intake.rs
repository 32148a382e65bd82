//! New requests waiting for a CON's decision: applied online (F1 steps 1–3) or registered at
//! a CON counter with keys on a card (F4 steps 1–5), and the registry look-up an operator makes
//! before that (F4 step 2).

use nuc_core::{RequestKind, RequestState};
use nuc_store::RequestRow;

use crate::application::{
    Applicant, Application, Registration, idempotency_key, parse_bin, parse_iin,
};
use crate::{Ra, RaError, notices, number};

impl Ra {
    /// F1 steps 1–3: check the application, the applicant in the registry, register it under a
    /// number and queue the e-mail with that number. The same idempotency key from the same
    /// caller returns the request registered the first time.
    pub async fn submit_application(
        &self,
        caller: &str,
        app: Application,
    ) -> Result<RequestRow, RaError> {
        let row = self
            .register_new(
                caller,
                &app,
                RequestKind::First,
                |number, email, expires_at| Some(notices::application(email, number, expires_at)),
            )
            .await?;
        tracing::info!(number = %row.number, "application registered");
        Ok(row)
    }

    /// F4 steps 1–5, at a CON: the applicant is at the counter, identified by the operator,
    /// and the keys were generated on the applicant's card. The request is checked and
    /// registered like an online application (registry included), with no e-mail to come to a
    /// CON — the applicant is there; the operator confirms it next with [`Ra::decide`]. The
    /// same idempotency key from the same workstation returns the request registered first.
    pub async fn register_at_counter(
        &self,
        caller: &str,
        app: Application,
    ) -> Result<RequestRow, RaError> {
        if !app.key_storage.on_card() {
            return Err(RaError::invalid(
                "key_storage",
                "a registration at the counter is for keys generated on an ID card, a SIM card or a USB token",
            ));
        }
        if let Some(serial) = &app.card_serial
            && (serial.len() > 64
                || !serial
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(RaError::invalid(
                "card_serial",
                "at most 64 letters, digits or dashes",
            ));
        }
        let row = self
            .register_new(caller, &app, RequestKind::Card, |_, _, _| None)
            .await?;
        tracing::info!(number = %row.number, key_storage = %app.key_storage, "registered at a CON counter");
        Ok(row)
    }

    /// F4 step 2: the applicant as the registry knows them (IIN, and BIN for an employee), for
    /// the operator to compare with the identity document. Nothing is stored.
    pub async fn lookup_applicant(
        &self,
        iin: &str,
        bin: Option<&str>,
    ) -> Result<Applicant, RaError> {
        let iin = parse_iin(iin)?;
        let bin = parse_bin(bin)?;
        let s = self.registry_subject(&iin, bin.as_ref()).await?;
        Ok(Applicant {
            iin: iin.to_string(),
            bin: bin.map(|b| b.to_string()),
            surname: s.surname,
            name: s.name,
            patronymic: s.patronymic,
            organization: s.organization,
            role: s.role,
        })
    }

    /// A new request waiting for a CON's decision: a retry of the same idempotency key answers
    /// with the request registered first (before any check: its keys may be certified by now);
    /// otherwise the fields, the keys and the registry are checked, and the request is
    /// registered with the notice `notify` makes of its number, address and deadline.
    async fn register_new(
        &self,
        caller: &str,
        app: &Application,
        kind: RequestKind,
        notify: impl FnOnce(&str, &str, i64) -> Option<nuc_core::Notice>,
    ) -> Result<RequestRow, RaError> {
        let key = idempotency_key(app.idempotency_key.as_deref())?;
        if let Some(existing) = self.replayed_request(caller, key.as_deref(), app)? {
            return Ok(existing);
        }
        let checked = self.check_application(app)?;
        let subject = self
            .registry_subject(&checked.iin, checked.bin.as_ref())
            .await?;
        let number = number::generate();
        let expires_at = self.now() + self.config.request_ttl_secs;
        let notice = notify(&number, &checked.email, expires_at);
        let (row, _) = self.register(Registration {
            caller,
            checked: &checked,
            app,
            subject,
            idempotency_key: key,
            number: &number,
            kind,
            state: RequestState::Registered,
            expires_at,
            payload_sha256: None,
            notice,
            renewed_from: None,
            remote_renewals: 0,
        })?;
        Ok(row)
    }
}
