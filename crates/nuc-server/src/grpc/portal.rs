//! PortalService: the egov portal's calls (F1 steps 1–3, F3, F7).

use std::sync::Arc;

use nuc_api::v1::portal_service_server::PortalService;
use nuc_api::v1::*;
use tonic::{Request, Response, Status};

use super::report::{listing_of, signed_document};
use super::{Api, Service, blocking, issued, issued_all};

pub struct PortalApi(pub Arc<Api>);

pub fn state_of(s: nuc_core::RequestState) -> RequestState {
    use nuc_core::RequestState as S;
    match s {
        S::Registered => RequestState::Registered,
        S::Confirmed => RequestState::Confirmed,
        S::Verified => RequestState::Verified,
        S::Issued => RequestState::Issued,
        S::Refused => RequestState::Refused,
        S::Expired => RequestState::Expired,
        S::Revoked => RequestState::Revoked,
    }
}

#[tonic::async_trait]
impl PortalService for PortalApi {
    async fn confirm_by_employer(
        &self,
        req: Request<ConfirmByEmployerRequest>,
    ) -> Result<Response<ConfirmByEmployerResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Portal)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let (row, certs) = blocking(async move {
            ra.confirm_by_employer(&caller.actor(), &r.signed_confirmation)
                .await
        })
        .await?;
        Ok(Response::new(ConfirmByEmployerResponse {
            request_number: row.number,
            state: state_of(row.state) as i32,
            certificates: issued_all(&certs),
        }))
    }

    async fn list_certificates(
        &self,
        req: Request<ListCertificatesRequest>,
    ) -> Result<Response<ListCertificatesResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Portal)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let report = blocking(async move {
            ra.certificate_report(&caller.actor(), &r.signed_request)
                .await
        })
        .await?;
        Ok(Response::new(listing_of(report)))
    }

    async fn get_certificate_report(
        &self,
        req: Request<ListCertificatesRequest>,
    ) -> Result<Response<CertificateReportDocument>, Status> {
        let caller = self.0.authorize(&req, Service::Portal)?;
        let r = req.into_inner();
        // The report spends the signed request: make sure first that there is a key to sign
        // the document with, so that a home without one refuses before anything is spent.
        let Some(signer) = self.0.inst.ca.report_signer() else {
            return Err(super::status(nuc_ra::RaError::new(
                nuc_core::ReasonCode::CaState,
                "no report signer in force: the signed report cannot be made (`nuc \
                 report-signer renew` makes one); nothing was spent",
            )));
        };
        let ra = self.0.ra.clone();
        let reports = self.0.reports.clone();
        // The RA's report, the PDF (CPU) and its signature (the HSM): all on the blocking pool.
        let (report, pdf, signed) = blocking(async move {
            let report = ra
                .certificate_report(&caller.actor(), &r.signed_request)
                .await?;
            let serial = nuc_ca::ocsp_signer::serial_of(&signer.cert_der)?;
            let (pdf, signed) = signed_document(&report, serial, reports.as_ref())?;
            Ok((report, pdf, signed))
        })
        .await?;
        Ok(Response::new(CertificateReportDocument {
            pdf,
            signature: signed.signature,
            signer_serial_hex: signed.signer_serial_hex,
            listing: Some(listing_of(report)),
        }))
    }

    async fn submit_application(
        &self,
        req: Request<SubmitApplicationRequest>,
    ) -> Result<Response<SubmitApplicationResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Portal)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let app = nuc_ra::Application {
            idempotency_key: Some(r.idempotency_key),
            iin: r.iin,
            bin: Some(r.bin),
            email: r.email,
            auth_csr: r.auth_csr,
            sign_csr: r.sign_csr,
            key_storage: nuc_core::KeyStorage::File,
            card_serial: None,
        };
        let row =
            blocking(async move { ra.submit_application(&caller.actor(), app).await }).await?;
        super::observe::note_request(&row.number);
        Ok(Response::new(SubmitApplicationResponse {
            request_number: row.number,
            state: state_of(row.state) as i32,
            expires_at: row.expires_at,
        }))
    }

    async fn submit_renewal(
        &self,
        req: Request<SubmitRenewalRequest>,
    ) -> Result<Response<SubmitRenewalResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Portal)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let (row, certs) = blocking(async move {
            ra.submit_renewal(
                &caller.actor(),
                Some(&r.idempotency_key),
                &r.signed_application,
            )
            .await
        })
        .await?;
        super::observe::note_request(&row.number);
        Ok(Response::new(SubmitRenewalResponse {
            request_number: row.number,
            state: state_of(row.state) as i32,
            certificates: issued_all(&certs),
        }))
    }

    async fn revoke_online(
        &self,
        req: Request<RevokeOnlineRequest>,
    ) -> Result<Response<RevokeOnlineResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Portal)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let rows =
            blocking(async move { ra.revoke_online(&caller.actor(), &r.signed_order) }).await?;
        let revoked: Vec<RevokedCertificate> = rows
            .into_iter()
            .map(|row| RevokedCertificate {
                serial_hex: row.serial,
                revoked_at: row.revoked_at,
            })
            .collect();
        // One certificate revoked is also given in the fields callers of a single order read.
        let (serial_hex, revoked_at) = match revoked.as_slice() {
            [one] => (one.serial_hex.clone(), one.revoked_at),
            _ => (String::new(), revoked.first().map_or(0, |r| r.revoked_at)),
        };
        Ok(Response::new(RevokeOnlineResponse {
            serial_hex,
            revoked_at,
            revoked,
        }))
    }

    async fn get_request_status(
        &self,
        req: Request<GetRequestStatusRequest>,
    ) -> Result<Response<GetRequestStatusResponse>, Status> {
        self.0.authorize(&req, Service::Portal)?;
        let ra = self.0.ra.clone();
        let number = req.into_inner().request_number;
        super::observe::note_request(&number);
        let row = blocking(async move { ra.request(&number) }).await?;
        Ok(Response::new(GetRequestStatusResponse {
            request_number: row.number,
            state: state_of(row.state) as i32,
            refusal_reason: row.refusal_reason.unwrap_or_default(),
            registered_at: row.registered_at,
            expires_at: row.expires_at,
            updated_at: row.updated_at,
        }))
    }

    async fn download_certificates(
        &self,
        req: Request<DownloadCertificatesRequest>,
    ) -> Result<Response<DownloadCertificatesResponse>, Status> {
        self.0.authorize(&req, Service::Portal)?;
        let ra = self.0.ra.clone();
        let number = req.into_inner().request_number;
        super::observe::note_request(&number);
        let dl = blocking(async move { ra.download(&number) }).await?;
        Ok(Response::new(DownloadCertificatesResponse {
            certificates: dl
                .certificates
                .iter()
                .map(|(s, p, d)| issued(s, p, d))
                .collect(),
            pkcs7_bundle: dl.pkcs7_bundle,
        }))
    }
}
