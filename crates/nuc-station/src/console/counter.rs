//! F4 at the counter from the page: the operator starts the enrollment, the applicant types the
//! card's PIN into the page, and the agent runs the same steps as `nuc-station enroll`
//! ([`crate::enroll`]), publishing each step with its time on the live channel. A card pulled
//! out during the write is not a failure here: the page says "insert the card again", the agent
//! waits for it and finishes the write itself ([`crate::enroll::write_issued`]).
//!
//! It owns the one enrollment that may run at a time and its view. It must never keep the card
//! PIN beyond the enrollment that uses it, never run two enrollments at once (one reader, one
//! card), and never sign anything but the confirmation of the request it has just registered,
//! for the session that started it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use der::Decode;
use nuc_card::{CardKind, Pcsc, Pin};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Agent;
use super::api::{ApiResult, ConsoleError, check_iin, input, presented};
use crate::StationError;
use crate::enroll::{self, Applicant, CardPlace, Confirmer, ENROLL_STEPS, Enrolled, WRITE_STEPS};
use crate::progress::Progress;

/// How long the agent waits for the card once the operator has started: the applicant may
/// still be handing it over.
const CARD_WAIT: Duration = Duration::from_secs(120);
/// How long it waits for a card pulled out during the write to come back.
const REINSERT_WAIT: Duration = Duration::from_secs(300);
/// How many times a card pulled out during the write is waited for before the enrollment
/// gives up (the certificates stay issued; `nuc-station write` finishes them).
const MAX_REINSERTS: u32 = 3;
/// Steps that are the card's own work (what the operator's click does not control).
const CARD_STEPS: [&str; 4] = ["card", "pin", "keys", "write"];

/// One step as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    pub key: &'static str,
    /// `enroll`, or `finish` for the write finished after the card came back.
    pub phase: &'static str,
    pub number: usize,
    pub total: usize,
    pub done: bool,
    pub ms: u64,
}

/// A certificate now on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateView {
    pub profile: String,
    pub serial_hex: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// What an enrollment produced, for the result screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrolledView {
    pub request_number: String,
    pub card_kind: &'static str,
    pub card_serial: String,
    pub certificates: Vec<CertificateView>,
    /// Milliseconds in all, and of them in the card's own steps.
    pub total_ms: u64,
    pub card_ms: u64,
    /// APDUs exchanged with the card, in all and before the write began (where the card's
    /// time goes).
    pub apdus: u64,
    pub apdus_before_write: u64,
}

/// The enrollment running or last run, as the live channel sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollmentView {
    pub id: u64,
    /// `running`, `reinsert` (the card was pulled out during the write), `done` or `failed`.
    pub state: &'static str,
    pub phase: &'static str,
    pub steps: Vec<StepView>,
    /// Known once the NUC has registered the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<EnrolledView>,
    /// The refusal, as an API error body says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// The enrollment slot of the agent: one at a time, its view published to every page.
pub struct Counter {
    running: Arc<tokio::sync::Mutex<()>>,
    next_id: std::sync::atomic::AtomicU64,
    pub(crate) view: watch::Sender<Option<EnrollmentView>>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            running: Arc::new(tokio::sync::Mutex::new(())),
            next_id: std::sync::atomic::AtomicU64::new(1),
            view: watch::Sender::new(None),
        }
    }
}

#[derive(Deserialize)]
pub struct EnrollmentRequest {
    iin: String,
    #[serde(default)]
    bin: String,
    email: String,
    /// The card's PIN, typed by the applicant into the page.
    pin: String,
}

fn check_email(v: &str) -> Result<(), ConsoleError> {
    let ok = v.len() <= 254
        && v.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(input(
            "email",
            "must be an e-mail address such as name@example.kz",
        ))
    }
}

/// The confirmation signed through the console's session: only while the session that started
/// the enrollment is alive.
struct SessionConfirmer {
    agent: Arc<Agent>,
    token: String,
}

impl Confirmer for SessionConfirmer {
    fn confirmation(&self, request_number: &str) -> Result<(Vec<u8>, String), StationError> {
        self.agent
            .sessions
            .with(Some(&self.token), |op, info| {
                let op =
                    op.ok_or_else(|| StationError::Token("no token in this session".into()))?;
                Ok((
                    op.decision(request_number, true, "")?,
                    info.serial_hex.clone(),
                ))
            })
            .map_err(|e| StationError::Token(e.to_string()))?
    }
}

fn kind_word(kind: CardKind) -> &'static str {
    match kind {
        CardKind::IdCard => "id-card",
        CardKind::Sim => "sim-card",
    }
}

