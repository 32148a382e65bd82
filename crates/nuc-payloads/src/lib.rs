//! The payloads that people of the NUC sign: an operator's decision on an application, a
//! revocation order (an operator's at a CON counter, or the holder's online), a renewal
//! application signed by the applicant's current certificate, and a holder's (or a legal
//! entity's first head's) request for the report of their certificates, and a legal entity's
//! HR officer's confirmation of an employee's application.
//!
//! This crate owns their encoding (prost messages compiled from `proto/nuc/v1/payloads.proto`)
//! and the `payload_type` each names, so that the RA can decode what was signed without
//! depending on gRPC. It must never hold behaviour: the checks of a payload are the RA's.

#![allow(clippy::all, missing_docs)]

/// `nuc.v1` payload messages.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/nuc.v1.rs"));
}

pub use v1::operator_decision::Decision;
pub use v1::{
    CertificateReportRequest, EmployerConfirmation, OperatorDecision, RenewalApplication,
    RevocationOrder, RevocationReason,
};

/// The `payload_type` of each signed payload (field 15): a signature given for one purpose is
/// never read as another, even where two encodings coincide.
pub const OPERATOR_DECISION: &str = "nuc.v1.OperatorDecision";
pub const REVOCATION_ORDER: &str = "nuc.v1.RevocationOrder";
pub const RENEWAL_APPLICATION: &str = "nuc.v1.RenewalApplication";
pub const CERTIFICATE_REPORT_REQUEST: &str = "nuc.v1.CertificateReportRequest";
pub const EMPLOYER_CONFIRMATION: &str = "nuc.v1.EmployerConfirmation";

/// A payload that names its own type.
pub trait SignedPayload: prost::Message + Default {
    /// The `payload_type` it must carry.
    const TYPE: &'static str;
    /// The `payload_type` it carries.
    fn payload_type(&self) -> &str;
    /// When the signer says they signed it (unix seconds, the signer's clock).
    fn signed_at(&self) -> i64;
}

impl SignedPayload for OperatorDecision {
    const TYPE: &'static str = OPERATOR_DECISION;
    fn payload_type(&self) -> &str {
        &self.payload_type
    }
    fn signed_at(&self) -> i64 {
        self.signed_at
    }
}

impl SignedPayload for RevocationOrder {
    const TYPE: &'static str = REVOCATION_ORDER;
    fn payload_type(&self) -> &str {
        &self.payload_type
    }
    fn signed_at(&self) -> i64 {
        self.signed_at
    }
}

impl SignedPayload for RenewalApplication {
    const TYPE: &'static str = RENEWAL_APPLICATION;
    fn payload_type(&self) -> &str {
        &self.payload_type
    }
    fn signed_at(&self) -> i64 {
        self.signed_at
    }
}

impl SignedPayload for EmployerConfirmation {
    const TYPE: &'static str = EMPLOYER_CONFIRMATION;
    fn payload_type(&self) -> &str {
        &self.payload_type
    }
    fn signed_at(&self) -> i64 {
        self.signed_at
    }
}

impl SignedPayload for CertificateReportRequest {
    const TYPE: &'static str = CERTIFICATE_REPORT_REQUEST;
    fn payload_type(&self) -> &str {
        &self.payload_type
    }
    fn signed_at(&self) -> i64 {
        self.signed_at
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn each_type_names_its_full_message_name() {
        let d = OperatorDecision {
            payload_type: OPERATOR_DECISION.into(),
            ..Default::default()
        };
        let back = OperatorDecision::decode(d.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.payload_type(), OperatorDecision::TYPE);
        assert_eq!(RevocationOrder::TYPE, "nuc.v1.RevocationOrder");
        assert_eq!(RenewalApplication::TYPE, "nuc.v1.RenewalApplication");
        assert_eq!(
            CertificateReportRequest::TYPE,
            "nuc.v1.CertificateReportRequest"
        );
    }

    #[test]
    fn revocation_reasons_are_the_rfc_5280_codes() {
        assert_eq!(RevocationReason::KeyCompromise as i32, 1);
        assert_eq!(RevocationReason::AffiliationChanged as i32, 3);
        assert_eq!(RevocationReason::CessationOfOperation as i32, 5);
    }
}
