//! `/healthz` and `/readyz` on the unauthenticated HTTP listener.
//!
//! `/healthz` says the process is alive and serving, from what it holds in memory: it must
//! never touch the database or the HSM, so that anyone may call it as often as they like.
//! `/readyz` says whether the service can do its work now: a pooled HSM session answers and is
//! logged in, and the database answers a read and an empty commit. Each check runs under
//! `[http] readiness_timeout_ms`, and one at a time, so that a flood of `/readyz` costs the HSM
//! and the database one check at a time, never a queue of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use nuc_store::StoreHealth;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::instance::Instance;

struct Health {
    inst: Arc<Instance>,
    started: Instant,
    timeout: Duration,
    hsm_turn: Arc<Semaphore>,
    db_turn: Arc<Semaphore>,
}

/// The two routes, with their own state.
pub fn router(inst: Arc<Instance>, timeout: Duration) -> axum::Router {
    let health = Arc::new(Health {
        inst,
        started: Instant::now(),
        timeout,
        hsm_turn: Arc::new(Semaphore::new(1)),
        db_turn: Arc::new(Semaphore::new(1)),
    });
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn healthz(State(h): State<Arc<Health>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "serving",
        "uptime_s": h.started.elapsed().as_secs(),
        "issuing_ca": h.inst.ca.issuing().subject.to_string(),
    }))
}

/// Runs `check` on the blocking pool, after any check of the same kind still running, all
/// within the timeout; the failure as the text `/readyz` shows.
async fn within(
    timeout: Duration,
    turn: &Arc<Semaphore>,
    check: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || format!("no answer within {} ms", timeout.as_millis());
    let Ok(Ok(turn)) = tokio::time::timeout_at(deadline, turn.clone().acquire_owned()).await else {
        return Err(late());
    };
    // The turn goes with the check: a check still stuck after its timeout keeps the next one
    // waiting rather than adding to what the HSM or the database is stuck on.
    let task = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        check()
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err("the check stopped before answering".into()),
        Err(_) => Err(late()),
    }
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, Json<serde_json::Value>) {
    let (inst_hsm, inst_db) = (h.inst.clone(), h.inst.clone());
    let (hsm, database) = tokio::join!(
        within(h.timeout, &h.hsm_turn, move || inst_hsm
            .ca
            .check_hsm()
            .map_err(|e| e.to_string())),
        within(h.timeout, &h.db_turn, move || inst_db
            .store
            .ping()
            .map_err(|e| e.to_string())),
    );
    let checks = [("hsm", hsm), ("database", database)];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    let report: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            };
            ((*name).to_owned(), v.into())
        })
        .collect();
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": report})),
        )
    } else {
        tracing::warn!(failed = ?failed, checks = ?report, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "failed": failed, "checks": report})),
        )
    }
}
