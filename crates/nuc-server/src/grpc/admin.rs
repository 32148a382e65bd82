//! AdminService: NUC staff (F6, revocation of any certificate).

use std::sync::Arc;

use nuc_api::v1::admin_service_server::AdminService;
use nuc_api::v1::*;
use nuc_core::{OperatorStatus, RevocationReason};
use nuc_ra::RevocationAsk;
use nuc_store::{CertificateReader, OperatorStore};
use tonic::{Request, Response, Status};

use super::{Api, Service, blocking, issued, status};

pub struct AdminApi(pub Arc<Api>);

impl AdminApi {
    fn operator(&self, iin: &str) -> Result<Operator, Status> {
        let store = &self.0.inst.store;
        let o = store
            .operator(iin)
            .map_err(|e| status(e.into()))?
            .ok_or_else(|| {
                status(nuc_ra::RaError::new(
                    nuc_core::ReasonCode::OperatorNotFound,
                    format!("no operator {iin}"),
                ))
            })?;
        Ok(Operator {
            certificate_serials: store
                .serials_for(&o.iin, "operator")
                .map_err(|e| status(e.into()))?,
            iin: o.iin,
            surname: o.surname,
            name: o.name,
            role: o.role,
            con: o.con,
            status: o.status.to_string(),
        })
    }

    async fn set_status(
        &self,
        req: Request<OperatorRef>,
        to: OperatorStatus,
    ) -> Result<Response<Operator>, Status> {
        let caller = self.0.authorize(&req, Service::Admin)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let row =
            blocking(async move { ra.set_operator_status(&caller.actor(), &r.iin, to, &r.reason) })
                .await?;
        Ok(Response::new(self.operator(&row.iin)?))
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn issue_operator_certificate(
        &self,
        req: Request<IssueOperatorCertificateRequest>,
    ) -> Result<Response<IssuedCertificate>, Status> {
        let caller = self.0.authorize(&req, Service::Admin)?;
        let r = req.into_inner();
        let ra = self.0.ra.clone();
        let c = blocking(async move {
            ra.issue_operator(&caller.actor(), &r.iin, &r.role, &r.con, r.csr)
                .await
        })
        .await?;
        Ok(Response::new(issued(&c.serial_hex, &c.profile, &c.der)))
    }

    async fn suspend_operator(
        &self,
        req: Request<OperatorRef>,
    ) -> Result<Response<Operator>, Status> {
        self.set_status(req, OperatorStatus::Suspended).await
    }

    async fn resume_operator(
        &self,
        req: Request<OperatorRef>,
    ) -> Result<Response<Operator>, Status> {
        self.set_status(req, OperatorStatus::Active).await
    }

    async fn dismiss_operator(
        &self,
        req: Request<OperatorRef>,
    ) -> Result<Response<Operator>, Status> {
        self.set_status(req, OperatorStatus::Dismissed).await
    }

    async fn list_operators(
        &self,
        req: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsResponse>, Status> {
        self.0.authorize(&req, Service::Admin)?;
        let rows = self
            .0
            .inst
            .store
            .operators()
            .map_err(|e| status(e.into()))?;
        let operators = rows
            .iter()
            .map(|o| self.operator(&o.iin))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(ListOperatorsResponse { operators }))
    }

    async fn revoke_certificate(
        &self,
        req: Request<RevokeCertificateRequest>,
    ) -> Result<Response<RevokeCertificateResponse>, Status> {
        let caller = self.0.authorize(&req, Service::Admin)?;
        let r = req.into_inner();
        let invalidity = (r.invalidity_date != 0).then_some(r.invalidity_date);
        let reason = RevocationReason::accepted(i64::from(r.reason))
            .map_err(|e| status(nuc_ra::RaError::invalid("reason", e)))?;
        let ra = self.0.ra.clone();
        let row = blocking(async move {
            ra.revoke(
                &caller.actor(),
                &RevocationAsk {
                    serial: &r.serial_hex,
                    reason,
                    invalidity_date: invalidity,
                    why: "by an administrator",
                },
                None,
            )
        })
        .await?;
        Ok(Response::new(RevokeCertificateResponse {
            serial_hex: row.serial,
            revoked_at: row.revoked_at,
        }))
    }
}
