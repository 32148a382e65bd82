//! The long-running service: gRPC over mutual TLS for callers, HTTP on loopback for relying
//! parties (OCSP, CRLs, CA certificates) and health, the CRL publisher and the notification
//! sender working through the outbox; and the stop of all four, within a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use nuc_api::v1::admin_service_server::AdminServiceServer;
use nuc_api::v1::operator_service_server::OperatorServiceServer;
use nuc_api::v1::portal_service_server::PortalServiceServer;
use nuc_api::v1::publisher_service_server::PublisherServiceServer;
use nuc_api::v1::verification_service_server::VerificationServiceServer;
use nuc_publisher::OcspContext;
use nuc_publisher::status::StatusSnapshot;
use nuc_ra::OffsetClock;
use nuc_store::{CertificateStore, PublicationStore, RevocationReader};
use tokio::sync::watch;
use tonic::transport::Server;

use crate::grpc::{AdminApi, Api, OperatorApi, PortalApi, PublisherApi, VerificationApi};
use crate::instance::Instance;
use crate::listeners::{self, Bounds};
use crate::outbox;
use crate::publication::Publisher;

struct AppState {
    inst: Arc<Instance>,
    /// The OCSP responder in force and its cache, swapped whole at a renewal.
    ocsp: Arc<crate::rollover::OcspSlot>,
    /// Every serial's status as OCSP reads it: in memory, current with every instance's
    /// revocations through the store's feed.
    status: Arc<StatusSnapshot>,
}

impl AppState {
    /// What OCSP signs with (one responder, taken whole) and reads from; `memory_only` for
    /// the answers that must not wait on the database.
    fn ocsp_context<'a>(
        generation: &'a crate::rollover::OcspGeneration,
        store: &'a dyn RevocationReader,
    ) -> OcspContext<'a> {
        OcspContext {
            ca: generation.responder.as_ref(),
            store,
        }
    }
}

/// Connections the admin listener holds at once: a few scrapers and an operator's curl.
const ADMIN_MAX_CONNECTIONS: usize = 16;

const OCSP_RESPONSE: &str = "application/ocsp-response";

