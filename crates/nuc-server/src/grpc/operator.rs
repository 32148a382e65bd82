//! OperatorService: CON workstations (F1 steps 4–6, F5).

use std::sync::Arc;

use nuc_api::v1::operator_service_server::OperatorService;
use nuc_api::v1::*;
use tonic::{Request, Response, Status};

use super::portal::state_of;
use super::{Api, Service, blocking, issued};

pub struct OperatorApi(pub Arc<Api>);

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn get_application(
        &self,
        req: Request<GetApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        self.0.authorize(&req, Service::Operator)?;
        let ra = self.0.ra.clone();
        let number = req.into_inner().request_number;
        let row = blocking(async move { ra.request(&number) }).await?;
        let subject: serde_json::Value =
            serde_json::from_str(&row.subject_json).unwrap_or_default();
        let field = |k: &str| {
            subject
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Response::new(Application {
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
        }))
    }

    async fn decide_application(
        &self,
        req: Request<DecideApplicationRequest>,
    ) -> Result<Response<DecideApplicationResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Operator)?;
        let r = req.into_inner();
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
            certificates: certs
                .iter()
                .map(|c| issued(&c.serial_hex, &c.profile, &c.der))
                .collect(),
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
}
