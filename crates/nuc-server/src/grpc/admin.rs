//! AdminService: NUC staff (F6, revocation of any certificate).

use std::sync::Arc;

use nuc_api::v1::admin_service_server::AdminService;
use nuc_api::v1::*;
use tonic::{Request, Response, Status};

use super::{Api, Service, issued, status};

pub struct AdminApi(pub Arc<Api>);

impl AdminApi {
    fn operator(&self, iin: &str) -> Result<Operator, Status> {
        let store = &self.0.ra.ca.store;
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
            status: o.status,
        })
    }

    fn set_status(
        &self,
        req: Request<OperatorRef>,
        to: &str,
    ) -> Result<Response<Operator>, Status> {
        let caller = self.0.authorize(&req, Service::Admin)?;
        let r = req.into_inner();
        let row = self
            .0
            .ra
            .set_operator_status(&caller.actor(), &r.iin, to, &r.reason)
            .map_err(status)?;
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
        let c = self
            .0
            .ra
            .issue_operator(&caller.actor(), &r.iin, &r.role, &r.con, r.csr)
            .await
            .map_err(status)?;
        Ok(Response::new(issued(&c.serial_hex, &c.profile, &c.der)))
    }

    async fn suspend_operator(
        &self,
        req: Request<OperatorRef>,
    ) -> Result<Response<Operator>, Status> {
        self.set_status(req, "suspended")
    }

    async fn resume_operator(
        &self,
        req: Request<OperatorRef>,
    ) -> Result<Response<Operator>, Status> {
        self.set_status(req, "active")
    }

    async fn dismiss_operator(
        &self,
        req: Request<OperatorRef>,
    ) -> Result<Response<Operator>, Status> {
        self.set_status(req, "dismissed")
    }

    async fn list_operators(
        &self,
        req: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsResponse>, Status> {
        self.0.authorize(&req, Service::Admin)?;
        let rows = self
            .0
            .ra
            .ca
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
        let row = self
            .0
            .ra
            .revoke(
                &caller.actor(),
                &r.serial_hex,
                i64::from(r.reason),
                invalidity,
                None,
                "by an administrator",
            )
            .map_err(status)?;
        Ok(Response::new(RevokeCertificateResponse {
            serial_hex: row.serial,
            revoked_at: row.revoked_at,
        }))
    }
}
