//! What each role may ask of the CA, as a trait: the RA issues, the publisher signs CRLs and
//! OCSP responses, the API's handlers sign the NUC's reports. A role holds the trait, not the [`Ca`], so it cannot reach the HSM, the
//! other keys or the policy; and a test can stand in for the CA without an HSM.

use const_oid::ObjectIdentifier;
use nuc_store::IssuanceLedger;

use crate::ca::{Ca, CaIdentity, IssueRequest, Issued};
use crate::csr::CheckedCsr;
use crate::error::CaError;
use crate::home::PublicationConfig;
use crate::ocsp_signer::OcspResponder;
use crate::report_signer::SignedReport;

/// The RA's handle on the CA: check a key, issue for checked orders, and the certificates a
/// signer must chain to.
pub trait Issuer: Send + Sync {
    /// Checks a PKCS#10 request against an end-entity profile (key rules, proof of
    /// possession); nothing is stored.
    fn check_key(&self, profile: &str, csr_der: &[u8]) -> Result<CheckedCsr, CaError>;

    /// Issues the certificates of `orders` together through `ledger` (reservation before the
    /// HSM signs, record after); a refusal is audited through the ledger and reserves nothing.
    fn issue(
        &self,
        orders: &[IssueRequest],
        ledger: &dyn IssuanceLedger,
    ) -> Result<Vec<Issued>, CaError>;

    /// The issuing CA's certificate (DER): what every end-entity certificate chains to.
    fn issuing_certificate(&self) -> &[u8];

    /// The root CA's certificate (DER).
    fn root_certificate(&self) -> &[u8];

    /// The role OIDs of NUC staff (profile `operator`): an operator's signature needs one.
    fn staff_roles(&self) -> Vec<ObjectIdentifier>;
}

/// The publisher's handle for CRLs: the issuer names and a signature by the issuing key (or,
/// for the root CRL, the root key).
pub trait CrlSigner: Send + Sync {
    fn issuing(&self) -> &CaIdentity;
    fn root(&self) -> &CaIdentity;
    /// The URLs the CRLs name (FreshestCRL).
    fn publication(&self) -> &PublicationConfig;
    /// A signature by the issuing CA's key over a linted TBSCertList.
    fn sign_crl(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError>;
    /// The same signature, over the digest of a linted TBSCertList hashed while it was
    /// streamed out (the hash of the issuing key's algorithm: SHA-256, or SHA-384 for P-384).
    fn sign_crl_digest(&self, digest: &[u8]) -> Result<Vec<u8>, CaError>;
    /// A signature by the root CA's key over the root's TBSCertList.
    fn sign_root_crl(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError>;
}

/// The OCSP responder's handle: the issuer it answers for, its own delegated certificate, and
/// a signature by its key.
pub trait OcspSigner: Send + Sync {
    fn issuing(&self) -> &CaIdentity;
    fn responder(&self) -> &CaIdentity;
    /// A signature by the OCSP signer's key over a ResponseData.
    fn sign_ocsp(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError>;
}

/// The handle of whoever hands out the NUC's own signed documents (the certificate report
/// of `GetCertificateReport`): a detached CMS by the report signer, nothing else. Blocking
/// (the HSM signs): an async handler calls it on the blocking pool.
pub trait ReportSigner: Send + Sync {
    /// A detached CMS SignedData over `content` by the report signer in force, with its
    /// certificate ([`Ca::sign_report`]).
    fn sign_report(&self, content: &[u8]) -> Result<SignedReport, CaError>;
}

impl ReportSigner for Ca {
    fn sign_report(&self, content: &[u8]) -> Result<SignedReport, CaError> {
        Ca::sign_report(self, content)
    }
}

impl Issuer for Ca {
    fn check_key(&self, profile: &str, csr_der: &[u8]) -> Result<CheckedCsr, CaError> {
        Ca::check_key(self, profile, csr_der)
    }

    fn issue(
        &self,
        orders: &[IssueRequest],
        ledger: &dyn IssuanceLedger,
    ) -> Result<Vec<Issued>, CaError> {
        Ca::issue(self, orders, ledger)
    }

    fn issuing_certificate(&self) -> &[u8] {
        &self.issuing().cert_der
    }

    fn root_certificate(&self) -> &[u8] {
        &self.root().cert_der
    }

    fn staff_roles(&self) -> Vec<ObjectIdentifier> {
        self.policy()
            .profiles
            .get("operator")
            .map(|p| p.roles.values().copied().collect())
            .unwrap_or_default()
    }
}

impl CrlSigner for Ca {
    fn issuing(&self) -> &CaIdentity {
        Ca::issuing(self)
    }

    fn root(&self) -> &CaIdentity {
        Ca::root(self)
    }

    fn publication(&self) -> &PublicationConfig {
        Ca::publication(self)
    }

    fn sign_crl(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
        self.sign_with_issuing(tbs_der)
    }

    fn sign_crl_digest(&self, digest: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(self.hsm.sign_digest(&self.issuing.key, digest)?)
    }

    fn sign_root_crl(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
        self.sign_with_root(tbs_der)
    }
}

/// One responder, taken whole from [`Ca::ocsp`]: what it names and what it signs with are
/// the same pair, whatever renewal happens meanwhile.
impl OcspSigner for OcspResponder {
    fn issuing(&self) -> &CaIdentity {
        OcspResponder::issuing(self)
    }

    fn responder(&self) -> &CaIdentity {
        self.identity()
    }

    fn sign_ocsp(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
        self.sign(tbs_der)
    }
}