/// Answers an OCSP request (RFC 6960). Whatever the bytes, the answer is an OCSPResponse.
async fn ocsp_answer(state: Arc<AppState>, request: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let started = Instant::now();
    // A fresh pre-signed answer or a refusal costs a parse and a look in memory: served here.
    // Whatever must be signed or asked of the database goes to the blocking pool, where
    // waiting stalls no connection; the OCSP signer's own bounded lane turns the excess away
    // with tryLater.
    // One responder answers this request from start to end, whatever renewal lands meanwhile.
    let generation = state.ocsp.current();
    let in_memory = state.status.memory_only();
    if let Some(answer) = generation.cache.cached(
        AppState::ocsp_context(&generation, &in_memory),
        &request,
        nuc_core::time::now_unix(),
    ) {
        return ([(axum::http::header::CONTENT_TYPE, OCSP_RESPONSE)], answer).into_response();
    }
    let answer = tokio::task::spawn_blocking(move || {
        generation.cache.respond(
            AppState::ocsp_context(&generation, state.status.as_ref()),
            &request,
            nuc_core::time::now_unix(),
        )
    })
    .await
    .unwrap_or_else(|_| {
        nuc_publisher::ocsp::status_only(nuc_publisher::ocsp::OcspResponseStatus::InternalError)
            .into()
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

/// Pieces of a CRL read ahead of the connection: what one download holds in memory, at most.
const CRL_PIECES_AHEAD: usize = 2;

/// The latest CRL of a kind, with caching headers derived from its nextUpdate, streamed from
/// the store piece by piece (a CRL of millions of entries is never held whole). The first
/// piece is read before the answer starts, so a store that cannot give it yields a 500; a
/// piece missing later cuts the connection short of its Content-Length, which every client
/// sees as a failed download, never as a shorter CRL.
async fn crl(state: Arc<AppState>, kind: nuc_store::CrlKind) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let inst = state.inst.clone();
    let first = tokio::task::spawn_blocking(move || {
        let row = match kind {
            nuc_store::CrlKind::Full => inst.store.latest_full_crl(),
            nuc_store::CrlKind::Delta => inst.store.latest_delta_crl(),
        }?;
        let Some(row) = row else { return Ok(None) };
        let piece = inst.store.crl_chunk(row.crl_number, 0)?;
        Ok::<_, nuc_store::StoreError>(Some((row, piece)))
    })
    .await;
    let (row, first) = match first {
        Ok(Ok(Some((row, Some(first))))) => (row, first),
        Ok(Ok(None)) => return (StatusCode::NOT_FOUND, "no CRL published yet").into_response(),
        Ok(Ok(Some((row, None)))) => {
            tracing::error!(
                crl = row.crl_number,
                "the CRL's first piece is missing from the store"
            );
            return (StatusCode::INTERNAL_SERVER_ERROR, "CRL unavailable").into_response();
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading the CRL to serve failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "CRL unavailable").into_response();
        }
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "CRL unavailable").into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(CRL_PIECES_AHEAD);
    let inst = state.inst.clone();
    let (number, size) = (row.crl_number, row.size);
    tokio::task::spawn_blocking(move || {
        let mut sent = first.len() as i64;
        if tx.blocking_send(Ok(first.into())).is_err() {
            return;
        }
        let mut seq = 1;
        while sent < size {
            let piece = match inst.store.crl_chunk(number, seq) {
                Ok(Some(p)) if sent + p.len() as i64 <= size => p,
                outcome => {
                    let why = match outcome {
                        Err(e) => e.to_string(),
                        _ => format!("piece {seq} is missing or too long"),
                    };
                    tracing::error!(crl = number, sent, size, %why, "serving a CRL cut short");
                    let _ = tx.blocking_send(Err(std::io::Error::other(why)));
                    return;
                }
            };
            sent += piece.len() as i64;
            seq += 1;
            // The client went away: stop reading.
            if tx.blocking_send(Ok(piece.into())).is_err() {
                return;
            }
        }
    });
    let max_age = (row.next_update - nuc_core::time::now_unix()).max(0);
    (
        [
            (header::CONTENT_TYPE, "application/pkix-crl".to_owned()),
            (header::CONTENT_LENGTH, row.size.to_string()),
            (header::CACHE_CONTROL, format!("public, max-age={max_age}")),
            (header::ETAG, format!("\"{}\"", row.sha256)),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
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

/// Overrides of `nuc.toml` from the command line.
#[derive(Debug, Default)]
pub struct ServeOptions {
    pub http_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub grpc_listen: Option<String>,
}

fn loopback(addr: &SocketAddr, what: &str) {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "{what} listens beyond loopback");
    }
}

pub fn run(dir: &std::path::Path, opts: ServeOptions) -> anyhow::Result<()> {
    // Before any work, so that nothing done is left uncounted.
    let metrics = crate::metrics::Metrics::install()?;
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
    // A home copied, restored or edited with a loose umask is closed again before we serve.
    match crate::private_home::restrict(&home) {
        Ok(changed) if changed.is_empty() => {}
        Ok(changed) => tracing::warn!(
            count = changed.len(),
            paths = %changed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","),
            "the home was readable by others: made private (directories 0700, files 0600)"
        ),
        Err(e) => anyhow::bail!("{}: making the home private: {e}", home.display()),
    }
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
    let admin_addr: Option<SocketAddr> = opts
        .admin_listen
        .or_else(|| cfg.service.admin_listen.clone())
        .map(|a| {
            a.parse()
                .map_err(|e| anyhow::anyhow!("[service] admin_listen {a:?}: {e}"))
        })
        .transpose()?;
    loopback(&http_addr, "HTTP");
    loopback(&grpc_addr, "gRPC");
    if let Some(a) = &admin_addr {
        loopback(a, "the admin listener (metrics)");
        if *a == http_addr || *a == grpc_addr {
            anyhow::bail!(
                "[service] admin_listen {a} is the address of another listener: metrics are served apart from the public ports"
            );
        }
    }
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

    // The report signer: the one the store names, or a first one made now (a home made
    // before it existed). Without one the service still serves; only reports are refused.
    match inst
        .ca
        .ensure_report_signer(inst.store.as_ref(), "system:report-signer")
    {
        Ok(_) => {
            if let Some(id) = inst.ca.report_signer()
                && let Err(e) =
                    crate::renew::write_report_signer_pem(&inst.home.ca_dir(), &id.cert_der)
            {
                tracing::warn!(error = %e.message, "could not write this home's copy of the report signer certificate");
            }
        }
        Err(e) => tracing::warn!(
            reason = %e.reason(),
            error = %e,
            "no report signer: certificate reports cannot be signed until one is made (`nuc report-signer renew`)"
        ),
    }

    let tls = if cfg.grpc.dev_plaintext {
        tracing::warn!("gRPC in PLAINTEXT dev mode: roles come from the x-nuc-dev-role header");
        None
    } else {
        let read = |p: &std::path::Path| {
            std::fs::read(home.join(p))
                .map_err(|e| anyhow::anyhow!("{}: {e}", home.join(p).display()))
        };
        // Read here, so that a missing file is named before anything listens.
        read(&cfg.grpc.tls_cert)?;
        read(&cfg.grpc.tls_key)?;
        // The identity is swapped at a renewal (`nuc tls renew`) for new handshakes.
        let identity = Arc::new(crate::rollover::TlsIdentity::load(
            home.join(&cfg.grpc.tls_cert),
            home.join(&cfg.grpc.tls_key),
        )?);
        let config = crate::rollover::server_config(identity.clone(), &inst.ca.issuing().cert_der)?;
        Some((identity, config))
    };

    // Each connection is a descriptor; the SQLite files, the HSM and the outbox take a few more.
    listeners::raise_fd_limit((cfg.grpc.max_connections + cfg.http.max_connections) as u64 + 256);
    let grace = Duration::from_secs(cfg.service.shutdown_grace_secs);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        // The audit log's key and witnesses, refused here (naming the setting) rather than at
        // the first checkpoint.
        let audit = Arc::new(crate::audit::http::AuditState {
            inst: inst.clone(),
            log_key: inst
                .ca
                .checkpoint_signer(&cfg.audit.origin)?
                .verifier()
                .clone(),
            witnesses: crate::audit::witness_keys(&cfg.audit)?,
        });
        tracing::info!(key = %audit.log_key.to_vkey(), "audit log key");
        let api = Arc::new(Api::new(inst.clone(), cfg.grpc.dev_plaintext));
        let publisher = Arc::new(Publisher::new(inst.clone())?);
        let status = {
            let store = inst.store.clone();
            let known = cfg.ocsp.known_serials;
            tokio::task::spawn_blocking(move || {
                StatusSnapshot::start(Arc::new(store.clone()), &store, known)
            })
            .await??
        };
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
        // Reflection in both versions: grpcurl and grpcui speak v1, Python's grpcio-reflection
        // and older tools only v1alpha. Both hold the same descriptors and list the same
        // services (each reflection service included).
        let reflection_config = || {
            use tonic_reflection::pb::{v1, v1alpha};
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(nuc_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(v1alpha::FILE_DESCRIPTOR_SET)
                .include_reflection_service(false)
        };
        let reflection = reflection_config().build_v1()?;
        let reflection_v1alpha = reflection_config().build_v1alpha()?;
        // HTTP is bound first: whoever sees the gRPC port accept (the tests, a supervisor)
        // finds the OCSP/CRL port bound as well.
        let http_listener = tokio::net::TcpListener::bind(http_addr).await?;
        let admin_listener = match admin_addr {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                anyhow::anyhow!("[service] admin_listen {a}: {e}")
            })?),
            None => None,
        };
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr).await?;
        let grpc_conns = listeners::accept(
            grpc_listener,
            Bounds {
                name: "gRPC",
                max_connections: cfg.grpc.max_connections,
                idle: Duration::from_secs(cfg.grpc.idle_timeout_secs),
            },
            stop_rx.clone(),
        );
        let grpc = Server::builder()
            .layer(crate::grpc::observe::Observe)
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(PortalServiceServer::new(PortalApi(api.clone())))
            .add_service(OperatorServiceServer::new(OperatorApi(api.clone())))
            .add_service(AdminServiceServer::new(AdminApi(api.clone())))
            .add_service(PublisherServiceServer::new(PublisherApi {
                api: api.clone(),
                publisher: publisher.clone(),
            }))
            .add_service(VerificationServiceServer::new(VerificationApi(api.clone())));
        // Mutual TLS is ours, not tonic's: its certificate is swapped at a renewal.
        let tls_identity = tls.as_ref().map(|(identity, _)| identity.clone());
        let grpc: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = match tls {
            Some((_, config)) => Box::pin(grpc.serve_with_incoming_shutdown(
                tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::ReceiverStream::new(crate::rollover::handshakes(
                        grpc_conns,
                        config,
                        Duration::from_secs(cfg.grpc.handshake_timeout_secs),
                    )),
                    Ok::<_, std::io::Error>,
                ),
                stopped(stop_rx.clone()),
            )),
            None => Box::pin(grpc.serve_with_incoming_shutdown(
                tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::ReceiverStream::new(grpc_conns),
                    Ok::<_, std::io::Error>,
                ),
                stopped(stop_rx.clone()),
            )),
        };
        let ocsp = Arc::new(crate::rollover::OcspSlot::new(
            inst.ca.ocsp(),
            nuc_publisher::ocsp::DEFAULT_VALIDITY_SECS,
            cfg.ocsp.cache_bytes,
        ));
        // Renewals land while we serve: looked for periodically and on SIGHUP, until the stop.
        tokio::spawn(crate::rollover::watch(
            inst.clone(),
            ocsp.clone(),
            tls_identity,
            Duration::from_secs(cfg.service.reload_secs),
            stop_rx.clone(),
        ));

        let state = Arc::new(AppState {
            inst: inst.clone(),
            ocsp,
            status,
        });
        let (root_der, issuing_der) = (
            inst.ca.root().cert_der.clone(),
            inst.ca.issuing().cert_der.clone(),
        );
        let app = axum::Router::new()
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
            .with_state(state)
            .merge(crate::audit::http::router(audit))
            .merge(crate::health::router(
                inst.clone(),
                Duration::from_millis(cfg.http.readiness_timeout_ms),
            ));
        let http_conns = listeners::accept(
            http_listener,
            Bounds {
                name: "HTTP",
                max_connections: cfg.http.max_connections,
                idle: Duration::from_secs(cfg.http.idle_timeout_secs),
            },
            stop_rx.clone(),
        );
        let http = listeners::serve_http(
            http_conns,
            app,
            Duration::from_secs(cfg.http.header_read_timeout_secs),
        );

        // Metrics on their own listener, bounded like the others; absent, nothing listens.
        metrics.spawn_upkeep();
        let admin = {
            let router = metrics.router(inst.clone());
            let stop = stop_rx.clone();
            let header_timeout = Duration::from_secs(cfg.http.header_read_timeout_secs);
            let idle = Duration::from_secs(cfg.http.idle_timeout_secs);
            async move {
                let Some(listener) = admin_listener else {
                    tracing::info!("no admin listener ([service] admin_listen): no metrics");
                    return Ok(());
                };
                tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
                let conns = listeners::accept(
                    listener,
                    Bounds {
                        name: "admin",
                        max_connections: ADMIN_MAX_CONNECTIONS,
                        idle,
                    },
                    stop,
                );
                listeners::serve_http(conns, router, header_timeout).await
            }
        };
        let sender = outbox::run(
            inst.store.clone(),
            cfg.notifications.clone(),
            home.clone(),
            stop_rx.clone(),
        );
        tracing::info!(%http_addr, %grpc_addr, "serving; health at /healthz and /readyz, gRPC with mutual TLS");
        let crls = publisher.clone().run(stop_rx.clone());
        let checkpoints = crate::audit::checkpointer::run(inst.clone(), stop_rx.clone());
        // On a stop, each part stops taking new work and finishes what it holds, for up to the
        // grace period; whatever is still open then is dropped with its part.
        let (g, h, m, s, c, a) = tokio::join!(
            listeners::within_grace("gRPC", async { Ok(grpc.await?) }, stop_rx.clone(), grace),
            listeners::within_grace("HTTP", http, stop_rx.clone(), grace),
            listeners::within_grace("admin", admin, stop_rx.clone(), grace),
            listeners::within_grace("outbox sender", sender, stop_rx.clone(), grace),
            listeners::within_grace("CRL publisher", crls, stop_rx.clone(), grace),
            listeners::within_grace("audit checkpoints", checkpoints, stop_rx.clone(), grace),
        );
        let complete = [
            g?.is_some(),
            h?.is_some(),
            m?.is_some(),
            s?.is_some(),
            c?.is_some(),
            a?.is_some(),
        ];
        Ok::<_, anyhow::Error>(complete.iter().all(|done| *done))
    });
    // Tasks cut off by the grace period go with the runtime; a blocking call still in the HSM
    // or the database is left to the process's exit (a commit is atomic: it lands whole or
    // not at all, and an unanswered request was never acknowledged).
    runtime.shutdown_timeout(Duration::from_secs(1));
    if served? {
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "stopped: what was still open after the grace period was closed"
        );
    }
    Ok(())
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
