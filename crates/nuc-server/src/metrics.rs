//! Prometheus metrics of the service, at `/metrics` on the admin listener
//! (`[service] admin_listen`), never on the public OCSP/CRL port.
//!
//! The roles record into the `metrics` facade where the work happens (the CA counts what it
//! issued, the RA what it revoked, the HSM times its signatures, the stores their commits,
//! the OCSP responder its answers, the gRPC layer every call); this module installs the
//! recorder that keeps them, describes each metric once, and adds at each scrape what is
//! read rather than counted: the current CRL, the outbox, and when our certificates expire.
//!
//! It must never put a value chosen by a caller into a label (see `grpc::observe`), and a
//! scrape must never block on the HSM: it reads the database and the home only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::instance::Instance;

/// Bucket bounds of every latency histogram, in seconds: from a cached OCSP answer (tens of
/// µs) through an HSM signature and an fsync (ms) to a registry timeout (s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often histograms are folded into their buckets when nobody scrapes, so that samples
/// do not pile up in memory between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed once.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Build(String),
}

impl Metrics {
    /// Installs the process-wide recorder and describes every metric. Call once, before any
    /// work is recorded (what is recorded before goes nowhere).
    pub fn install() -> Result<Self, MetricsError> {
        let handle = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .map_err(|e| MetricsError::Build(e.to_string()))?
            .install_recorder()
            .map_err(|e| MetricsError::Build(e.to_string()))?;
        describe();
        gauge!("nuc_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        Ok(Self { handle })
    }

    /// Folds histogram samples every few seconds until the process ends.
    pub fn spawn_upkeep(&self) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }

    /// The admin routes: `/metrics`.
    pub fn router(&self, inst: Arc<Instance>) -> axum::Router {
        axum::Router::new()
            .route("/metrics", get(scrape))
            .with_state(Arc::new(Scrape {
                inst,
                handle: self.handle.clone(),
            }))
    }
}

struct Scrape {
    inst: Arc<Instance>,
    handle: PrometheusHandle,
}

async fn scrape(State(s): State<Arc<Scrape>>) -> axum::response::Response {
    let inst = s.inst.clone();
    // Reading the CRL row and the outbox is a database read: off the async workers.
    let read = tokio::task::spawn_blocking(move || read_gauges(&inst)).await;
    if let Err(e) = read {
        tracing::warn!(error = %e, "metrics: the gauges read at scrape time failed");
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.handle.render(),
    )
        .into_response()
}

/// What is read at each scrape rather than counted as it happens. A read that fails leaves
/// the gauge at its last value and counts in `nuc_metrics_read_errors_total`.
fn read_gauges(inst: &Instance) {
    let now = nuc_core::time::now_unix();
    match inst.store.latest_full_crl() {
        Ok(Some(crl)) => {
            gauge!("nuc_crl_number").set(crl.crl_number as f64);
            gauge!("nuc_crl_entries").set(crl.entries as f64);
            gauge!("nuc_crl_size_bytes").set(crl.size as f64);
            gauge!("nuc_crl_age_seconds").set((now - crl.this_update).max(0) as f64);
            gauge!("nuc_crl_next_update_timestamp_seconds").set(crl.next_update as f64);
        }
        Ok(None) => {}
        Err(e) => read_failed("crl", &e),
    }
    match inst.store.outbox_stats() {
        Ok(stats) => {
            gauge!("nuc_outbox_pending_messages").set(stats.pending as f64);
            gauge!("nuc_outbox_dead_letters").set(stats.dead as f64);
        }
        Err(e) => read_failed("outbox", &e),
    }
    metrics::counter!("nuc_outbox_failed_deliveries_total")
        .absolute(crate::outbox::failed_attempts());
    for (which, der) in watched_certificates(inst) {
        match not_after(&der) {
            Some(t) => gauge!("nuc_certificate_expiry_timestamp_seconds", "certificate" => which)
                .set(t as f64),
            None => read_failed(which, &"the certificate does not decode"),
        }
    }
}

fn read_failed(what: &'static str, e: &dyn std::fmt::Display) {
    tracing::warn!(what, error = %e, "metrics: a value read at scrape time failed");
    metrics::counter!("nuc_metrics_read_errors_total", "what" => what).increment(1);
}

