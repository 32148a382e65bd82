//! The long-running service: gRPC over mutual TLS for callers, HTTP on loopback for health
//! (CRL and OCSP next), and the notification sender working through the outbox.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use nuc_api::v1::admin_service_server::AdminServiceServer;
use nuc_api::v1::operator_service_server::OperatorServiceServer;
use nuc_api::v1::portal_service_server::PortalServiceServer;
use nuc_api::v1::publisher_service_server::PublisherServiceServer;
use nuc_api::v1::verification_service_server::VerificationServiceServer;
use nuc_ra::OffsetClock;
use nuc_store::{CertificateReader, CertificateStore, PublicationStore};
use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::grpc::{AdminApi, Api, OperatorApi, PortalApi, PublisherApi, VerificationApi};
use crate::instance::Instance;
use crate::outbox;
use crate::publication::Publisher;

struct AppState {
    inst: Arc<Instance>,
    started: Instant,
    ocsp: nuc_publisher::ocsp::OcspCache,
}

const OCSP_RESPONSE: &str = "application/ocsp-response";

/// Answers an OCSP request (RFC 6960). Whatever the bytes, the answer is an OCSPResponse.
async fn ocsp_answer(state: Arc<AppState>, request: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let started = Instant::now();
    // A fresh pre-signed answer or a refusal costs a parse and a point lookup: served here.
    // Whatever must be signed goes to the blocking pool, where waiting on the HSM stalls no
    // connection; the OCSP signer's own bounded lane turns the excess away with tryLater.
    if let Some(answer) = state
        .ocsp
        .cached(state.inst.ocsp(), &request, nuc_core::time::now_unix())
    {
        return ([(axum::http::header::CONTENT_TYPE, OCSP_RESPONSE)], answer).into_response();
    }
    let answer = tokio::task::spawn_blocking(move || {
        state
            .ocsp
            .respond(state.inst.ocsp(), &request, nuc_core::time::now_unix())
    })
    .await
    .unwrap_or_else(|_| {
        nuc_publisher::ocsp::status_only(nuc_publisher::ocsp::OcspResponseStatus::InternalError)
    });
    tracing::debug!(
        micros = started.elapsed().as_micros() as u64,
        "ocsp answered"
    );
    ([(axum::http::header::CONTENT_TYPE, OCSP_RESPONSE)], answer).into_response()
}

async fn ocsp_post(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    ocsp_answer(state, body.to_vec()).await
}

/// GET form: the DER request, base64, URL-encoded in the path (RFC 6960 appendix A.1).
async fn ocsp_get(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(encoded): axum::extract::Path<String>,
) -> axum::response::Response {
    let request =
        openssl::base64::decode_block(encoded.trim_start_matches('/')).unwrap_or_default();
    ocsp_answer(state, request).await
}

/// The latest CRL of a kind, with caching headers derived from its nextUpdate.
async fn crl(state: Arc<AppState>, kind: nuc_store::CrlKind) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let inst = state.inst.clone();
    let row = tokio::task::spawn_blocking(move || match kind {
        nuc_store::CrlKind::Full => inst.store.latest_full_crl(),
        nuc_store::CrlKind::Delta => inst.store.latest_delta_crl(),
    })
    .await;
    match row {
        Ok(Ok(Some(row))) => {
            let max_age = (row.next_update - nuc_core::time::now_unix()).max(0);
            (
                [
                    (header::CONTENT_TYPE, "application/pkix-crl".to_owned()),
                    (header::CACHE_CONTROL, format!("public, max-age={max_age}")),
                    (header::ETAG, format!("\"{}\"", row.sha256)),
                ],
                row.der,
            )
                .into_response()
        }
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no CRL published yet").into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "CRL unavailable").into_response(),
    }
}

