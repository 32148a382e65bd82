//! What every gRPC call leaves behind for operations: a span that names the call, the caller's
//! role and the request it is about (every log line of the call carries them), and its
//! latency in `nuc_grpc_request_duration_seconds`, by service, method and status code.
//!
//! The path of a call is chosen by the client. It goes into a metric label only when the call
//! reached one of our methods: a path that no service knows is answered UNIMPLEMENTED and
//! counted as method `unknown`, so a hostile client cannot grow the set of series.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::Instrument;

/// The layer put in front of every service of the gRPC server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observe;

impl<S> tower_layer::Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed { inner }
    }
}

/// A service whose calls are timed and run in their own span.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
}

/// The longest path kept in a log line.
const MAX_LOGGED_PATH: usize = 96;

impl<S, B, R> tower_service::Service<http::Request<B>> for Observed<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let logged: String = path.chars().take(MAX_LOGGED_PATH).collect();
        let span = tracing::info_span!(
            "rpc",
            call = %logged,
            role = tracing::field::Empty,
            request = tracing::field::Empty,
        );
        let started = Instant::now();
        let call = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let result = call.await;
                let code = match &result {
                    Ok(response) => grpc_code(response.headers()),
                    Err(_) => "TRANSPORT",
                };
                let (service, method) = labels(&path, code);
                metrics::histogram!(
                    "nuc_grpc_request_duration_seconds",
                    "service" => service,
                    "method" => method,
                    "code" => code,
                )
                .record(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

/// The status of a unary answer: in the headers when it is a refusal (a trailers-only
/// response), else OK (it travels in the trailers, after the message).
fn grpc_code(headers: &http::HeaderMap) -> &'static str {
    let Some(value) = headers.get("grpc-status") else {
        return "OK";
    };
    let number = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(2);
    code_name(tonic::Code::from_i32(number))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `(service, method)` of `/package.Service/Method`, or `unknown` for a call that reached
/// none of ours (see the module documentation).
fn labels(path: &str, code: &str) -> (String, String) {
    let unknown = || ("unknown".to_owned(), "unknown".to_owned());
    if code == "UNIMPLEMENTED" {
        return unknown();
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(service), Some(method)) if !service.is_empty() && !method.is_empty() => {
            (service.to_owned(), method.to_owned())
        }
        _ => unknown(),
    }
}

/// Names the request the current call is about, in its span (and so in every later log line
/// of the call).
pub fn note_request(number: &str) {
    // The number comes from the caller: a log line gets no more of it than a number needs.
    let number: String = number.chars().take(MAX_LOGGED_REQUEST).collect();
    tracing::Span::current().record("request", tracing::field::display(&number));
}

/// The longest request number kept in a log line (ours are far shorter).
const MAX_LOGGED_REQUEST: usize = 40;

/// Names the caller's role in the current call's span.
pub fn note_role(role: &str) {
    tracing::Span::current().record("role", tracing::field::display(role));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_our_calls_and_of_strangers() {
        assert_eq!(
            labels("/nuc.v1.PortalService/SubmitApplication", "OK"),
            (
                "nuc.v1.PortalService".to_owned(),
                "SubmitApplication".to_owned()
            )
        );
        // Whatever a client invents is one series, not one per path.
        assert_eq!(
            labels("/x.Evil/Method12345", "UNIMPLEMENTED"),
            ("unknown".to_owned(), "unknown".to_owned())
        );
        assert_eq!(labels("/", "INTERNAL").0, "unknown");
    }

    #[test]
    fn status_from_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_code(&h), "OK");
        h.insert("grpc-status", "7".parse().unwrap());
        assert_eq!(grpc_code(&h), "PERMISSION_DENIED");
        h.insert("grpc-status", "junk".parse().unwrap());
        assert_eq!(grpc_code(&h), "UNKNOWN");
    }
}
