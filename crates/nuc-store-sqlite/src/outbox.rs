//! The notification outbox's rows: which messages are due, what a pass of delivery attempts
//! changes (sent, retried later, given up as a dead letter), and the dead letters revived by
//! an administrator.
//!
//! A failed attempt is recorded only if the message still has the attempts it had when it was
//! read (`attempts = ?before`), so an attempt made twice (two passes over the same row) counts
//! once. Becoming a dead letter and being revived each write their audit record in the same
//! transaction. This module never decides the backoff: [`RetryPolicy`] does.

use rusqlite::{OptionalExtension, Transaction, params};

use nuc_core::NoticeKind;
use nuc_store::{
    AfterFailure, AttemptRecorded, DeadLetter, DeliveryAttempt, Notification, OutboxStats,
    RetryPolicy, dead_letter_audit, revived_audit,
};

use crate::audit::append;
use crate::{DbError, SqliteStore, spelled};

/// A failed attempt of `a`, recorded if the row is still as it was read.
fn failed(
    tx: &Transaction<'_>,
    a: &DeliveryAttempt,
    error: &str,
    policy: &RetryPolicy,
    now: i64,
) -> Result<AttemptRecorded, DbError> {
    let row: Option<(String, Option<String>)> = tx
        .prepare_cached(
            "SELECT kind, request_number FROM notifications
             WHERE id = ?1 AND sent_at IS NULL AND dead_at IS NULL AND attempts = ?2",
        )?
        .query_row(params![a.id, a.attempts_before], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((kind, request_number)) = row else {
        return Ok(AttemptRecorded::Stale);
    };
    let after = policy.after_failure(a.attempts_before, now);
    match after {
        AfterFailure::Retry {
            attempts,
            next_attempt_at,
        } => {
            tx.prepare_cached(
                "UPDATE notifications SET attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1",
            )?
            .execute(params![a.id, attempts, error, next_attempt_at])?;
        }
        AfterFailure::Dead { attempts } => {
            tx.prepare_cached(
                "UPDATE notifications SET attempts = ?2, last_error = ?3, dead_at = ?4 WHERE id = ?1",
            )?
            .execute(params![a.id, attempts, error, now])?;
            append(
                tx,
                &dead_letter_audit(a.id, &kind, request_number.as_deref(), attempts),
                now,
            )?;
        }
    }
    Ok(after.into())
}

impl SqliteStore {
    /// Notifications not yet sent, not given up, and due, oldest first.
    pub(crate) fn pending_notifications(&self, limit: i64) -> Result<Vec<Notification>, DbError> {
        let now = nuc_core::time::now_unix();
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, kind, recipient, subject, body, request_number, attempts FROM notifications
             WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ?2
             ORDER BY id LIMIT ?1",
        )?;
        let rows = st.query_map([limit, now], |r| {
            Ok(Notification {
                id: r.get(0)?,
                kind: spelled(r, 1, NoticeKind::parse)?,
                recipient: r.get(2)?,
                subject: r.get(3)?,
                body: r.get(4)?,
                request_number: r.get(5)?,
                attempts: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the outcomes of a pass of delivery attempts, all in one commit.
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
                    // Delivered: recorded even if another pass gave it up meanwhile.
                    None => {
                        let changed = tx
                            .prepare_cached(
                                "UPDATE notifications SET sent_at = ?2, attempts = attempts + 1, last_error = NULL, dead_at = NULL
                                 WHERE id = ?1 AND sent_at IS NULL",
                            )?
                            .execute(params![a.id, now])?;
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

    /// Messages waiting and dead letters.
    pub(crate) fn outbox_stats(&self) -> Result<OutboxStats, DbError> {
        let conn = self.conn();
        let (pending, dead): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(dead_at IS NULL), 0), COALESCE(SUM(dead_at IS NOT NULL), 0)
             FROM notifications WHERE sent_at IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(OutboxStats {
            pending: pending.max(0) as u64,
            dead: dead.max(0) as u64,
        })
    }

    /// The dead letters, oldest first.
    pub(crate) fn dead_letters(&self) -> Result<Vec<DeadLetter>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, kind, recipient, request_number, attempts, dead_at, last_error FROM notifications
             WHERE sent_at IS NULL AND dead_at IS NOT NULL ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DeadLetter {
                id: r.get(0)?,
                kind: spelled(r, 1, NoticeKind::parse)?,
                recipient: r.get(2)?,
                request_number: r.get(3)?,
                attempts: r.get(4)?,
                dead_at: r.get(5)?,
                last_error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revives dead letters (those of `ids`, or all), each with its audit record.
    pub(crate) fn revive_notifications(
        &self,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<Vec<i64>, DbError> {
        let (ids, actor) = (ids.map(<[i64]>::to_vec), actor.to_owned());
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            let dead: Vec<(i64, String, Option<String>, i64)> = tx
                .prepare_cached(
                    "SELECT id, kind, request_number, attempts FROM notifications
                     WHERE sent_at IS NULL AND dead_at IS NOT NULL ORDER BY id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?;
            let mut revived = Vec::new();
            for (id, kind, request_number, attempts) in dead {
                if ids.as_ref().is_some_and(|ids| !ids.contains(&id)) {
                    continue;
                }
                tx.prepare_cached(
                    "UPDATE notifications SET dead_at = NULL, attempts = 0, next_attempt_at = ?2 WHERE id = ?1",
                )?
                .execute(params![id, now])?;
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
