//! The registry service: serves a [`Fixture`] over the protocol [`crate::HttpRegistry`] speaks.
//!
//! `GET /v1/individuals/{iin}`, `GET /v1/legal-entities/{bin}`: 200 and the record; 400
//! `{"error": "invalid-argument", "field": "iin", "message": ...}` for a malformed number; 404
//! `{"error": "not-found", "what": ..., "id": ...}` for an unknown one. `GET /healthz` says it
//! serves and how much. Any other path: 404 `{"error": "no-such-endpoint"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nuc_core::{Bin, IdentError, Iin};
use serde_json::json;

use crate::Fixture;

/// The registry service over `data`. The caller binds it (the `nuc-registry` binary, or a test
/// on `127.0.0.1:0`).
pub fn router(data: Fixture) -> Router {
    Router::new()
        .route("/v1/individuals/{iin}", get(individual))
        .route("/v1/legal-entities/{bin}", get(legal_entity))
        .route("/healthz", get(healthz))
        .fallback(no_such_endpoint)
        .with_state(Arc::new(data))
}

type Data = State<Arc<Fixture>>;

async fn individual(State(data): Data, Path(iin): Path<String>) -> Response {
    let iin = match Iin::parse(&iin) {
        Ok(iin) => iin,
        Err(e) => return invalid("iin", &e),
    };
    match data.person(&iin) {
        Some(p) => {
            tracing::info!(iin = %nuc_core::mask_iin(iin.as_str()), "individual found");
            Json(p).into_response()
        }
        None => {
            tracing::info!(iin = %nuc_core::mask_iin(iin.as_str()), "individual not found");
            not_found("individual", iin.as_str())
        }
    }
}

async fn legal_entity(State(data): Data, Path(bin): Path<String>) -> Response {
    let bin = match Bin::parse(&bin) {
        Ok(bin) => bin,
        Err(e) => return invalid("bin", &e),
    };
    match data.legal_entity(&bin) {
        Some(e) => {
            tracing::info!(%bin, "legal entity found");
            Json(e).into_response()
        }
        None => {
            tracing::info!(%bin, "legal entity not found");
            not_found("legal entity", bin.as_str())
        }
    }
}

async fn healthz(State(data): Data) -> Json<serde_json::Value> {
    Json(json!({
        "status": "serving",
        "individuals": data.individuals().count(),
        "legal_entities": data.legal_entities().count(),
    }))
}

async fn no_such_endpoint() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no-such-endpoint" })),
    )
        .into_response()
}

fn invalid(field: &'static str, e: &IdentError) -> Response {
    // The malformed input is not echoed: the message names the field and the rule broken.
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid-argument", "field": field, "message": e.to_string() })),
    )
        .into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not-found", "what": what, "id": id })),
    )
        .into_response()
}
