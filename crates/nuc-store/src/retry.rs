//! Delivery retries of the notification outbox: the policy (exponential backoff capped, and an
//! attempt limit past which a message becomes a dead letter), what a pass reports, what the
//! store answers, and the audit records of a message's changes of state.
//!
//! Every store computes the next attempt with [`RetryPolicy::after_failure`], so that all
//! engines schedule alike. This module decides nothing about delivery itself and must never
//! hold a message's body or recipient in what it writes to the audit log (personal data in an
//! append-only log could never be erased).

use nuc_core::NoticeKind;

use crate::AuditEntry;

/// When a failed message is tried again, and when it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included); the one that fails last makes a dead letter.
    pub max_attempts: i64,
    /// The wait after the first failure, in seconds; it doubles after each further one.
    pub base_secs: i64,
    /// The longest wait, in seconds.
    pub max_secs: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_secs: 30,
            max_secs: 3600,
        }
    }
}

/// What becomes of a message whose attempt just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Tried again at `next_attempt_at` (Unix seconds); `attempts` made so far.
    Retry { attempts: i64, next_attempt_at: i64 },
    /// The attempt limit is reached: a dead letter, after `attempts`.
    Dead { attempts: i64 },
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure in a row (from 1): `base · 2^(failures-1)`,
    /// never more than `max_secs`, never less than one second.
    pub fn delay_after(&self, failures: i64) -> i64 {
        let base = self.base_secs.max(1);
        let cap = self.max_secs.max(base);
        // Past 62 doublings any base is over any cap; shifting further would overflow.
        let doublings = (failures.max(1) - 1).min(62) as u32;
        base.checked_mul(1_i64 << doublings)
            .map_or(cap, |d| d.min(cap))
    }

    /// The outcome of a failed attempt of a message that had `attempts_before` attempts, at
    /// `now`.
    pub fn after_failure(&self, attempts_before: i64, now: i64) -> AfterFailure {
        let attempts = attempts_before.max(0) + 1;
        if attempts >= self.max_attempts.max(1) {
            AfterFailure::Dead { attempts }
        } else {
            AfterFailure::Retry {
                attempts,
                next_attempt_at: now.saturating_add(self.delay_after(attempts)),
            }
        }
    }
}

/// One delivery attempt, as the sender reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: i64,
    /// The message's attempts when it was read for this pass: the outcome is recorded only if
    /// no one (another instance) recorded an attempt of it meanwhile.
    pub attempts_before: i64,
    /// `None`: delivered.
    pub error: Option<String>,
}

/// What the store recorded of a [`DeliveryAttempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptRecorded {
    Sent,
    Retry {
        attempts: i64,
        next_attempt_at: i64,
    },
    Dead {
        attempts: i64,
    },
    /// Nothing: the message was sent, given up or attempted meanwhile (by another instance).
    Stale,
}

impl From<AfterFailure> for AttemptRecorded {
    fn from(a: AfterFailure) -> Self {
        match a {
            AfterFailure::Retry {
                attempts,
                next_attempt_at,
            } => Self::Retry {
                attempts,
                next_attempt_at,
            },
            AfterFailure::Dead { attempts } => Self::Dead { attempts },
        }
    }
}

/// The outbox in numbers (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Not sent yet and not given up (due now or later).
    pub pending: u64,
    /// Given up: dead letters.
    pub dead: u64,
}

/// A message given up after its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub kind: NoticeKind,
    pub recipient: String,
    pub request_number: Option<String>,
    pub attempts: i64,
    /// When it was given up (Unix seconds).
    pub dead_at: i64,
    pub last_error: Option<String>,
}

/// The actor of the sender's own records.
pub const SENDER_ACTOR: &str = "system:outbox";

/// The audit record of a message given up. The error and the recipient stay out of it.
pub fn dead_letter_audit(
    id: i64,
    kind: &str,
    request_number: Option<&str>,
    attempts: i64,
) -> AuditEntry {
    AuditEntry {
        actor: SENDER_ACTOR.into(),
        action: "notification.dead".into(),
        object: format!("notification:{id}"),
        details: serde_json::json!({
            "kind": kind,
            "request": request_number,
            "attempts": attempts,
        }),
    }
}

/// The audit record of a dead letter revived by `actor` for another round.
pub fn revived_audit(
    id: i64,
    kind: &str,
    request_number: Option<&str>,
    attempts: i64,
    actor: &str,
) -> AuditEntry {
    AuditEntry {
        actor: actor.into(),
        action: "notification.revived".into(),
        object: format!("notification:{id}"),
        details: serde_json::json!({
            "kind": kind,
            "request": request_number,
            "attempts_before": attempts,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: i64, base_secs: i64, max_secs: i64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_secs,
            max_secs,
        }
    }

    #[test]
    fn the_wait_doubles_from_the_base_up_to_the_cap() {
        let p = policy(10, 30, 3600);
        let waits: Vec<i64> = (1..=9).map(|n| p.delay_after(n)).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn huge_counts_stay_at_the_cap_without_overflow() {
        let p = policy(i64::MAX, 30, 3600);
        for n in [62, 63, 64, 1_000, i64::MAX] {
            assert_eq!(p.delay_after(n), 3600, "{n}");
        }
        let p = policy(10, i64::MAX / 2, i64::MAX);
        assert_eq!(p.delay_after(3), i64::MAX);
        assert_eq!(
            p.after_failure(1, i64::MAX - 5),
            AfterFailure::Retry {
                attempts: 2,
                next_attempt_at: i64::MAX
            }
        );
    }

    #[test]
    fn silly_settings_still_wait_and_still_give_up() {
        // A cap under the base is the base; a zero base is one second; a zero limit is one.
        assert_eq!(policy(3, 10, 5).delay_after(4), 10);
        assert_eq!(policy(3, 0, 0).delay_after(1), 1);
        assert_eq!(
            policy(0, 1, 1).after_failure(0, 100),
            AfterFailure::Dead { attempts: 1 }
        );
    }

    #[test]
    fn the_last_allowed_attempt_makes_a_dead_letter() {
        let p = policy(3, 1, 60);
        assert_eq!(
            p.after_failure(0, 1000),
            AfterFailure::Retry {
                attempts: 1,
                next_attempt_at: 1001
            }
        );
        assert_eq!(
            p.after_failure(1, 1000),
            AfterFailure::Retry {
                attempts: 2,
                next_attempt_at: 1002
            }
        );
        assert_eq!(p.after_failure(2, 1000), AfterFailure::Dead { attempts: 3 });
        assert_eq!(p.after_failure(7, 1000), AfterFailure::Dead { attempts: 8 });
    }
}
