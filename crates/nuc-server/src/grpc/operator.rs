//! OperatorService: CON workstations (F1 steps 4–6, F4, F5).

use std::sync::Arc;

use nuc_api::v1::operator_service_server::OperatorService;
use nuc_api::v1::*;
use tonic::{Request, Response, Status};

use super::portal::state_of;
use super::{Api, Service, blocking, issued_all};

pub struct OperatorApi(pub Arc<Api>);

pub(super) fn key_storage_of(k: nuc_core::KeyStorage) -> KeyStorage {
    match k {
        nuc_core::KeyStorage::File => KeyStorage::File,
        nuc_core::KeyStorage::IdCard => KeyStorage::IdCard,
        nuc_core::KeyStorage::SimCard => KeyStorage::SimCard,
        nuc_core::KeyStorage::Token => KeyStorage::Token,
    }
}

/// The request as the operator sees it: the subject comes from the registry, as stored.
fn application(row: nuc_store::RequestRow) -> Application {
    let subject: serde_json::Value = serde_json::from_str(&row.subject_json).unwrap_or_default();
    let field = |k: &str| {
        subject
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Application {
        request_number: row.number,
        state: state_of(row.state) as i32,
        iin: row.iin,
        bin: row.bin.unwrap_or_default(),
        surname: field("surname"),
        name: field("name"),
        patronymic: field("patronymic"),
        organization: field("organization"),
        role: row.role.unwrap_or_default(),
        email: row.email.unwrap_or_default(),
        registered_at: row.registered_at,
        expires_at: row.expires_at,
        key_storage: key_storage_of(row.key_storage) as i32,
    }
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn get_application(
        &self,
        req: Request<GetApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        self.0.authorize(&req, Service::Operator)?;
        let ra = self.0.ra.clone();
        let number = req.into_inner().request_number;
        super::observe::note_request(&number);
        let row = blocking(async move { ra.request(&number) }).await?;
        Ok(Response::new(application(row)))
    }

    async fn decide_application(
        &self,
        req: Request<DecideApplicationRequest>,
    ) -> Result<Response<DecideApplicationResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Operator)?;
        let r = req.into_inner();
        super::observe::note_request(&r.request_number);
        let ra = self.0.ra.clone();
        let (row, certs) = blocking(async move {
            ra.decide(
                &caller.actor(),
                &r.request_number,
                &r.operator_serial_hex,
                &r.signed_decision,
            )
            .await
        })
        .await?;
        Ok(Response::new(DecideApplicationResponse {
            request_number: row.number,
            state: state_of(row.state) as i32,
            certificates: issued_all(&certs),
        }))
    }

    async fn revoke_at_counter(
        &self,
        req: Request<RevokeAtCounterRequest>,
    ) -> Result<Response<RevokeAtCounterResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Operator)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let row = blocking(async move {
            ra.revoke_at_counter(&caller.actor(), &r.operator_serial_hex, &r.signed_order)
        })
        .await?;
        Ok(Response::new(RevokeAtCounterResponse {
            serial_hex: row.serial,
            revoked_at: row.revoked_at,
        }))
    }

    async fn register_at_counter(
        &self,
        req: Request<RegisterAtCounterRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.0.authorize(&req, Service::Operator)?;
        let r = req.into_inner();
        let key_storage = match KeyStorage::try_from(r.key_storage) {
            Ok(KeyStorage::IdCard) => nuc_core::KeyStorage::IdCard,
            Ok(KeyStorage::SimCard) => nuc_core::KeyStorage::SimCard,
            Ok(KeyStorage::Token) => nuc_core::KeyStorage::Token,
            _ => {
                return Err(super::refusal(
                    nuc_core::ReasonCode::InvalidArgument,
                    "key_storage: must be KEY_STORAGE_ID_CARD, KEY_STORAGE_SIM_CARD or KEY_STORAGE_TOKEN",
                ));
            }
        };
        let app = nuc_ra::Application {
            idempotency_key: Some(r.idempotency_key),
            iin: r.iin,
            bin: Some(r.bin),
            email: r.email,
            auth_csr: r.auth_csr,
            sign_csr: r.sign_csr,
            key_storage,
            card_serial: Some(r.card_serial).filter(|s| !s.is_empty()),
        };
        let ra = self.0.ra.clone();
        let row =
            blocking(async move { ra.register_at_counter(&caller.actor(), app).await }).await?;
        super::observe::note_request(&row.number);
        Ok(Response::new(application(row)))
    }

    async fn lookup_applicant(
        &self,
        req: Request<LookupApplicantRequest>,
    ) -> Result<Response<Applicant>, Status> {
        let caller = self.0.authorize(&req, Service::Operator)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let a = blocking(async move { ra.lookup_applicant(&r.iin, Some(&r.bin)).await }).await?;
        tracing::info!(caller = %caller.actor(), iin = %nuc_core::mask_iin(&a.iin), "applicant looked up in the registry");
        Ok(Response::new(Applicant {
            iin: a.iin,
            bin: a.bin.unwrap_or_default(),
            surname: a.surname,
            name: a.name,
            patronymic: a.patronymic.unwrap_or_default(),
            organization: a.organization.unwrap_or_default(),
            role: a.role.unwrap_or_default(),
        }))
    }

    async fn find_applications(
        &self,
        req: Request<FindApplicationsRequest>,
    ) -> Result<Response<Applications>, Status> {
        let caller = self.0.authorize(&req, Service::Operator)?;
        let iin = req.into_inner().iin;
        let ra = self.0.ra.clone();
        let masked = nuc_core::mask_iin(iin.trim());
        let rows = blocking(async move { ra.pending_applications(&iin) }).await?;
        tracing::info!(caller = %caller.actor(), iin = %masked, found = rows.len(), "pending applications listed");
        Ok(Response::new(Applications {
            applications: rows.into_iter().map(application).collect(),
        }))
    }

    async fn get_issued_certificates(
        &self,
        req: Request<GetIssuedCertificatesRequest>,
    ) -> Result<Response<IssuedCertificates>, Status> {
        self.0.authorize(&req, Service::Operator)?;
        let number = req.into_inner().request_number;
        super::observe::note_request(&number);
        let ra = self.0.ra.clone();
        let (row, certs) = blocking(async move { ra.issued_certificates(&number) }).await?;
        Ok(Response::new(IssuedCertificates {
            request_number: row.number,
            state: state_of(row.state) as i32,
            certificates: issued_all(&certs),
        }))
    }
}
