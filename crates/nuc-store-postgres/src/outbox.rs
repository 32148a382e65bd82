//! The notification outbox's rows — as in `nuc-store-sqlite`, statement for statement: which
//! messages are due, what a pass of delivery attempts changes (sent, retried later, given up as
//! a dead letter), and the dead letters revived by an administrator.
//!
//! Several instances may run a sender over one database. Their changes are serialised by the
//! writer's lock, and a failed attempt is recorded only if the message still has the attempts
//! it had when it was read (`attempts = $before`): two instances failing the same message in
//! the same round count one attempt, and a message sent by one is never rescheduled by the
//! other. Becoming a dead letter and being revived each write their audit record in the same
//! transaction. This module never decides the backoff: [`RetryPolicy`] does.

use nuc_core::NoticeKind;
use nuc_store::{
    AfterFailure, AttemptRecorded, DeadLetter, DeliveryAttempt, Notification, OutboxStats,
    RetryPolicy, dead_letter_audit, revived_audit,
};

use crate::audit::append;
use crate::{DbError, PgStore, Sql, spelled};

type Tx<'a> = Sql<'a, postgres::Client>;

/// A failed attempt of `a`, recorded if the row is still as it was read.
fn failed(
    tx: &mut Tx<'_>,
    a: &DeliveryAttempt,
    error: &str,
    policy: &RetryPolicy,
    now: i64,
) -> Result<AttemptRecorded, DbError> {
    let Some(row) = tx.query_opt(
        "SELECT kind, request_number FROM notifications
         WHERE id = $1 AND sent_at IS NULL AND dead_at IS NULL AND attempts = $2 FOR UPDATE",
        &[&a.id, &a.attempts_before],
    )?
    else {
        return Ok(AttemptRecorded::Stale);
    };
    let (kind, request_number): (String, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
    let after = policy.after_failure(a.attempts_before, now);
    match after {
        AfterFailure::Retry {
            attempts,
            next_attempt_at,
        } => {
            tx.execute(
                "UPDATE notifications SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1",
                &[&a.id, &attempts, &error, &next_attempt_at],
            )?;
        }
        AfterFailure::Dead { attempts } => {
            tx.execute(
                "UPDATE notifications SET attempts = $2, last_error = $3, dead_at = $4 WHERE id = $1",
                &[&a.id, &attempts, &error, &now],
            )?;
            append(
                tx,
                &dead_letter_audit(a.id, &kind, request_number.as_deref(), attempts),
                now,
            )?;
        }
    }
    Ok(after.into())
}

impl PgStore {
    pub(crate) fn pending_notifications(&self, limit: i64) -> Result<Vec<Notification>, DbError> {
        let now = nuc_core::time::now_unix();
        self.read(|s| {
            s.query(
                "SELECT id, kind, recipient, subject, body, request_number, attempts FROM notifications
                 WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2
                 ORDER BY id LIMIT $1",
                &[&limit, &now],
            )?
            .iter()
            .map(|r| {
                Ok(Notification {
                    id: r.try_get(0)?,
                    kind: spelled(r, 1, NoticeKind::parse)?,
                    recipient: r.try_get(2)?,
                    subject: r.try_get(3)?,
                    body: r.try_get(4)?,
                    request_number: r.try_get(5)?,
                    attempts: r.try_get(6)?,
                })
            })
            .collect()
        })
    }

    pub(crate) fn notifications_attempted(
        &self,
        attempts: &[DeliveryAttempt],
        policy: &RetryPolicy,
    ) -> Result<Vec<AttemptRecorded>, DbError> {
        let (attempts, policy) = (attempts.to_vec(), *policy);
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            let mut recorded = Vec::with_capacity(attempts.len());
            for a in &attempts {
                recorded.push(match &a.error {
                    // Delivered: recorded even if another instance gave it up meanwhile.
                    None => {
                        let changed = tx.execute(
                            "UPDATE notifications SET sent_at = $2, attempts = attempts + 1, last_error = NULL, dead_at = NULL
                             WHERE id = $1 AND sent_at IS NULL",
                            &[&a.id, &now],
                        )?;
                        if changed == 1 {
                            AttemptRecorded::Sent
                        } else {
                            AttemptRecorded::Stale
                        }
                    }
                    Some(e) => failed(tx, a, e, &policy, now)?,
                });
            }
            Ok(recorded)
        })
    }

    pub(crate) fn outbox_stats(&self) -> Result<OutboxStats, DbError> {
        self.read(|s| {
            let row = s.query_one(
                "SELECT COUNT(*) FILTER (WHERE dead_at IS NULL), COUNT(*) FILTER (WHERE dead_at IS NOT NULL)
                 FROM notifications WHERE sent_at IS NULL",
                &[],
            )?;
            let (pending, dead): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            Ok(OutboxStats {
                pending: pending.max(0) as u64,
                dead: dead.max(0) as u64,
            })
        })
    }

    pub(crate) fn dead_letters(&self) -> Result<Vec<DeadLetter>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT id, kind, recipient, request_number, attempts, dead_at, last_error FROM notifications
                 WHERE sent_at IS NULL AND dead_at IS NOT NULL ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get(0)?,
                    kind: spelled(r, 1, NoticeKind::parse)?,
                    recipient: r.try_get(2)?,
                    request_number: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    dead_at: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                })
            })
            .collect()
        })
    }

    pub(crate) fn revive_notifications(
        &self,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<Vec<i64>, DbError> {
        let (ids, actor) = (ids.map(<[i64]>::to_vec), actor.to_owned());
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            let dead = tx.query(
                "SELECT id, kind, request_number, attempts FROM notifications
                 WHERE sent_at IS NULL AND dead_at IS NOT NULL ORDER BY id FOR UPDATE",
                &[],
            )?;
            let mut revived = Vec::new();
            for r in &dead {
                let id: i64 = r.try_get(0)?;
                if ids.as_ref().is_some_and(|ids| !ids.contains(&id)) {
                    continue;
                }
                let (kind, request_number, attempts): (String, Option<String>, i64) =
                    (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                tx.execute(
                    "UPDATE notifications SET dead_at = NULL, attempts = 0, next_attempt_at = $2 WHERE id = $1",
                    &[&id, &now],
                )?;
                append(
                    tx,
                    &revived_audit(id, &kind, request_number.as_deref(), attempts, &actor),
                    now,
                )?;
                revived.push(id);
            }
            Ok(revived)
        })
    }
}