/// Subject (in certificate order) and validity of a certificate read back from the card.
fn certificate_view(profile: &str, serial_hex: &str, der_bytes: &[u8]) -> CertificateView {
    let parsed = x509_cert::Certificate::from_der(der_bytes).ok();
    let tbs = parsed.as_ref().map(|c| c.tbs_certificate());
    let unix = |t: Option<&x509_cert::time::Time>| {
        t.map(|t| i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    };
    CertificateView {
        profile: profile.to_owned(),
        serial_hex: serial_hex.to_owned(),
        subject: tbs
            .map(|t| {
                t.subject()
                    .iter_rdn()
                    .map(|rdn| rdn.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        not_before: unix(tbs.map(|t| &t.validity().not_before)),
        not_after: unix(tbs.map(|t| &t.validity().not_after)),
    }
}

fn enrolled_view(e: &Enrolled, steps: &[StepView], started: Instant) -> EnrolledView {
    EnrolledView {
        request_number: e.request_number.clone(),
        card_kind: kind_word(e.card_kind),
        card_serial: e.card_serial.clone(),
        certificates: e
            .certificates
            .iter()
            .map(|(profile, serial, der)| certificate_view(profile, serial, der))
            .collect(),
        total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        card_ms: steps
            .iter()
            .filter(|s| s.done && CARD_STEPS.contains(&s.key))
            .map(|s| s.ms)
            .sum(),
        apdus: e.apdus,
        apdus_before_write: e.apdus_before_write,
    }
}

/// Waits (briefly) until pcscd has seen every reader empty: a card put back before pcscd
/// noticed it gone would not be powered again. A card that was only reset never leaves; the
/// write then goes on with it after the short wait.
fn wait_pulled_out(pcsc: &Pcsc) {
    for reader in pcsc.readers().unwrap_or_default() {
        let _ = pcsc.wait_for_removal(&reader, Duration::from_secs(3));
    }
}

struct Job {
    nuc: nuc_api::v1::operator_service_client::OperatorServiceClient<tonic::transport::Channel>,
    confirmer: SessionConfirmer,
    applicant: Applicant,
    pin: Pin,
    view: watch::Sender<Option<EnrollmentView>>,
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut EnrollmentView)) {
        self.view.send_modify(|v| {
            if let Some(v) = v.as_mut() {
                f(v);
            }
        });
    }

    fn progress(&self, total: usize) -> Progress {
        let view = self.view.clone();
        Progress::observed(total, move |news| {
            view.send_modify(|v| {
                let Some(v) = v.as_mut() else { return };
                let phase = v.phase;
                let step = StepView {
                    key: news.key,
                    phase,
                    number: news.number,
                    total: news.total,
                    done: news.done,
                    ms: news.ms,
                };
                // The card is back and read: the finish runs.
                if v.state == "reinsert" && news.key == "card" && news.done {
                    v.state = "running";
                }
                match v
                    .steps
                    .iter_mut()
                    .find(|s| s.key == news.key && s.phase == phase)
                {
                    Some(s) => *s = step,
                    None => v.steps.push(step),
                }
            });
        })
    }

    /// The enrollment, and its write finished if the card was pulled out in the middle.
    async fn run(mut self) -> (Self, Result<Enrolled, StationError>) {
        let pcsc = match Pcsc::establish() {
            Ok(p) => p,
            Err(e) => return (self, Err(StationError::card("card reader")(e))),
        };
        let place = CardPlace {
            reader: None,
            wait: CARD_WAIT,
        };
        let mut key = [0u8; 16];
        if let Err(e) = openssl::rand::rand_bytes(&mut key) {
            return (self, Err(StationError::Config(e.to_string())));
        }
        let mut progress = self.progress(ENROLL_STEPS);
        let first = enroll::enroll(
            &mut self.nuc,
            &self.confirmer,
            &pcsc,
            &place,
            &self.applicant,
            &self.pin,
            &hex::encode(key),
            &mut progress,
        )
        .await;
        let request = match first {
            Err(StationError::WriteInterrupted { request, .. }) => request,
            other => return (self, other),
        };
        let place = CardPlace {
            reader: None,
            wait: REINSERT_WAIT,
        };
        // The card may leave again during the finish: it is waited for again, a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.update(|v| {
                v.state = "reinsert";
                v.phase = "finish";
                v.request_number = Some(request.clone());
            });
            eprintln!("console: the card left during the write of {request}; waiting for it");
            wait_pulled_out(&pcsc);
            let mut progress = self.progress(WRITE_STEPS);
            // Back to running once the card is read again (see the progress observer).
            let r = enroll::write_issued(
                &mut self.nuc,
                &pcsc,
                &place,
                &request,
                &self.pin,
                &mut progress,
            )
            .await;
            match r {
                Err(StationError::Card { source, .. })
                    if source.is_removal() && attempt < MAX_REINSERTS => {}
                // Issued, on record, not on the card: said as such, never as "nothing issued".
                Err(StationError::Card { step, source }) if source.is_removal() => {
                    let e = StationError::WriteInterrupted {
                        step,
                        request,
                        source,
                    };
                    return (self, Err(e));
                }
                other => return (self, other),
            }
        }
    }
}

