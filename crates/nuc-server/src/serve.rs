//! The long-running service: for now HTTP health on loopback; gRPC, CRL and OCSP come next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use nuc_ca::Ca;

struct AppState {
    ca: Ca,
    started: Instant,
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let counts = state.ca.store.certificate_counts().unwrap_or_default();
    Json(serde_json::json!({
        "status": "serving",
        "uptime_s": state.started.elapsed().as_secs(),
        "issuing_ca": state.ca.issuing.subject.to_string(),
        "certificates": counts.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    }))
}

pub fn run(ca: Ca, http_listen: Option<String>) -> anyhow::Result<()> {
    let listen = http_listen.unwrap_or_else(|| ca.home.config.service.http_listen.clone());
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("http_listen {listen:?}: {e}"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "HTTP listens beyond loopback");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let state = Arc::new(AppState {
            ca,
            started: Instant::now(),
        });
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving; health at /healthz");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupt received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}
