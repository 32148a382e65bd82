//! `nuc-registry`: the fixture registry service (ГБД ФЛ/ЮЛ stand-in) for dev and tests.
//!
//! Serves the built-in fixture, or `--fixture FILE`, on a loopback address: over TLS with
//! `--tls-cert FILE --tls-key FILE` (PEM; `--tls-client-ca FILE` to demand client
//! certificates issued under that CA), else plain HTTP. Prints
//! `listening on ADDR` (the bound address, so `--listen 127.0.0.1:0` works) to stdout once it
//! accepts connections; logs to stderr; stops cleanly on SIGTERM or Ctrl-C. Exit codes: 0 after
//! a clean stop, 2 when the arguments or the fixture are refused, 1 when serving failed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use nuc_registry::{Fixture, TlsListener};

#[derive(Parser, Debug)]
#[command(
    name = "nuc-registry",
    version,
    about = "Fixture registry service (ГБД ФЛ/ЮЛ stand-in)"
)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8087 (port 0 picks a free one).
    #[arg(long, env = "NUC_REGISTRY_LISTEN")]
    listen: SocketAddr,
    /// Fixture file to serve instead of the built-in one (same shape as fixtures/registry.json).
    #[arg(long, env = "NUC_REGISTRY_FIXTURE")]
    fixture: Option<PathBuf>,
    /// Allow listening on an address other than loopback. The registry holds personal data.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Serve over TLS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Demand a client certificate issued under a CA of this PEM file (needs --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(|| nuc_core::MaskIins(std::io::stderr()))
        .with_target(false)
        .init();

    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        eprintln!(
            "error: --listen {}: not a loopback address; the registry serves personal data \
             (pass --allow-non-loopback to insist)",
            args.listen
        );
        return ExitCode::from(2);
    }
    let fixture = match &args.fixture {
        None => Fixture::builtin(),
        Some(path) => match Fixture::load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            match nuc_registry::server_config(cert, key, args.tls_client_ca.as_deref()) {
                Ok(config) => Some(config),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args.listen, fixture, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(
    listen: SocketAddr,
    fixture: Fixture,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let (people, entities) = (
        fixture.individuals().count(),
        fixture.legal_entities().count(),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving beyond loopback");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, individuals = people, legal_entities = entities, "registry serving");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    let router = nuc_registry::router(fixture);
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown())
                .await?
        }
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, router)
                .with_graceful_shutdown(shutdown())
                .await?
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); Ctrl-C only");
            ctrl_c.await.unwrap_or(());
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupt received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}