async fn root_crl(State(state): State<Arc<AppState>>) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    match std::fs::read(state.inst.home.ca_dir().join("root.crl")) {
        Ok(der) => (
            [
                (header::CONTENT_TYPE, "application/pkix-crl"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            der,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no root CRL published yet").into_response(),
    }
}

/// A CA certificate in DER, at the caIssuers URL the certificates name.
fn ca_certificate(der: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/pkix-cert"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        der,
    )
        .into_response()
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let counts = state.inst.store.certificate_counts().unwrap_or_default();
    Json(serde_json::json!({
        "status": "serving",
        "uptime_s": state.started.elapsed().as_secs(),
        "issuing_ca": state.inst.ca.issuing().subject.to_string(),
        "certificates": counts.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    }))
}

/// Overrides of `nuc.toml` from the command line.
#[derive(Debug, Default)]
pub struct ServeOptions {
    pub http_listen: Option<String>,
    pub grpc_listen: Option<String>,
}

fn loopback(addr: &SocketAddr, what: &str) {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "{what} listens beyond loopback");
    }
}

pub fn run(dir: &std::path::Path, opts: ServeOptions) -> anyhow::Result<()> {
    let clock = Arc::new(OffsetClock::default());
    let inst = Arc::new(Instance::open(dir, clock.clone())?);
    let development = inst.config.service.development;
    // Tests and demos move time forward (the 30-day deadline) by starting with an offset: a
    // hook that only a development home accepts, so that no production RA runs on a moved
    // clock.
    if let Some(text) = std::env::var_os("NUC_CLOCK_OFFSET_SECS") {
        if !development {
            anyhow::bail!(
                "NUC_CLOCK_OFFSET_SECS is a test hook, refused: this home is not a development home ([service] development = true, `nuc init --development`)"
            );
        }
        let offset: i64 = text.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            anyhow::anyhow!("NUC_CLOCK_OFFSET_SECS: {text:?} is not a number of seconds")
        })?;
        tracing::warn!(offset, "clock offset in force (development home)");
        clock.advance(offset);
    }
    let cfg = inst.config.clone();
    let home = inst.home.dir.clone();
    let http_listen = opts
        .http_listen
        .unwrap_or_else(|| cfg.service.http_listen.clone());
    let grpc_listen = opts.grpc_listen.unwrap_or_else(|| cfg.grpc.listen.clone());
    let http_addr: SocketAddr = http_listen
        .parse()
        .map_err(|e| anyhow::anyhow!("http_listen {http_listen:?}: {e}"))?;
    let grpc_addr: SocketAddr = grpc_listen
        .parse()
        .map_err(|e| anyhow::anyhow!("grpc listen {grpc_listen:?}: {e}"))?;
    loopback(&http_addr, "HTTP");
    loopback(&grpc_addr, "gRPC");
    if cfg.grpc.dev_plaintext && !development {
        anyhow::bail!(
            "[grpc] dev_plaintext is a test hook, refused: this home is not a development home ([service] development = true)"
        );
    }
    if cfg.grpc.dev_plaintext && !grpc_addr.ip().is_loopback() {
        anyhow::bail!("[grpc] dev_plaintext is allowed on loopback only");
    }

    // A reservation older than this without its certificate was left by a process that
    // stopped between reserving and recording; none in flight (a CLI beside us) is that old.
    const STALE_RESERVATION_SECS: i64 = 600;
    match inst.store.abandon_stale_reservations(
        nuc_core::time::now_unix() - STALE_RESERVATION_SECS,
        "system:recovery",
    ) {
        Ok(serials) if serials.is_empty() => {}
        Ok(serials) => tracing::warn!(
            count = serials.len(),
            serials = %serials.join(","),
            "stale reservations abandoned (the service had stopped mid-issuance); their requests can be confirmed again"
        ),
        Err(e) => anyhow::bail!("recovering stale reservations: {e}"),
    }

    let tls = if cfg.grpc.dev_plaintext {
        tracing::warn!("gRPC in PLAINTEXT dev mode: roles come from the x-nuc-dev-role header");
        None
    } else {
        let read = |p: &std::path::Path| {
            std::fs::read(home.join(p))
                .map_err(|e| anyhow::anyhow!("{}: {e}", home.join(p).display()))
        };
        let cert = read(&cfg.grpc.tls_cert)?;
        let key = read(&cfg.grpc.tls_key)?;
        let client_ca = der::pem::encode_string(
            "CERTIFICATE",
            der::pem::LineEnding::LF,
            &inst.ca.issuing().cert_der,
        )?;
        Some(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(cert, key))
                .client_ca_root(Certificate::from_pem(client_ca)),
        )
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let api = Arc::new(Api::new(inst.clone(), cfg.grpc.dev_plaintext));
        let publisher = Arc::new(Publisher::new(inst.clone()));
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<PortalServiceServer<PortalApi>>()
            .await;
        health_reporter
            .set_serving::<OperatorServiceServer<OperatorApi>>()
            .await;
        health_reporter
            .set_serving::<AdminServiceServer<AdminApi>>()
            .await;
        health_reporter
            .set_serving::<PublisherServiceServer<PublisherApi>>()
            .await;
        health_reporter
            .set_serving::<VerificationServiceServer<VerificationApi>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(nuc_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr).await?;
        let grpc = builder
            .add_service(health)
            .add_service(reflection)
            .add_service(PortalServiceServer::new(PortalApi(api.clone())))
            .add_service(OperatorServiceServer::new(OperatorApi(api.clone())))
            .add_service(AdminServiceServer::new(AdminApi(api.clone())))
            .add_service(PublisherServiceServer::new(PublisherApi {
                api: api.clone(),
                publisher: publisher.clone(),
            }))
            .add_service(VerificationServiceServer::new(VerificationApi(api.clone())))
            .serve_with_incoming_shutdown(
                tokio_stream_wrapper(grpc_listener),
                stopped(stop_rx.clone()),
            );

        let state = Arc::new(AppState {
            inst: inst.clone(),
            started: Instant::now(),
            ocsp: nuc_publisher::ocsp::OcspCache::new(
                nuc_publisher::ocsp::DEFAULT_VALIDITY_SECS,
                cfg.ocsp.cache_bytes,
            ),
        });
        let (root_der, issuing_der) = (
            inst.ca.root().cert_der.clone(),
            inst.ca.issuing().cert_der.clone(),
        );
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/ocsp", axum::routing::post(ocsp_post))
            .route("/ocsp/{*request}", get(ocsp_get))
            .route("/crl/root.crl", get(root_crl))
            .route(
                "/crl/issuing.crl",
                get(|State(s): State<Arc<AppState>>| crl(s, nuc_store::CrlKind::Full)),
            )
            .route(
                "/crl/issuing-delta.crl",
                get(|State(s): State<Arc<AppState>>| crl(s, nuc_store::CrlKind::Delta)),
            )
            .route(
                "/ca/root.cer",
                get(move || async move { ca_certificate(root_der) }),
            )
            .route(
                "/ca/issuing.cer",
                get(move || async move { ca_certificate(issuing_der) }),
            )
            // A request larger than an OCSP request can be is refused before it is read.
            .layer(axum::extract::DefaultBodyLimit::max(
                nuc_publisher::ocsp::MAX_REQUEST_BYTES,
            ))
            .with_state(state);
        let http_listener = tokio::net::TcpListener::bind(http_addr).await?;
        let http = axum::serve(http_listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));

        let sender = outbox::run(
            inst.store.clone(),
            cfg.notifications.clone(),
            home.clone(),
            stop_rx.clone(),
        );
        tracing::info!(%http_addr, %grpc_addr, "serving; health at /healthz, gRPC with mutual TLS");
        let crls = publisher.clone().run(stop_rx.clone());
        let (g, h, s, c) = tokio::join!(grpc, http, sender, crls);
        g?;
        h?;
        s?;
        c?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

/// Accepted connections as the stream tonic serves from, with TCP_NODELAY: a response written
/// in several pieces must not wait for the peer's delayed ACK (40 ms a call otherwise).
fn tokio_stream_wrapper(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

async fn wait_for_signal() {
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
