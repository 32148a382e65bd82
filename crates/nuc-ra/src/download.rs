//! F7: a request's state by its number, the download of its certificates, and the expiry of
//! requests nobody came to a CON for.

use nuc_core::ReasonCode;
use nuc_store::RequestRow;

use crate::{Ra, RaError, bundle, number};

/// At most this many waiting applications are listed for one IIN (one is usual; more means
/// repeated attempts, and the newest are the ones that matter).
pub const PENDING_LIMIT: u32 = 20;

/// What an applicant downloads (F7).
#[derive(Debug, Clone)]
pub struct Download {
    /// (serial hex, profile, DER) of each certificate of the request.
    pub certificates: Vec<(String, String, Vec<u8>)>,
    /// PKCS#7 certs-only: those certificates and the CA chain.
    pub pkcs7_bundle: Vec<u8>,
}

impl Ra {
    /// A request by number (F7).
    pub fn request(&self, number_text: &str) -> Result<RequestRow, RaError> {
        if !number::is_valid(number_text) {
            return Err(RaError::invalid(
                "request_number",
                format!("{number_text:?} is not a valid request number"),
            ));
        }
        let number = number::canonical(number_text);
        self.store.request(&number)?.ok_or_else(|| {
            RaError::new(ReasonCode::RequestNotFound, format!("no request {number}"))
        })
    }

    /// The applications of `iin_text` still waiting for a CON operator, newest first, at most
    /// [`PENDING_LIMIT`]: what the operator finds when the applicant gives no number.
    pub fn pending_applications(&self, iin_text: &str) -> Result<Vec<RequestRow>, RaError> {
        let iin = crate::application::parse_iin(iin_text.trim())?;
        Ok(self
            .store
            .pending_requests_of(iin.as_str(), self.now(), PENDING_LIMIT)?)
    }

    /// F7: the certificates of an issued request, and a PKCS#7 certs-only bundle with the chain.
    pub fn download(&self, number_text: &str) -> Result<Download, RaError> {
        let request = self.request(number_text)?;
        let certs = self.store.certificates_of_request(&request.number)?;
        if certs.is_empty() {
            return Err(RaError::new(
                ReasonCode::RequestState,
                format!(
                    "request {} has no certificates (it is {})",
                    request.number, request.state
                ),
            ));
        }
        let mut all: Vec<Vec<u8>> = certs.iter().map(|c| c.2.clone()).collect();
        all.push(self.ca.issuing_certificate().to_vec());
        all.push(self.ca.root_certificate().to_vec());
        let p7 = bundle::certs_only(&all)
            .map_err(|e| RaError::new(ReasonCode::Internal, format!("PKCS#7 bundle: {e}")))?;
        Ok(Download {
            certificates: certs,
            pkcs7_bundle: p7,
        })
    }

    /// Expires registered requests past their deadline (run by the scheduler and lazily).
    pub fn expire_due(&self) -> Result<Vec<String>, RaError> {
        Ok(self.store.expire_requests(self.now(), "system:expiry")?)
    }
}
