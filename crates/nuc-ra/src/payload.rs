//! Signed payloads: a CMS whose signer passed every check, whose content decodes as the
//! payload this call expects and names that type.

use nuc_core::ReasonCode;
use nuc_payloads::SignedPayload;

use crate::signer::{CheckedSigner, HolderKey};
use crate::{Ra, RaError};

/// Decodes a signed payload and checks that it is of the type this call expects: a signature
/// given for one purpose is never read as another.
pub(crate) fn decode<P: SignedPayload>(
    content: &[u8],
    fail: fn(String) -> RaError,
) -> Result<P, RaError> {
    let p = P::decode(content)
        .map_err(|e| fail(format!("the signed content is not a {}: {e}", P::TYPE)))?;
    if p.payload_type() != P::TYPE {
        let found = if p.payload_type().is_empty() {
            "payload without a type"
        } else {
            p.payload_type()
        };
        return Err(fail(format!(
            "the signed content is a {found:?}, not a {}",
            P::TYPE
        )));
    }
    Ok(p)
}

impl Ra {
    /// A payload is fresh: signed (by its CMS signingTime and by its own `signed_at`, which
    /// must agree) no longer than the window ago, and not in the future beyond the skew.
    fn check_fresh<P: SignedPayload>(
        &self,
        payload: &P,
        signing_time: Option<i64>,
        now: i64,
    ) -> Result<(), RaError> {
        let (window, skew) = (self.config.payload_window_secs, self.config.clock_skew_secs);
        let claimed = payload.signed_at();
        let Some(cms_time) = signing_time else {
            return Err(RaError::new(
                ReasonCode::SigningTimeMismatch,
                format!("the {} carries no CMS signingTime", P::TYPE),
            ));
        };
        // Both times come from outside: their distance is taken without overflow, so that one
        // at the far end of i64 is a mismatch, not a wrapped difference (or a panic).
        if cms_time.abs_diff(claimed) > skew.unsigned_abs() {
            return Err(RaError::new(
                ReasonCode::SigningTimeMismatch,
                format!(
                    "the CMS says it was signed at {}, the {} says {} (more than {skew} s apart)",
                    nuc_core::time::rfc3339(cms_time),
                    P::TYPE,
                    nuc_core::time::rfc3339(claimed)
                ),
            ));
        }
        let latest = cms_time.max(claimed);
        let earliest = cms_time.min(claimed);
        if latest > now.saturating_add(skew) {
            return Err(RaError::new(
                ReasonCode::PayloadFromTheFuture,
                format!(
                    "the {} claims to be signed at {}, after now ({}) by more than {skew} s",
                    P::TYPE,
                    nuc_core::time::rfc3339(latest),
                    nuc_core::time::rfc3339(now)
                ),
            ));
        }
        if earliest < now.saturating_sub(window) {
            return Err(RaError::new(
                ReasonCode::PayloadExpired,
                format!(
                    "the {} was signed at {}, more than {window} s ago: sign it again",
                    P::TYPE,
                    nuc_core::time::rfc3339(earliest)
                ),
            ));
        }
        Ok(())
    }
}

/// A payload with the signer who signed it and the signed bytes (for the payload's hash).
pub(crate) struct Signed<P> {
    pub signer: CheckedSigner,
    pub payload: P,
    pub content: Vec<u8>,
}

impl Ra {
    /// A payload in a CMS signed by the operator of this session, with every operator check
    /// passed (SPEC F1 step 5).
    pub(crate) fn operator_signed<P: SignedPayload>(
        &self,
        signed: &[u8],
        session_operator: &str,
        now: i64,
    ) -> Result<Signed<P>, RaError> {
        let verified = nuc_cms::verify(signed, None).map_err(RaError::operator_signature)?;
        let signer = self.signer_checks().operator(
            &verified.signer_cert_der,
            session_operator.trim(),
            now,
        )?;
        let payload = decode(&verified.content, RaError::operator_signature::<String>)?;
        self.check_fresh(&payload, verified.signing_time, now)?;
        Ok(Signed {
            signer,
            payload,
            content: verified.content,
        })
    }

    /// A payload in a CMS signed by a holder's own currently valid certificate, of the kind
    /// `key` allows (F2: SIGN only; F3: AUTH or SIGN).
    pub(crate) fn applicant_signed<P: SignedPayload>(
        &self,
        signed: &[u8],
        key: HolderKey,
        now: i64,
    ) -> Result<Signed<P>, RaError> {
        let verified = nuc_cms::verify(signed, None).map_err(RaError::applicant_signature)?;
        let signer = self
            .signer_checks()
            .holder(&verified.signer_cert_der, key, now)?;
        let payload = decode(&verified.content, RaError::applicant_signature::<String>)?;
        self.check_fresh(&payload, verified.signing_time, now)?;
        Ok(Signed {
            signer,
            payload,
            content: verified.content,
        })
    }
}
