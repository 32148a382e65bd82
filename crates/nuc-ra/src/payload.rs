//! Signed payloads: a CMS whose signer passed every check, whose content decodes as the
//! payload this call expects and names that type.

use nuc_payloads::SignedPayload;

use crate::signer::CheckedSigner;
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
        Ok(Signed {
            signer,
            payload,
            content: verified.content,
        })
    }

    /// A payload in a CMS signed by a holder's own currently valid certificate (F2, F3).
    pub(crate) fn applicant_signed<P: SignedPayload>(
        &self,
        signed: &[u8],
        now: i64,
    ) -> Result<Signed<P>, RaError> {
        let verified = nuc_cms::verify(signed, None).map_err(RaError::applicant_signature)?;
        let signer = self
            .signer_checks()
            .applicant(&verified.signer_cert_der, now)?;
        let payload = decode(&verified.content, RaError::applicant_signature::<String>)?;
        Ok(Signed {
            signer,
            payload,
            content: verified.content,
        })
    }
}