/// The certificates whose expiry is watched: the CA's, the OCSP signer in force, and the
/// gRPC listener's TLS certificate as its file holds it.
fn watched_certificates(inst: &Instance) -> Vec<(&'static str, Vec<u8>)> {
    let mut certs = vec![
        ("root", inst.ca.root().cert_der.clone()),
        ("issuing", inst.ca.issuing().cert_der.clone()),
        ("ocsp_signer", inst.ca.ocsp().identity().cert_der.clone()),
    ];
    let tls = inst.home.dir.join(&inst.config.grpc.tls_cert);
    match std::fs::read(&tls)
        .ok()
        .and_then(|pem| first_certificate(&pem))
    {
        Some(der) => certs.push(("tls", der)),
        None => read_failed(
            "tls",
            &format!("{} does not hold a PEM certificate", tls.display()),
        ),
    }
    certs
}

/// The first certificate of a PEM file (the leaf of a chain), in DER.
fn first_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    use der::Encode;
    x509_cert::Certificate::load_pem_chain(pem)
        .ok()?
        .first()?
        .to_der()
        .ok()
}

fn not_after(der: &[u8]) -> Option<i64> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    i64::try_from(
        cert.tbs_certificate()
            .validity()
            .not_after
            .to_unix_duration()
            .as_secs(),
    )
    .ok()
}

/// HELP and units of every metric, in one place: the reference of what `/metrics` holds
/// (docs/operations.md lists them too).
fn describe() {
    describe_counter!(
        "nuc_certificates_issued_total",
        "Certificates issued, by profile."
    );
    describe_counter!(
        "nuc_certificates_revoked_total",
        "Certificates revoked, by RFC 5280 reason."
    );
    describe_counter!(
        "nuc_refusals_total",
        "gRPC calls refused or failed, by the service's reason code."
    );
    describe_histogram!(
        "nuc_grpc_request_duration_seconds",
        Unit::Seconds,
        "gRPC call latency from request to answer, by service, method and status code."
    );
    describe_counter!(
        "nuc_ocsp_responses_total",
        "OCSP answers, by certificate status (good, revoked, unknown, several) or by the refusal's response status."
    );
    describe_counter!(
        "nuc_ocsp_cache_lookups_total",
        "Looks in the OCSP response cache by requests without a nonce, by result (hit, miss)."
    );
    describe_histogram!(
        "nuc_hsm_sign_duration_seconds",
        Unit::Seconds,
        "Time of one signature in the HSM (not the wait for a session), by key label."
    );
    describe_counter!(
        "nuc_hsm_sign_errors_total",
        "Signatures the HSM failed, by key label."
    );
    describe_histogram!(
        "nuc_store_commit_duration_seconds",
        Unit::Seconds,
        "Time of one durable commit of a batch of changes, by storage engine."
    );
    describe_counter!(
        "nuc_store_commit_errors_total",
        "Batches of changes whose commit failed, by storage engine."
    );
    describe_histogram!(
        "nuc_store_checkpoint_duration_seconds",
        Unit::Seconds,
        "Time of one checkpoint of SQLite's write-ahead log into the database, in the background."
    );
    describe_gauge!("nuc_crl_number", "CRL number of the current complete CRL.");
    describe_gauge!(
        "nuc_crl_entries",
        "Revoked certificates listed by the current complete CRL."
    );
    describe_gauge!(
        "nuc_crl_size_bytes",
        Unit::Bytes,
        "Size of the current complete CRL in DER."
    );
    describe_gauge!(
        "nuc_crl_age_seconds",
        Unit::Seconds,
        "Seconds since the thisUpdate of the current complete CRL."
    );
    describe_gauge!(
        "nuc_crl_next_update_timestamp_seconds",
        Unit::Seconds,
        "nextUpdate of the current complete CRL, Unix time."
    );
    describe_gauge!(
        "nuc_outbox_pending_messages",
        "Notices waiting in the outbox to be delivered."
    );
    describe_gauge!(
        "nuc_outbox_dead_letters",
        "Notices that exhausted their delivery attempts (nuc outbox dead lists them)."
    );
    describe_counter!(
        "nuc_outbox_failed_deliveries_total",
        "Delivery attempts of notices that failed, since the process started."
    );
    describe_gauge!(
        "nuc_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "notAfter of the service's own certificates (root, issuing, ocsp_signer, tls), Unix time."
    );
    describe_counter!(
        "nuc_metrics_read_errors_total",
        "Values read at scrape time that could not be read, by what."
    );
    describe_gauge!(
        "nuc_build_info",
        "Always 1; the version of the running binary in its label."
    );
}
