//! VerificationService: relying parties ask whether a signed document can be trusted (F8).

use std::sync::Arc;

use nuc_api::v1::verification_service_server::VerificationService;
use nuc_api::v1::{
    SignerCertificate, SignerRevocation, VerifySignatureRequest, VerifySignatureResponse,
};
use nuc_core::{Bin, Iin, ReasonCode};
use nuc_verify::{Stated, Verdict};
use tonic::{Request, Response, Status};

use super::{Api, Service, offload, refusal};

pub struct VerificationApi(pub Arc<Api>);

/// The largest CMS, and the largest detached document, accepted (gRPC's own message limit
/// is 4 MiB; documents bigger than that are hashed by the relying party's own tooling).
const MAX_BYTES: usize = 4 * 1024 * 1024;

fn stated(r: &VerifySignatureRequest) -> Result<Stated, Status> {
    let invalid = |e: nuc_core::IdentError| refusal(ReasonCode::InvalidArgument, &e.to_string());
    Ok(Stated {
        iin: match r.iin.trim() {
            "" => None,
            s => Some(Iin::parse(s).map_err(invalid)?),
        },
        bin: match r.bin.trim() {
            "" => None,
            s => Some(Bin::parse(s).map_err(invalid)?),
        },
    })
}

fn response(v: Verdict) -> VerifySignatureResponse {
    let (reason, message) = match &v.failure {
        None => (nuc_api::v1::ReasonCode::Unspecified, String::new()),
        Some((code, message)) => (
            nuc_api::v1::ReasonCode::from_str_name(code.as_str())
                .unwrap_or(nuc_api::v1::ReasonCode::Unspecified),
            message.clone(),
        ),
    };
    VerifySignatureResponse {
        valid: v.is_valid(),
        reason: reason as i32,
        message,
        signer: v.signer.map(|s| SignerCertificate {
            serial_hex: s.serial_hex,
            subject: s.subject,
            profile: s.profile,
            iin: s.iin.unwrap_or_default(),
            bin: s.bin.unwrap_or_default(),
            not_before: s.not_before,
            not_after: s.not_after,
            der: s.der,
        }),
        signing_time: v.signing_time.unwrap_or(0),
        checked_at: v.checked_at,
        revocation: v.revocation.map(|r| SignerRevocation {
            revoked_at: r.revoked_at,
            reason: r.reason as i32,
            invalidity_date: r.invalidity_date.unwrap_or(0),
        }),
        content: v.content,
        digest_algorithm: v.digest_algorithm,
    }
}

#[tonic::async_trait]
impl VerificationService for VerificationApi {
    async fn verify_signature(
        &self,
        req: Request<VerifySignatureRequest>,
    ) -> Result<Response<VerifySignatureResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Verification)?;
        let r = req.into_inner();
        if r.cms.is_empty() {
            return Err(refusal(ReasonCode::InvalidArgument, "cms: is empty"));
        }
        if r.cms.len() > MAX_BYTES || r.detached_content.len() > MAX_BYTES {
            return Err(refusal(
                ReasonCode::InvalidArgument,
                &format!("cms or detached_content: larger than {MAX_BYTES} bytes"),
            ));
        }
        let stated = stated(&r)?;
        let inst = self.0.inst.clone();
        let verdict = offload(move || {
            let detached = (!r.detached_content.is_empty()).then_some(&r.detached_content[..]);
            nuc_verify::verify_document(inst.lookups(), &r.cms, detached, &stated, inst.ra.now())
                .map_err(|e| refusal(ReasonCode::StorageFailure, &e.to_string()))
        })
        .await?;
        match &verdict.failure {
            None => {
                tracing::info!(caller = %caller.actor(), signer = ?verdict.signer.as_ref().map(|s| &s.serial_hex), "signature verified: valid")
            }
            Some((code, message)) => {
                tracing::info!(caller = %caller.actor(), reason = %code, detail = %message, "signature verified: not valid")
            }
        }
        Ok(Response::new(response(verdict)))
    }
}