/// Starts F4 for the applicant with the card in the reader; answers when it is over (the steps
/// go out on the live channel meanwhile). `409 ENROLLMENT_RUNNING` while another runs.
pub async fn enroll(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Json(body): Json<EnrollmentRequest>,
) -> ApiResult {
    let token = presented(&headers)
        .ok_or(super::session::SessionError::Missing)?
        .to_owned();
    agent.sessions.with(Some(&token), |_, _| ())?;
    check_iin("iin", &body.iin)?;
    if !body.bin.is_empty() {
        check_iin("bin", &body.bin)?;
    }
    check_email(body.email.trim())?;
    let pin = Pin::new(&body.pin).map_err(|_| input("pin", "must be 4 to 12 digits"))?;
    drop(body.pin);
    let Ok(running) = agent.counter.running.clone().try_lock_owned() else {
        return Err(ConsoleError::Busy);
    };
    // The enrollment runs to its end in a task of its own, holding the counter, even if the
    // page goes away meanwhile (the card is being written to): the view says how it ended.
    let task = tokio::spawn(run_enrollment(
        agent.clone(),
        token,
        Applicant {
            iin: body.iin,
            bin: Some(body.bin).filter(|b| !b.is_empty()),
            email: body.email.trim().to_owned(),
        },
        pin,
        running,
    ));
    match task.await {
        Ok(r) => r,
        Err(e) => Err(fail(&agent, StationError::Config(e.to_string()).into())),
    }
}

async fn run_enrollment(
    agent: Arc<Agent>,
    token: String,
    applicant: Applicant,
    pin: Pin,
    running: tokio::sync::OwnedMutexGuard<()>,
) -> ApiResult {
    let _running = running;
    let id = agent
        .counter
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    agent.counter.view.send_replace(Some(EnrollmentView {
        id,
        state: "running",
        phase: "enroll",
        steps: Vec::new(),
        request_number: None,
        result: None,
        error: None,
    }));
    let started = Instant::now();
    let nuc = match agent.nuc().await {
        Ok(c) => c,
        Err(e) => return Err(fail(&agent, e.into())),
    };
    let job = Job {
        nuc,
        confirmer: SessionConfirmer {
            agent: agent.clone(),
            token,
        },
        applicant,
        pin,
        view: agent.counter.view.clone(),
    };
    // The card is spoken to synchronously (pcscd): on a blocking thread of its own.
    let rt = tokio::runtime::Handle::current();
    let joined = tokio::task::spawn_blocking(move || rt.block_on(job.run())).await;
    let (job, outcome) = match joined {
        Ok(r) => r,
        Err(e) => return Err(fail(&agent, StationError::Config(e.to_string()).into())),
    };
    // The PIN goes with the job, now.
    drop(job);
    match outcome {
        Ok(enrolled) => {
            agent.counter.view.send_modify(|v| {
                if let Some(v) = v.as_mut() {
                    let r = enrolled_view(&enrolled, &v.steps, started);
                    v.state = "done";
                    v.request_number = Some(r.request_number.clone());
                    v.result = Some(r);
                }
            });
            eprintln!(
                "console: enrollment {id} done: request {} in {} ms",
                enrolled.request_number,
                started.elapsed().as_millis()
            );
            Ok(Json(
                json!({ "enrollment": agent.counter.view.borrow().clone() }),
            ))
        }
        Err(e) => Err(fail(&agent, e.into())),
    }
}

/// Records the refusal in the view (the live channel shows it) and gives it back.
fn fail(agent: &Agent, e: ConsoleError) -> ConsoleError {
    let body = e.body();
    eprintln!("console: enrollment failed: {}", body["error"]["code"]);
    agent.counter.view.send_modify(|v| {
        if let Some(v) = v.as_mut() {
            v.state = "failed";
            v.error = Some(body["error"].clone());
        }
    });
    e
}

/// The enrollment running or last run (for a page opened meanwhile).
pub async fn current(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> ApiResult {
    agent.sessions.with(presented(&headers), |_, _| ())?;
    Ok(Json(
        json!({ "enrollment": agent.counter.view.borrow().clone() }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        assert!(check_email("a.b@example.kz").is_ok());
        for bad in ["", "a@b", "@example.kz", "a b@example.kz", "a@.kz", "a@kz."] {
            let e = check_email(bad).unwrap_err();
            assert!(e.to_string().starts_with("email: "), "{bad}: {e}");
        }
    }

    #[test]
    fn a_certificate_that_does_not_parse_still_has_its_serial() {
        let v = certificate_view("individual-auth", "0a", b"not a certificate");
        assert_eq!(v.serial_hex, "0a");
        assert_eq!(v.subject, "");
    }
}
