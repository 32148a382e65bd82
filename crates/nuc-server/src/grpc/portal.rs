//! PortalService: the egov portal's calls (F1 steps 1–3, F3, F7).

use std::sync::Arc;

use nuc_api::v1::portal_service_server::PortalService;
use nuc_api::v1::*;
use tonic::{Request, Response, Status};

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

fn standing_of(s: nuc_ra::Standing) -> CertificateStanding {
    match s {
        nuc_ra::Standing::Valid => CertificateStanding::Valid,
        nuc_ra::Standing::Expired => CertificateStanding::Expired,
        nuc_ra::Standing::Revoked => CertificateStanding::Revoked,
    }
}

fn identification_of(i: Option<nuc_core::Identification>) -> IdentificationMethod {
    match i {
        Some(nuc_core::Identification::InPerson) => IdentificationMethod::InPerson,
        Some(nuc_core::Identification::Remote) => IdentificationMethod::Remote,
        Some(nuc_core::Identification::Organization) => IdentificationMethod::Organization,
        None => IdentificationMethod::Unspecified,
    }
}

/// The report as the API lists it.
pub(super) fn listing_of(r: nuc_ra::CertificateReport) -> ListCertificatesResponse {
    let certificates = r
        .certificates
        .into_iter()
        .map(|c| {
            let mut hr_serial_hex = String::new();
            let (issued, con, operator_serial_hex, renewed_from) = match c.issued {
                nuc_ra::IssuedHow::AtCon {
                    con,
                    operator_serial,
                } => (IssuanceChannel::AtCon, con, operator_serial, String::new()),
                nuc_ra::IssuedHow::RemoteRenewal { renewed_from } => (
                    IssuanceChannel::RemoteRenewal,
                    String::new(),
                    String::new(),
                    renewed_from,
                ),
                nuc_ra::IssuedHow::Online => (
                    IssuanceChannel::Online,
                    String::new(),
                    String::new(),
                    String::new(),
                ),
                nuc_ra::IssuedHow::ByEmployer { hr_serial } => {
                    hr_serial_hex = hr_serial;
                    (
                        IssuanceChannel::ByEmployer,
                        String::new(),
                        String::new(),
                        String::new(),
                    )
                }
                nuc_ra::IssuedHow::ByAdministrator => (
                    IssuanceChannel::ByAdministrator,
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            };
            ReportedCertificate {
                serial_hex: c.serial,
                profile: c.profile,
                holder_iin: c.holder_iin.unwrap_or_default(),
                holder_name: c.holder_name,
                not_before: c.not_before,
                not_after: c.not_after,
                standing: standing_of(c.standing) as i32,
                request_number: c.request_number.unwrap_or_default(),
                issued: issued as i32,
                con,
                operator_serial_hex,
                renewed_from,
                identification: identification_of(c.identification) as i32,
                key_storage: super::operator::key_storage_of(c.key_storage) as i32,
                revocation: c.revocation.map(|r| ReportedRevocation {
                    revoked_at: r.revoked_at,
                    reason: r.reason.code() as i32,
                    invalidity_date: r.invalidity_date.unwrap_or(0),
                }),
                hr_serial_hex,
            }
        })
        .collect();
    ListCertificatesResponse {
        iin: r.iin,
        bin: r.bin.unwrap_or_default(),
        name: r.name,
        generated_at: r.generated_at,
        certificates,
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

/// The PDF of `report` with `signed_by` (the report signer's serial) in its footer, and the
/// report signer's detached CMS over it. Should the signer in force have been renewed since
/// `signed_by` was read, the PDF is rendered again with the serial that did sign, and signed
/// again: the footer always names the key of the signature that comes with the document.
fn signed_document(
    report: &nuc_ra::CertificateReport,
    mut signed_by: String,
    reports: &dyn nuc_ca::ReportSigner,
) -> Result<(Vec<u8>, nuc_ca::SignedReport), nuc_ra::RaError> {
    for _ in 0..2 {
        let pdf = nuc_report::render_pdf(&document_of(report, &signed_by)).map_err(|e| {
            nuc_ra::RaError::new(
                nuc_core::ReasonCode::Internal,
                format!("the report's PDF could not be rendered: {e}"),
            )
        })?;
        let signed = reports.sign_report(&pdf)?;
        if signed.signer_serial_hex == signed_by {
            return Ok((pdf, signed));
        }
        signed_by = signed.signer_serial_hex;
    }
    Err(nuc_ra::RaError::new(
        nuc_core::ReasonCode::Unavailable,
        "the report signer changed twice while the report was being signed: ask again",
    ))
}

/// The RA's report as the PDF words it (Kazakh / Russian where the caller words a field).
fn document_of(r: &nuc_ra::CertificateReport, signed_by: &str) -> nuc_report::CertificateReport {
    use nuc_report::{EntryState, KeyStorageWord, ReportEntry, RevocationLine};
    let entries = r
        .certificates
        .iter()
        .map(|c| ReportEntry {
            holder_name: c.holder_name.clone(),
            profile: c.profile.clone(),
            serial_hex: c.serial.clone(),
            not_before: c.not_before,
            not_after: c.not_after,
            state: match c.standing {
                nuc_ra::Standing::Valid => EntryState::Valid,
                nuc_ra::Standing::Expired => EntryState::Expired,
                nuc_ra::Standing::Revoked => EntryState::Revoked,
            },
            issued_how: issued_how(&c.issued),
            key_storage: match c.key_storage {
                nuc_core::KeyStorage::File => KeyStorageWord::File,
                nuc_core::KeyStorage::IdCard => KeyStorageWord::IdCard,
                nuc_core::KeyStorage::SimCard => KeyStorageWord::SimCard,
                nuc_core::KeyStorage::Token => KeyStorageWord::Token,
            },
            revocation: c.revocation.as_ref().map(|v| RevocationLine {
                at: v.revoked_at,
                reason: v.reason.rfc_name().into(),
            }),
        })
        .collect();
    nuc_report::CertificateReport {
        holder_name: r.name.clone(),
        subject_id: match &r.bin {
            Some(bin) => format!("БСН / БИН {bin}"),
            None => format!("ЖСН / ИИН {}", r.iin),
        },
        generated_at: r.generated_at,
        signed_by: signed_by.into(),
        entries,
    }
}

/// How a certificate came to be issued, in a few words of Kazakh / Russian.
fn issued_how(how: &nuc_ra::IssuedHow) -> String {
    match how {
        nuc_ra::IssuedHow::AtCon {
            con,
            operator_serial,
        } if con.is_empty() => format!("ХҚКО-да / в ЦОН, оператор {operator_serial}"),
        nuc_ra::IssuedHow::AtCon {
            con,
            operator_serial,
        } => format!("ХҚКО-да / в ЦОН: {con}, оператор {operator_serial}"),
        nuc_ra::IssuedHow::RemoteRenewal { renewed_from } => {
            format!("қашықтан қайта шығару / удалённый перевыпуск: {renewed_from}")
        }
        nuc_ra::IssuedHow::Online => "онлайн, ХҚКО-сыз / онлайн, без ЦОН".into(),
        nuc_ra::IssuedHow::ByAdministrator => "ҰКО әкімшісі / администратор НУЦ".into(),
        nuc_ra::IssuedHow::ByEmployer { hr_serial } => {
            format!("ұйымның кадр қызметі / кадровая служба организации: {hr_serial}")
        }
    }
}
