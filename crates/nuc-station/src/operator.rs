//! The operator's own key, in the operator's PKCS#11 token, and what it signs: the operator's
//! decision on the request at hand (a CMS SignedData over an `OperatorDecision`), a revocation
//! order at the counter (F5, over a `RevocationOrder`), and once, the PKCS#10 request for the
//! operator certificate itself.
//!
//! The token is driven through the same PKCS#11 code the CA uses for its own keys
//! (`nuc-hsm`), but it is the operator's token, with the operator's PIN: the CA's keys are
//! never reachable from a workstation.

use std::path::Path;

use der::{Decode, Encode};
use nuc_hsm::KeyAlgorithm;
use nuc_hsm::{Hsm, HsmKey};
use prost::Message;
use x509_cert::Certificate;

use crate::StationError;

/// `payload_type` of an operator's decision (proto common.proto, field 15).
const OPERATOR_DECISION: &str = "nuc.v1.OperatorDecision";
/// `payload_type` of a revocation order (F5 at the counter).
const REVOCATION_ORDER: &str = "nuc.v1.RevocationOrder";

fn token(e: impl std::fmt::Display) -> StationError {
    StationError::Token(e.to_string())
}

/// An operator ready to sign: a logged-in token, the key, and the operator's certificate.
pub struct Operator {
    hsm: Hsm,
    key: HsmKey,
    cert_der: Vec<u8>,
    pub serial_hex: String,
}

impl Operator {
    /// Opens the token `token_label` of `module` with `pin`, finds the P-256 key `key_label`
    /// and checks that `cert_pem` certifies it.
    pub fn open(
        module: &Path,
        token_label: &str,
        pin: &str,
        key_label: &str,
        cert_pem: &Path,
    ) -> Result<Self, StationError> {
        let pem = std::fs::read_to_string(cert_pem).map_err(|e| {
            StationError::Config(format!("--operator-cert {}: {e}", cert_pem.display()))
        })?;
        let (_, cert_der) = der::pem::decode_vec(pem.as_bytes()).map_err(|e| {
            StationError::Config(format!("--operator-cert {}: {e}", cert_pem.display()))
        })?;
        let cert = Certificate::from_der(&cert_der).map_err(|e| {
            StationError::Config(format!("--operator-cert {}: {e}", cert_pem.display()))
        })?;
        let hsm = Hsm::open(module, token_label, pin).map_err(token)?;
        let key = hsm
            .find_key(key_label, KeyAlgorithm::EcdsaP256)
            .map_err(token)?;
        if cert.tbs_certificate().subject_public_key_info() != &key.spki {
            return Err(StationError::Config(format!(
                "--operator-cert {} does not certify the key {key_label:?} of the token",
                cert_pem.display()
            )));
        }
        let serial_hex = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
        Ok(Self {
            hsm,
            key,
            cert_der,
            serial_hex,
        })
    }

    /// The operator's signed decision to confirm (or refuse, with a reason) `request_number`.
    pub fn decision(
        &self,
        request_number: &str,
        confirm: bool,
        refusal_reason: &str,
    ) -> Result<Vec<u8>, StationError> {
        use nuc_api::v1::operator_decision::Decision;
        let mut nonce = [0u8; 16];
        openssl::rand::rand_bytes(&mut nonce).map_err(token)?;
        let payload = nuc_api::v1::OperatorDecision {
            request_number: request_number.into(),
            decision: if confirm {
                Decision::Confirm
            } else {
                Decision::Refuse
            } as i32,
            refusal_reason: refusal_reason.into(),
            operator_serial_hex: self.serial_hex.clone(),
            signed_at: nuc_core::time::now_unix(),
            nonce: hex::encode(nonce),
            payload_type: OPERATOR_DECISION.into(),
        };
        self.sign(&payload.encode_to_vec())
    }

    /// The operator's signed order to revoke `serial_hex` of the holder `iin` for `reason`
    /// (RFC 5280 code, as payloads.proto `RevocationReason`): F5 at the counter.
    pub fn revocation_order(
        &self,
        serial_hex: &str,
        reason: i32,
        iin: &str,
    ) -> Result<Vec<u8>, StationError> {
        let mut nonce = [0u8; 16];
        openssl::rand::rand_bytes(&mut nonce).map_err(token)?;
        let payload = nuc_api::v1::RevocationOrder {
            serial_hex: serial_hex.into(),
            reason,
            iin: iin.into(),
            operator_serial_hex: self.serial_hex.clone(),
            signed_at: nuc_core::time::now_unix(),
            nonce: hex::encode(nonce),
            all: false,
            spare_signer: false,
            payload_type: REVOCATION_ORDER.into(),
        };
        self.sign(&payload.encode_to_vec())
    }

    /// CMS SignedData over `content`, signed in the token with the operator's certificate.
    fn sign(&self, content: &[u8]) -> Result<Vec<u8>, StationError> {
        nuc_cms::sign_with(
            content,
            &self.cert_der,
            &|attrs| {
                self.hsm
                    .sign(&self.key, attrs)
                    .map_err(|e| nuc_cms::CmsError::Signing(e.to_string()))
            },
            nuc_cms::SignatureAlgorithm::EcdsaSha256,
            false,
        )
        .map_err(token)
    }
}

/// Makes the operator's key pair in the token (P-256, never extractable) and the PKCS#10
/// request for the operator certificate, signed in the token. Gives the request in PEM.
pub fn new_key(
    module: &Path,
    token_label: &str,
    pin: &str,
    key_label: &str,
    common_name: &str,
) -> Result<String, StationError> {
    use std::str::FromStr;
    use x509_cert::request::{CertReq, CertReqInfo, Version};
    let hsm = Hsm::open(module, token_label, pin).map_err(token)?;
    let key = hsm
        .generate_key(key_label, KeyAlgorithm::EcdsaP256)
        .map_err(token)?;
    let subject = x509_cert::name::Name::from_str(&format!("CN={}", escape(common_name)))
        .map_err(|e| StationError::Config(format!("--cn: {e}")))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: key.spki.clone(),
        attributes: Default::default(),
    };
    let tbs = info.to_der().map_err(token)?;
    let signature = hsm.sign(&key, &tbs).map_err(token)?;
    let req = CertReq {
        info,
        algorithm: KeyAlgorithm::EcdsaP256.signature_algorithm(),
        signature: der::asn1::BitString::from_bytes(&signature).map_err(token)?,
    };
    der::pem::encode_string(
        "CERTIFICATE REQUEST",
        der::pem::LineEnding::LF,
        &req.to_der().map_err(token)?,
    )
    .map_err(token)
}

/// RFC 4514 escaping, so a name cannot change the structure of the DN.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#');
            special.then_some('\\').into_iter().chain(Some(c))
        })
        .collect()
}
