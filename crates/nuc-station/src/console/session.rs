//! The operator's session with the console: the logged-in operator token and the per-session
//! token the page sends in the `X-Nuc-Session` header on every API call.
//!
//! It owns the token's logged-in state and the idle expiry. It must never keep the operator's
//! PIN (it is used once to log into the token and dropped), never hand the page anything but
//! the session token and the operator's public identity, and never accept a session token by
//! cookie or query string: a header is something another page in the same browser cannot make
//! the browser attach.
//!
//! One operator at a time: a workstation has one operator at its counter, so a new login
//! replaces the session before it (and the old page's token stops working).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::operator::Operator;

/// The header carrying the session token.
pub const SESSION_HEADER: &str = "x-nuc-session";

/// Why an API call has no session (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("NO_SESSION: log in with the token PIN first (no X-Nuc-Session header)")]
    Missing,
    #[error("SESSION_INVALID: this session token is not the console's current session")]
    Invalid,
    #[error("SESSION_EXPIRED: the session was idle too long; log in again with the token PIN")]
    Expired,
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Missing => "NO_SESSION",
            SessionError::Invalid => "SESSION_INVALID",
            SessionError::Expired => "SESSION_EXPIRED",
        }
    }
}

/// The operator's public identity, shown on the page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OperatorInfo {
    pub serial_hex: String,
    pub name: String,
}

struct Session {
    token: String,
    /// `None` only for sessions made by unit tests, which have no token to log into.
    operator: Option<Operator>,
    info: OperatorInfo,
    last_used: Instant,
}

/// The console's one session, if any.
pub struct Sessions {
    idle: Duration,
    current: Mutex<Option<Session>>,
}

/// What the live channel reports about the session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionState {
    pub logged_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorInfo>,
    pub idle_left_secs: u64,
}

fn new_token() -> Result<String, openssl::error::ErrorStack> {
    let mut b = [0u8; 32];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(hex::encode(b))
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            current: Mutex::new(None),
        }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        // A panic while holding the lock cannot leave a half-made session: every write is
        // one assignment. Keep going with what is there.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the session of `operator` (replacing any before it); gives its token.
    pub fn open(
        &self,
        operator: Option<Operator>,
        info: OperatorInfo,
    ) -> Result<String, openssl::error::ErrorStack> {
        let token = new_token()?;
        *self.lock() = Some(Session {
            token: token.clone(),
            operator,
            info,
            last_used: Instant::now(),
        });
        Ok(token)
    }

    /// Ends the session (the token's login ends with it).
    pub fn close(&self) {
        *self.lock() = None;
    }

    /// Ends the session if it has been idle too long; true when it did.
    pub fn expire(&self) -> bool {
        let mut cur = self.lock();
        let stale = cur
            .as_ref()
            .is_some_and(|s| s.last_used.elapsed() >= self.idle);
        if stale {
            *cur = None;
        }
        stale
    }

    /// Checks `presented` against the session and, when it matches, runs `f` with the
    /// operator (counts as activity). `f` runs under the lock: it must not block for long
    /// (signing one decision in the token is fine, a network call is not).
    pub fn with<T>(
        &self,
        presented: Option<&str>,
        f: impl FnOnce(Option<&Operator>, &OperatorInfo) -> T,
    ) -> Result<T, SessionError> {
        let presented = presented.ok_or(SessionError::Missing)?;
        let mut cur = self.lock();
        let s = cur.as_mut().ok_or(SessionError::Invalid)?;
        // Constant time: the token must not leak through how fast a wrong one is refused.
        if presented.len() != s.token.len()
            || !openssl::memcmp::eq(presented.as_bytes(), s.token.as_bytes())
        {
            return Err(SessionError::Invalid);
        }
        if s.last_used.elapsed() >= self.idle {
            *cur = None;
            return Err(SessionError::Expired);
        }
        s.last_used = Instant::now();
        Ok(f(s.operator.as_ref(), &s.info))
    }

    /// The session's state as the live channel reports it, for the holder of `presented`,
    /// without counting as activity (an open page alone must not keep a session alive).
    pub fn state(&self, presented: &str) -> Result<SessionState, SessionError> {
        let cur = self.lock();
        let s = cur.as_ref().ok_or(SessionError::Invalid)?;
        if presented.len() != s.token.len()
            || !openssl::memcmp::eq(presented.as_bytes(), s.token.as_bytes())
        {
            return Err(SessionError::Invalid);
        }
        let used = s.last_used.elapsed();
        if used >= self.idle {
            return Err(SessionError::Expired);
        }
        Ok(SessionState {
            logged_in: true,
            operator: Some(s.info.clone()),
            idle_left_secs: (self.idle - used).as_secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> OperatorInfo {
        OperatorInfo {
            serial_hex: "01".into(),
            name: "СӘТБАЕВ ҚАНЫШ".into(),
        }
    }

    #[test]
    fn only_the_current_token_opens_the_session() {
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.open(None, info()).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(s.with(None, |_, _| ()), Err(SessionError::Missing));
        assert_eq!(s.with(Some("00"), |_, _| ()), Err(SessionError::Invalid));
        let mut wrong = t.clone();
        wrong.replace_range(0..1, if t.starts_with('0') { "1" } else { "0" });
        assert_eq!(s.with(Some(&wrong), |_, _| ()), Err(SessionError::Invalid));
        assert_eq!(
            s.with(Some(&t), |_, i| i.name.clone()).unwrap(),
            "СӘТБАЕВ ҚАНЫШ"
        );
        // A new login replaces the session: the old token is dead.
        let t2 = s.open(None, info()).unwrap();
        assert_eq!(s.with(Some(&t), |_, _| ()), Err(SessionError::Invalid));
        assert!(s.with(Some(&t2), |_, _| ()).is_ok());
        s.close();
        assert_eq!(s.with(Some(&t2), |_, _| ()), Err(SessionError::Invalid));
    }

    #[test]
    fn an_idle_session_expires() {
        let s = Sessions::new(Duration::from_millis(50));
        let t = s.open(None, info()).unwrap();
        assert!(s.state(&t).unwrap().logged_in);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.state(&t).unwrap_err(), SessionError::Expired);
        assert_eq!(s.with(Some(&t), |_, _| ()), Err(SessionError::Expired));
        // Gone for good, not only refused.
        assert_eq!(s.with(Some(&t), |_, _| ()), Err(SessionError::Invalid));
        let t = s.open(None, info()).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.expire());
        assert_eq!(s.with(Some(&t), |_, _| ()), Err(SessionError::Invalid));
    }
}
