//! The console's HTTP server: the routes, the guard in front of every one of them, the page's
//! files (embedded in the binary: no CDN, no build step, works offline), and the security
//! headers on every answer.
//!
//! It must never serve a route without the guard, never send an `Access-Control-Allow-*`
//! header, and never let the page be framed by another page.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Agent;
use super::api::{self, ConsoleError};
use super::counter;
use super::guard;
use super::i18n;
use crate::StationError;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Only our own files, scripts and connections; never inside a frame (clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The console's routes, every one behind the guard.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/i18n.json",
            get(|| async { axum::Json(i18n::labels()).into_response() }),
        )
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/session", get(api::session))
        .route("/api/applicant", post(api::applicant))
        .route("/api/application/{number}", get(api::application))
        .route("/api/application/{number}/decision", post(api::decide))
        .route("/api/applications", post(api::find_applications))
        .route("/api/revocation", post(api::revoke))
        .route(
            "/api/enrollment",
            post(counter::enroll).get(counter::current),
        )
        .route("/api/events", get(api::events))
        .layer(middleware::from_fn_with_state(agent.clone(), guard_layer))
        .with_state(agent)
}

fn header_str(req: &Request, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The guard (Host, Origin, Sec-Fetch-Site) before anything, then the security headers.
async fn guard_layer(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let verdict = guard::judge(
        &agent.own,
        req.method(),
        req.uri().path().starts_with("/api/"),
        header_str(&req, header::HOST),
        header_str(&req, header::ORIGIN),
        req.headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok()),
    );
    let mut resp = match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            // Says who was refused (an origin is not personal data), never what was asked.
            eprintln!(
                "console: refused {} {}: {refusal}",
                req.method(),
                req.uri().path()
            );
            ConsoleError::Forbidden(refusal).into_response()
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Serves the console on `listener` until the process ends; an idle session is ended (and
/// the token logged out) even when no request comes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
) -> Result<(), StationError> {
    let reaper = agent.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            reaper.sessions.expire();
        }
    });
    axum::serve(listener, router(agent))
        .await
        .map_err(|e| StationError::Config(format!("console: {e}")))
}
