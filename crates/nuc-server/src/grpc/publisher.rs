//! PublisherService: CRL publication on demand for the NUC's scheduler.

use std::sync::Arc;

use nuc_api::v1::publisher_service_server::PublisherService;
use nuc_api::v1::{CrlInfo, CrlStatus, GetCrlStatusRequest, PublishCrlsRequest};
use nuc_core::ReasonCode;
use nuc_store::{CrlKind, CrlRow};
use tonic::{Request, Response, Status};

use super::{Api, Service, offload, refusal};
use crate::publication::{PublicationError, Publisher};

pub struct PublisherApi {
    pub api: Arc<Api>,
    pub publisher: Arc<Publisher>,
}

/// What the scheduler may say about why it publishes: recorded in the audit log, so bounded.
const MAX_REASON_CHARS: usize = 500;

impl PublisherApi {
    fn info(&self, row: Option<CrlRow>) -> Option<CrlInfo> {
        let row = row?;
        let url = match row.kind {
            CrlKind::Full => "{crl_full}",
            CrlKind::Delta => "{crl_delta}",
        };
        Some(CrlInfo {
            crl_number: row.crl_number,
            base_crl_number: row.base_crl_number.unwrap_or(0),
            this_update: row.this_update,
            next_update: row.next_update,
            entries: row.entries,
            sha256: row.sha256,
            url: self.api.inst.home.config.publication.fill(url),
        })
    }

    async fn status(&self) -> Result<CrlStatus, Status> {
        let publisher = self.publisher.clone();
        let (full, delta) = offload(move || {
            publisher
                .current()
                .map_err(|e| refusal(ReasonCode::StorageFailure, &e.to_string()))
        })
        .await?;
        Ok(CrlStatus {
            full: self.info(full),
            delta: self.info(delta),
        })
    }
}

/// Why a publication failed, as the caller should read it: the HSM or the database may come
/// back, or the instance that publishes may be asked (retry later); anything else is a bug of
/// ours. Nothing was published either way.
fn failure_reason(e: &PublicationError) -> ReasonCode {
    use nuc_publisher::crl::PublishError;
    match e {
        PublicationError::NotPublisher => ReasonCode::Unavailable,
        PublicationError::Publish(PublishError::Hsm(_)) => ReasonCode::HsmFailure,
        PublicationError::Publish(PublishError::Store(nuc_store::StoreError::Unavailable(_))) => {
            ReasonCode::Unavailable
        }
        PublicationError::Publish(PublishError::Store(_)) => ReasonCode::StorageFailure,
        PublicationError::Publish(
            PublishError::Encoding(_)
            | PublishError::BadRevocation { .. }
            | PublishError::Invalid(_)
            | PublishError::LintFailed(_),
        ) => ReasonCode::Internal,
        // The spool's disk may get space back.
        PublicationError::Publish(PublishError::Spool(_)) => ReasonCode::Unavailable,
    }
}

#[tonic::async_trait]
impl PublisherService for PublisherApi {
    async fn publish_crls(
        &self,
        req: Request<PublishCrlsRequest>,
    ) -> Result<Response<CrlStatus>, Status> {
        let caller = self.api.authorize(&req, Service::Publisher)?;
        let reason = req.into_inner().reason;
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(refusal(
                ReasonCode::InvalidArgument,
                &format!("reason: longer than {MAX_REASON_CHARS} characters"),
            ));
        }
        let actor = caller.actor();
        tracing::info!(%actor, %reason, "CRL publication requested");
        let publisher = self.publisher.clone();
        offload(move || {
            publisher.publish_requested(&actor, &reason).map_err(|e| {
                tracing::error!(error = %e, "CRL publication on demand failed");
                refusal(failure_reason(&e), &format!("CRL publication failed: {e}"))
            })
        })
        .await?;
        Ok(Response::new(self.status().await?))
    }

    async fn get_crl_status(
        &self,
        req: Request<GetCrlStatusRequest>,
    ) -> Result<Response<CrlStatus>, Status> {
        self.api.authorize(&req, Service::Publisher)?;
        Ok(Response::new(self.status().await?))
    }
}
