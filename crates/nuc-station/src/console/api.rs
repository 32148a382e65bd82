//! The agent's JSON API, called by the console's page: login with the token PIN, applicant
//! lookup in the registry, an F1 application (by number, or the applicant's waiting ones by
//! IIN) and the operator's decision on it, F5 revocation at the counter, and the live channel
//! (server-sent events).
//!
//! It owns the translation between the page and the NUC: JSON in, gRPC out over the
//! workstation's mTLS channel, CMS signatures made in the operator's token. It must never send
//! the page a key or the PIN, never sign anything but the decision the operator clicked, and
//! never put an IIN or a PIN into a log line.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::{
    Applicant, Application, DecideApplicationRequest, FindApplicationsRequest,
    GetApplicationRequest, LookupApplicantRequest, RequestState, RevocationReason,
    RevokeAtCounterRequest,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::Agent;
use super::guard::Refusal;
use super::i18n;
use super::session::{OperatorInfo, SESSION_HEADER, SessionError};
use crate::StationError;
use crate::operator::Operator;
use nuc_card::CardError;

/// Why an API call did not do what was asked. Each becomes an HTTP status and a JSON body
/// `{"error": {"code", "message", "step"?, "explain": {"kk", "ru"}}}`.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    Forbidden(#[from] Refusal),
    #[error("{0}")]
    Session(#[from] SessionError),
    /// A field of the page's request is wrong.
    #[error("{field}: {reason}")]
    Input { field: &'static str, reason: String },
    /// The token refused the PIN, or failed.
    #[error("{code}: {message}")]
    Token { code: &'static str, message: String },
    #[error("{0}")]
    Station(#[from] StationError),
    /// An enrollment is already running at this counter (one reader, one card).
    #[error("ENROLLMENT_RUNNING: an enrollment is already running at this workstation")]
    Busy,
}

/// The reason code of a card's refusal or failure.
fn card_code(e: &CardError) -> &'static str {
    match e {
        CardError::WrongPin { .. } => "CARD_PIN_WRONG",
        CardError::PinBlocked { .. } => "CARD_PIN_BLOCKED",
        CardError::BadPinFormat => "CARD_PIN_FORMAT",
        CardError::Timeout(_) => "NO_CARD",
        CardError::NoReader { .. } => "NO_READER",
        CardError::NoService(_) => "PCSC_UNAVAILABLE",
        CardError::Removed { .. } => "CARD_REMOVED",
        CardError::UnknownCard { .. } => "CARD_UNKNOWN",
        _ => "CARD_ERROR",
    }
}

impl ConsoleError {
    fn code(&self) -> String {
        match self {
            ConsoleError::Forbidden(r) => r.code().into(),
            ConsoleError::Session(s) => s.code().into(),
            ConsoleError::Input { .. } => "INVALID_INPUT".into(),
            ConsoleError::Token { code, .. } => (*code).into(),
            ConsoleError::Station(StationError::Refused { reason, .. }) => reason.clone(),
            ConsoleError::Station(StationError::Unreachable { .. }) => "NUC_UNREACHABLE".into(),
            ConsoleError::Station(StationError::Token(_)) => "TOKEN".into(),
            ConsoleError::Station(StationError::Card { source, .. }) => card_code(source).into(),
            ConsoleError::Station(StationError::WriteInterrupted { .. }) => {
                "CARD_REMOVED_ISSUED".into()
            }
            ConsoleError::Station(_) => "INTERNAL".into(),
            ConsoleError::Busy => "ENROLLMENT_RUNNING".into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Session(_) => StatusCode::UNAUTHORIZED,
            ConsoleError::Input { .. } => StatusCode::BAD_REQUEST,
            ConsoleError::Token { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ConsoleError::Station(StationError::Refused { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            ConsoleError::Station(StationError::Unreachable { .. }) => StatusCode::BAD_GATEWAY,
            ConsoleError::Station(StationError::WriteInterrupted { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ConsoleError::Station(StationError::Card { source, .. }) => match card_code(source) {
                "CARD_ERROR" => StatusCode::INTERNAL_SERVER_ERROR,
                "PCSC_UNAVAILABLE" => StatusCode::BAD_GATEWAY,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ConsoleError::Station(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Busy => StatusCode::CONFLICT,
        }
    }
}

impl ConsoleError {
    /// `{"error": {"code", "step", "message", "explain", "tries_left"?}}`, as the page gets it.
    pub(crate) fn body(&self) -> Value {
        let code = self.code();
        let step = match self {
            ConsoleError::Station(
                StationError::Refused { step, .. }
                | StationError::Unreachable { step, .. }
                | StationError::Card { step, .. }
                | StationError::WriteInterrupted { step, .. },
            ) => Some(*step),
            _ => None,
        };
        let message = match self {
            ConsoleError::Station(StationError::Refused { message, .. }) => message.clone(),
            other => other.to_string(),
        };
        let mut error = json!({
            "code": code,
            "step": step,
            "message": message,
            "explain": i18n::explain(&code),
        });
        if let ConsoleError::Station(StationError::Card {
            source: CardError::WrongPin { tries_left, .. },
            ..
        }) = self
        {
            error["tries_left"] = json!(tries_left);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

pub(crate) type ApiResult = Result<Json<Value>, ConsoleError>;

pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

pub(crate) fn input(field: &'static str, reason: impl Into<String>) -> ConsoleError {
    ConsoleError::Input {
        field,
        reason: reason.into(),
    }
}

pub(crate) fn check_iin(field: &'static str, v: &str) -> Result<(), ConsoleError> {
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(input(field, "must be 12 digits"))
    }
}

fn check_number(v: &str) -> Result<(), ConsoleError> {
    let ok =
        !v.is_empty() && v.len() <= 40 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(input(
            "request_number",
            "must be a request number such as NUC-XXXX-XXXX-X",
        ))
    }
}

/// The published name of a request state (`ISSUED`), as the page's labels use it.
fn state_name(state: i32) -> &'static str {
    match RequestState::try_from(state) {
        Ok(RequestState::Registered) => "REGISTERED",
        Ok(RequestState::Confirmed) => "CONFIRMED",
        Ok(RequestState::Verified) => "VERIFIED",
        Ok(RequestState::Issued) => "ISSUED",
        Ok(RequestState::Refused) => "REFUSED",
        Ok(RequestState::Expired) => "EXPIRED",
        Ok(RequestState::Revoked) => "REVOKED",
        _ => "UNSPECIFIED",
    }
}

impl Agent {
    /// The gRPC client, connected on first use and kept (a channel reconnects by itself).
    pub(crate) async fn nuc(&self) -> Result<OperatorServiceClient<Channel>, StationError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = crate::nuc::connect(&self.nuc).await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

#[derive(Deserialize)]
pub struct Login {
    pin: String,
}

/// Logs into the operator's token with the PIN, once; the PIN is dropped right after.
pub async fn login(State(agent): State<Arc<Agent>>, Json(body): Json<Login>) -> ApiResult {
    if body.pin.is_empty() || body.pin.len() > 64 {
        return Err(input("pin", "must be 1 to 64 characters"));
    }
    let token = agent.token.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let Login { pin } = body;
        let r = Operator::open(
            &token.module,
            &token.label,
            &pin,
            &token.key_label,
            &token.operator_cert,
        );
        drop(pin);
        r
    })
    .await
    .map_err(|e| StationError::Token(e.to_string()))?;
    let operator = opened.map_err(|e| match e {
        // The PKCS#11 return value (as cryptoki words it) says what the token answered; the
        // PIN is in neither.
        StationError::Token(m) if m.contains("PIN is incorrect") => ConsoleError::Token {
            code: "PIN_INCORRECT",
            message: "the token refused the PIN".into(),
        },
        StationError::Token(m) if m.contains("PIN is “locked”") => ConsoleError::Token {
            code: "PIN_LOCKED",
            message: "the token's PIN is locked".into(),
        },
        other => ConsoleError::Station(other),
    })?;
    let info = OperatorInfo {
        serial_hex: operator.serial_hex.clone(),
        name: agent.operator_name.clone(),
    };
    let session = agent
        .sessions
        .open(Some(operator), info.clone())
        .map_err(|e| StationError::Token(e.to_string()))?;
    Ok(Json(json!({
        "session": session,
        "operator": info,
        "idle_secs": agent.sessions.idle().as_secs(),
    })))
}

/// Ends the session; the token is logged out.
pub async fn logout(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> ApiResult {
    agent.sessions.with(presented(&headers), |_, _| ())?;
    agent.sessions.close();
    Ok(Json(json!({"logged_in": false})))
}

/// Who is logged in.
pub async fn session(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> ApiResult {
    let info = agent.sessions.with(presented(&headers), |_, i| i.clone())?;
    Ok(Json(json!({
        "logged_in": true,
        "operator": info,
        "idle_secs": agent.sessions.idle().as_secs(),
    })))
}

#[derive(Deserialize)]
pub struct Lookup {
    iin: String,
    #[serde(default)]
    bin: String,
}

fn applicant_json(a: &Applicant) -> Value {
    json!({
        "iin": a.iin, "bin": a.bin, "surname": a.surname, "name": a.name,
        "patronymic": a.patronymic, "organization": a.organization, "role": a.role,
    })
}

/// The applicant as the registry knows them (LookupApplicant), for comparison with the ID.
pub async fn applicant(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Json(body): Json<Lookup>,
) -> ApiResult {
    agent.sessions.with(presented(&headers), |_, _| ())?;
    check_iin("iin", &body.iin)?;
    if !body.bin.is_empty() {
        check_iin("bin", &body.bin)?;
    }
    let found = agent
        .nuc()
        .await?
        .lookup_applicant(LookupApplicantRequest {
            iin: body.iin,
            bin: body.bin,
        })
        .await
        .map_err(|s| StationError::from_status("registry check", s))?
        .into_inner();
    Ok(Json(json!({"applicant": applicant_json(&found)})))
}

fn application_json(a: &Application) -> Value {
    json!({
        "request_number": a.request_number, "state": state_name(a.state),
        "iin": a.iin, "bin": a.bin, "surname": a.surname, "name": a.name,
        "patronymic": a.patronymic, "organization": a.organization, "role": a.role,
        "email": a.email, "registered_at": a.registered_at, "expires_at": a.expires_at,
    })
}

/// An application as registered (GetApplication).
pub async fn application(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> ApiResult {
    agent.sessions.with(presented(&headers), |_, _| ())?;
    check_number(&number)?;
    let app = agent
        .nuc()
        .await?
        .get_application(GetApplicationRequest {
            request_number: number,
        })
        .await
        .map_err(|s| StationError::from_status("application", s))?
        .into_inner();
    Ok(Json(json!({"application": application_json(&app)})))
}

#[derive(Deserialize)]
pub struct Decision {
    /// `confirm` or `refuse`.
    decision: String,
    #[serde(default)]
    reason: String,
}

/// The operator's decision on an application, signed in the operator's token
/// (DecideApplication): confirm (the NUC issues) or refuse with a reason.
pub async fn decide(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Path(number): Path<String>,
    Json(body): Json<Decision>,
) -> ApiResult {
    check_number(&number)?;
    let confirm = match body.decision.as_str() {
        "confirm" => true,
        "refuse" => false,
        _ => return Err(input("decision", "must be \"confirm\" or \"refuse\"")),
    };
    let reason = body.reason.trim().to_owned();
    if !confirm && reason.is_empty() {
        return Err(input("reason", "a refusal needs its reason"));
    }
    if reason.chars().count() > 500 {
        return Err(input("reason", "at most 500 characters"));
    }
    // Signed under the session's lock: the signature exists only for a live session, and
    // only for this number and this decision.
    let (signed, serial) = agent.sessions.with(presented(&headers), |op, info| {
        let op = op.ok_or_else(|| StationError::Token("no token in this session".into()))?;
        let reason = if confirm { "" } else { reason.as_str() };
        Ok::<_, StationError>((
            op.decision(&number, confirm, reason)?,
            info.serial_hex.clone(),
        ))
    })??;
    let decided = agent
        .nuc()
        .await?
        .decide_application(DecideApplicationRequest {
            request_number: number,
            operator_serial_hex: serial,
            signed_decision: signed,
        })
        .await
        .map_err(|s| {
            StationError::from_status(if confirm { "confirmation" } else { "refusal" }, s)
        })?
        .into_inner();
    Ok(Json(json!({
        "request_number": decided.request_number,
        "state": state_name(decided.state),
        "certificates": decided.certificates.iter().map(|c| json!({
            "profile": c.profile, "serial_hex": c.serial_hex,
        })).collect::<Vec<_>>(),
    })))
}

/// The applicant's applications still waiting for the CON (FindApplications), newest first.
pub async fn find_applications(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Json(body): Json<Lookup>,
) -> ApiResult {
    agent.sessions.with(presented(&headers), |_, _| ())?;
    check_iin("iin", &body.iin)?;
    let found = agent
        .nuc()
        .await?
        .find_applications(FindApplicationsRequest { iin: body.iin })
        .await
        .map_err(|s| StationError::from_status("applications", s))?
        .into_inner();
    Ok(Json(json!({
        "applications": found.applications.iter().map(application_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct Revocation {
    serial_hex: String,
    /// The holder's IIN, as on the ID document: the NUC checks the certificate is theirs.
    iin: String,
    /// One of [`REVOCATION_REASONS`] by name.
    reason: String,
}

/// The reasons an operator may give at the counter (those the NUC accepts, RFC 5280 codes).
pub const REVOCATION_REASONS: [(&str, RevocationReason); 5] = [
    ("unspecified", RevocationReason::Unspecified),
    ("key_compromise", RevocationReason::KeyCompromise),
    ("affiliation_changed", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    (
        "cessation_of_operation",
        RevocationReason::CessationOfOperation,
    ),
];

fn check_serial(v: &str) -> Result<String, ConsoleError> {
    let s = v.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(input(
            "serial_hex",
            "must be a certificate serial in hex (1 to 40 digits)",
        ));
    }
    Ok(s)
}

fn revocation_reason(name: &str) -> Result<RevocationReason, ConsoleError> {
    REVOCATION_REASONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            input(
                "reason",
                "must be unspecified, key_compromise, affiliation_changed, superseded or cessation_of_operation",
            )
        })
}

/// F5 at the counter: the revocation order, signed in the operator's token, sent with
/// RevokeAtCounter. The NUC checks the certificate is the holder's and refuses with a code.
pub async fn revoke(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Json(body): Json<Revocation>,
) -> ApiResult {
    let serial = check_serial(&body.serial_hex)?;
    check_iin("iin", &body.iin)?;
    let reason = revocation_reason(&body.reason)?;
    // Signed under the session's lock, as a decision is: only for a live session, and only
    // for this serial, holder and reason.
    let (signed, operator) = agent.sessions.with(presented(&headers), |op, info| {
        let op = op.ok_or_else(|| StationError::Token("no token in this session".into()))?;
        Ok::<_, StationError>((
            op.revocation_order(&serial, reason as i32, &body.iin)?,
            info.serial_hex.clone(),
        ))
    })??;
    let done = agent
        .nuc()
        .await?
        .revoke_at_counter(RevokeAtCounterRequest {
            operator_serial_hex: operator,
            signed_order: signed,
        })
        .await
        .map_err(|s| StationError::from_status("revocation", s))?
        .into_inner();
    Ok(Json(json!({
        "serial_hex": done.serial_hex,
        "revoked_at": done.revoked_at,
        "reason": body.reason,
    })))
}

/// The live channel: a heartbeat and the session's state every few seconds, the reader's state
/// whenever a card goes in or out, and the enrollment's steps as they happen. It does not count
/// as activity, and ends when the session does.
pub async fn events(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let token = presented(&headers).ok_or(SessionError::Missing)?.to_owned();
    agent.sessions.state(&token)?;
    let every = agent.heartbeat;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    let mut readers = agent.readers.clone();
    let mut enrollment = agent.counter.view.subscribe();
    tokio::spawn(async move {
        let reader_event = |r: &super::reader::ReaderView| {
            Event::default().event("reader").data(json!(r).to_string())
        };
        let enrollment_event = |e: &Option<super::counter::EnrollmentView>| {
            Event::default()
                .event("enrollment")
                .data(json!({ "enrollment": e }).to_string())
        };
        // What is true now, then what changes.
        let first = [
            reader_event(&readers.borrow_and_update()),
            enrollment_event(&enrollment.borrow_and_update()),
        ];
        for e in first {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(every);
        loop {
            let (events, ended) = tokio::select! {
                _ = tick.tick() => {
                    let state = agent.sessions.state(&token);
                    let ended = state.is_err();
                    let body = match state {
                        Ok(s) => json!(s),
                        Err(e) => json!({"logged_in": false, "code": e.code()}),
                    };
                    let at = nuc_core::time::now_unix();
                    (vec![
                        Event::default().event("heartbeat").data(json!({ "at": at }).to_string()),
                        Event::default().event("session").data(body.to_string()),
                    ], ended)
                }
                changed = readers.changed() => match changed {
                    Ok(()) => (vec![reader_event(&readers.borrow_and_update())], false),
                    Err(_) => (Vec::new(), true),
                },
                changed = enrollment.changed() => match changed {
                    Ok(()) => (vec![enrollment_event(&enrollment.borrow_and_update())], false),
                    Err(_) => (Vec::new(), true),
                },
            };
            for e in events {
                // The page went away: stop.
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            // The session ended (after saying so): stop.
            if ended {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_by_field() {
        assert!(check_iin("iin", "860908363012").is_ok());
        let e = check_iin("iin", "86090836301").unwrap_err();
        assert_eq!(e.to_string(), "iin: must be 12 digits");
        assert!(check_number("NUC-ABCD-EFGH-J").is_ok());
        assert!(check_number("../x").is_err());
        assert_eq!(state_name(RequestState::Issued as i32), "ISSUED");
        assert_eq!(check_serial(" 0A1b ").unwrap(), "0a1b");
        assert_eq!(
            check_serial("0x12").unwrap_err().to_string(),
            "serial_hex: must be a certificate serial in hex (1 to 40 digits)"
        );
        assert_eq!(
            revocation_reason("key_compromise").unwrap(),
            RevocationReason::KeyCompromise
        );
        // cACompromise (2) is not the counter's to give, nor is anything unnamed.
        assert!(revocation_reason("ca_compromise").is_err());
        assert!(revocation_reason("").is_err());
    }
}
