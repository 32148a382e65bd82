//! Group commit: one writer thread per store owns the write connection and commits the changes
//! of all callers waiting at that moment in one transaction.
//!
//! Each transaction first takes the write advisory lock, shared by every instance on the
//! database: writes of all instances are serialised, so the audit chain's head read inside the
//! transaction, once and after the lock, is the true one and the chain never forks. The head
//! is then carried in memory from change to change (each append moves it on) and put back when
//! a change is rolled back. Each change runs inside its own SAVEPOINT: a refused change is
//! rolled back alone while the others commit. A caller is answered only after COMMIT returned.
//! A lost connection fails the batch (nothing of it was committed, unless COMMIT itself was
//! cut, see [`commit_batch`]) and is replaced for the next.
//!
//! Round trips: the statements without parameters that frame the changes travel together in
//! one simple query: BEGIN, the lock, the head and the first SAVEPOINT; then between two
//! changes the end of one savepoint (RELEASE, after ROLLBACK TO for a refused change) and the
//! start of the next; after the last, its end and COMMIT. A change thus costs its own
//! statements plus one round trip. This must never send a change's statement before the
//! savepoint that can undo it, nor answer a caller before COMMIT returned.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use nuc_store::StoreError;

use crate::audit::{HEAD_QUERY, Head};
use crate::{Cache, Connector, DbError, LOCK_CLASS, LOCK_WRITE, Sql, is_connection_error};

/// A change to apply inside the batch's transaction.
pub(crate) type Change =
    Box<dyn FnOnce(&mut Sql<'_, postgres::Client>) -> Result<(), DbError> + Send>;

struct Job {
    change: Change,
    reply: Sender<Result<(), DbError>>,
}

/// Largest batch: bounds the time a transaction holds the write lock of every instance.
const MAX_BATCH: usize = 256;

pub(crate) struct Writer {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

struct Conn {
    client: postgres::Client,
    cache: Cache,
}

impl Writer {
    pub(crate) fn start(connector: Arc<Connector>, client: postgres::Client) -> Self {
        let (tx, rx) = sync_channel::<Job>(4 * MAX_BATCH);
        let conn = Some(Conn {
            client,
            cache: Cache::new(),
        });
        let thread = std::thread::Builder::new()
            .name("nuc-store-pg-writer".into())
            .spawn(move || run(connector, conn, rx))
            .ok();
        Self {
            jobs: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Applies `change` durably, together with whatever else is being written now.
    pub(crate) fn write(&self, change: Change) -> Result<(), DbError> {
        let (reply, answer) = channel();
        self.jobs
            .as_ref()
            .ok_or(DbError::Store(StoreError::WriterStopped))?
            .send(Job { change, reply })
            .map_err(|_| DbError::Store(StoreError::WriterStopped))?;
        answer
            .recv()
            .map_err(|_| DbError::Store(StoreError::WriterStopped))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(connector: Arc<Connector>, mut conn: Option<Conn>, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&connector, &mut conn, batch);
    }
}

fn fail_all(replies: Vec<Sender<Result<(), DbError>>>, error: StoreError) {
    for reply in replies {
        let _ = reply.send(Err(DbError::Store(error.clone())));
    }
}

/// What opens a batch, in one round trip: the transaction (READ COMMITTED whatever the
/// server's default, so that the head is read with a snapshot taken after the lock was
/// granted), the write lock, the audit chain's head, and the first change's savepoint.
fn opening() -> String {
    format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; \
         SELECT pg_advisory_xact_lock({LOCK_CLASS}, {LOCK_WRITE}); \
         {HEAD_QUERY}; \
         SAVEPOINT change"
    )
}

/// The head among the answers of [`opening`]: the row of [`HEAD_QUERY`], or the genesis when
/// the log is empty.
fn head_of(messages: &[postgres::SimpleQueryMessage]) -> Result<Head, DbError> {
    let mut head = Head::genesis();
    for m in messages {
        if let postgres::SimpleQueryMessage::Row(r) = m
            && r.columns().first().is_some_and(|c| c.name() == "seq")
        {
            let seq = r.try_get(0)?.and_then(|t| t.parse::<i64>().ok());
            match (seq, r.try_get(1)?) {
                (Some(seq), Some(hash)) => {
                    head = Head {
                        seq,
                        hash: hash.to_owned(),
                    }
                }
                _ => {
                    return Err(DbError::Store(StoreError::Corrupt(
                        "the audit log's last record has no readable seq or hash".into(),
                    )));
                }
            }
        }
    }
    Ok(head)
}

/// Begins the batch's transaction, takes the write lock, reads the audit chain's head and opens
/// the first savepoint, on the connection in hand or, when it is gone or proves dead then (so
/// before anything was written), on a new one.
fn begin(connector: &Connector, conn: &mut Option<Conn>) -> Result<Head, DbError> {
    if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
        *conn = None;
    }
    let opening = opening();
    if let Some(c) = conn.as_mut() {
        match c.client.simple_query(&opening) {
            Ok(m) => return head_of(&m),
            Err(e) if is_connection_error(&e) => *conn = None,
            Err(e) => return Err(e.into()),
        }
    }
    let mut c = Conn {
        client: connector.connect()?,
        cache: Cache::new(),
    };
    let m = c.client.simple_query(&opening)?;
    *conn = Some(c);
    head_of(&m)
}

/// The batch's failure as its callers get it: `Unavailable` when the connection is lost (it is
/// then dropped), `CommitFailed` otherwise; the transaction is rolled back if it still can be.
fn fail_batch(
    conn: &mut Option<Conn>,
    replies: Vec<Sender<Result<(), DbError>>>,
    error: StoreError,
    what: &str,
) {
    let error = match error {
        StoreError::Unavailable(m) => {
            *conn = None;
            StoreError::Unavailable(m)
        }
        other => {
            if let Some(c) = conn.as_mut()
                && c.client.batch_execute("ROLLBACK").is_err()
            {
                *conn = None;
            }
            StoreError::CommitFailed(other.to_string())
        }
    };
    tracing::error!(error = %error, size = replies.len(), "storage {what} failed; the whole batch is refused");
    fail_all(replies, error);
}

/// Runs the batch. When the connection fails midway, nothing is committed and every caller
/// gets `Unavailable`. When COMMIT itself is cut off, the outcome is unknown to this process:
/// the callers get `Unavailable` too, and a retry meets either the change (refused as already
/// done, e.g. `AlreadyRevoked`, or found by its idempotency key) or nothing.
fn commit_batch(connector: &Connector, conn: &mut Option<Conn>, batch: Vec<Job>) {
    let started = std::time::Instant::now();
    if commit_batch_unobserved(connector, conn, batch) {
        metrics::histogram!("nuc_store_commit_duration_seconds", "engine" => "postgres")
            .record(started.elapsed().as_secs_f64());
    } else {
        metrics::counter!("nuc_store_commit_errors_total", "engine" => "postgres").increment(1);
    }
}

/// [`commit_batch`] without its timing: whether the batch committed.
fn commit_batch_unobserved(
    connector: &Connector,
    conn: &mut Option<Conn>,
    batch: Vec<Job>,
) -> bool {
    let size = batch.len();
    let mut replies = Vec::with_capacity(size);
    let mut changes = Vec::with_capacity(size);
    for job in batch {
        replies.push(job.reply);
        changes.push(job.change);
    }
    let head = match begin(connector, conn) {
        Ok(head) => head,
        Err(e) => {
            fail_batch(conn, replies, e.into(), "transaction start");
            return false;
        }
    };
    let Some(c) = conn.as_mut() else {
        fail_all(replies, StoreError::WriterStopped);
        return false;
    };
    let mut sql = Sql {
        c: &mut c.client,
        cache: &mut c.cache,
        head: Some(head),
    };
    let last = size.saturating_sub(1);
    let mut results = Vec::with_capacity(size);
    let mut broken = None;
    for (i, change) in changes.into_iter().enumerate() {
        let before = sql.head.clone();
        let result = change(&mut sql);
        // This change's savepoint ends (undone first when the change was refused, and the head
        // put back with it), and the next one opens or the transaction commits, together.
        let mut boundary = String::new();
        if result.is_err() {
            sql.head = before;
            boundary.push_str("ROLLBACK TO SAVEPOINT change; ");
        }
        boundary.push_str("RELEASE SAVEPOINT change; ");
        boundary.push_str(if i == last {
            "COMMIT"
        } else {
            "SAVEPOINT change"
        });
        results.push(result);
        if let Err(e) = sql.batch(&boundary) {
            broken = Some((
                StoreError::from(e),
                if i == last { "commit" } else { "batch" },
            ));
            break;
        }
    }
    if let Some((error, what)) = broken {
        fail_batch(conn, replies, error, what);
        return false;
    }
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
    true
}

#[cfg(test)]
mod tests {
    //! One batch driven by hand, so that refused and accepted changes are known to share it.

    use std::sync::mpsc::Receiver;

    use nuc_store::AuditEntry;

    use super::*;
    use crate::audit::{append, verify};
    use crate::{PgOptions, migrate};

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: action.into(),
            object: "x".into(),
            details: serde_json::json!({ "a": action }),
        }
    }

    /// A change appending `action`, then refused as `refusal` says: by the store, by the
    /// database (a failing statement), or not at all.
    fn change(action: &'static str, refusal: Option<bool>) -> Change {
        Box::new(move |tx| {
            append(tx, &entry(action), 1)?;
            match refusal {
                None => Ok(()),
                Some(true) => Err(DbError::Store(StoreError::NotReserved("s".into()))),
                Some(false) => tx.batch("SELECT 1 / 0"),
            }
        })
    }

    fn run_batch(
        connector: &Connector,
        conn: &mut Option<Conn>,
        changes: Vec<Change>,
    ) -> Vec<Result<(), String>> {
        let (jobs, answers): (Vec<Job>, Vec<Receiver<Result<(), DbError>>>) = changes
            .into_iter()
            .map(|change| {
                let (reply, answer) = channel();
                (Job { change, reply }, answer)
            })
            .unzip();
        commit_batch(connector, conn, jobs);
        answers
            .iter()
            .map(|a| match a.recv() {
                Ok(r) => r.map_err(|e| StoreError::from(e).to_string()),
                Err(_) => Err("no answer".into()),
            })
            .collect()
    }

    fn actions(conn: &mut Option<Conn>) -> Vec<(i64, String)> {
        let c = conn.as_mut().expect("the batch kept its connection");
        c.client
            .query("SELECT seq, action FROM audit_log ORDER BY seq", &[])
            .expect("read the audit log")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    fn verified(conn: &mut Option<Conn>) -> Result<u64, nuc_store::AuditBreak> {
        let c = conn.as_mut().expect("the batch kept its connection");
        let records: Vec<nuc_store::AuditRecord> = c
            .client
            .query(
                "SELECT seq, at, actor, action, object, details, prev_hash, hash FROM audit_log ORDER BY seq",
                &[],
            )
            .expect("read the audit log")
            .iter()
            .map(|r| nuc_store::AuditRecord {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                object: r.get(4),
                details: r.get(5),
                prev_hash: r.get(6),
                hash: r.get(7),
            })
            .collect();
        verify(&records).expect("hash the records")
    }

    #[test]
    fn refused_changes_roll_back_alone_and_the_carried_head_goes_back_with_them() {
        let cluster = pg_cluster::Cluster::start()
            .unwrap_or_else(|e| panic!("cannot start a PostgreSQL cluster: {e}"));
        cluster.create_database("w").unwrap();
        let opts = PgOptions {
            password: Some(cluster.password().to_owned()),
            ..PgOptions::default()
        };
        let connector = Connector::new(&cluster.url("w"), &opts).unwrap();
        let mut client = connector.connect().unwrap();
        migrate::run(&mut client).unwrap();
        let mut conn = Some(Conn {
            client,
            cache: Cache::new(),
        });

        // Refusals first, in the middle, in a row, and last: each undoes its own record only.
        let answers = run_batch(
            &connector,
            &mut conn,
            vec![
                change("r1", Some(true)),
                change("a", None),
                change("r2", Some(false)),
                change("r3", Some(true)),
                change("b", None),
                change("r4", Some(false)),
            ],
        );
        let refused = |r: &Result<(), String>| r.is_err();
        assert_eq!(
            answers.iter().map(refused).collect::<Vec<_>>(),
            [true, false, true, true, false, true]
        );
        assert!(
            answers[2]
                .as_ref()
                .unwrap_err()
                .contains("division by zero")
        );
        assert_eq!(actions(&mut conn), [(1, "a".into()), (2, "b".into())]);
        assert_eq!(verified(&mut conn), Ok(2));

        // The next batch reads the committed head again and goes on from it.
        let answers = run_batch(
            &connector,
            &mut conn,
            vec![change("c", None), change("r5", Some(true))],
        );
        assert_eq!(
            answers.iter().map(refused).collect::<Vec<_>>(),
            [false, true]
        );
        // A record written behind the writer's back (another instance, under the lock) is
        // seen by the next batch's head: the chain goes on from it, not from memory.
        cluster
            .psql(
                "w",
                "INSERT INTO audit_log SELECT seq + 1, at, actor, 'other', object, details, hash, \
                 md5(hash) || md5(hash) FROM audit_log ORDER BY seq DESC LIMIT 1",
            )
            .unwrap();
        let answers = run_batch(&connector, &mut conn, vec![change("d", None)]);
        assert_eq!(answers, [Ok(())]);
        assert_eq!(
            actions(&mut conn),
            [
                (1, "a".into()),
                (2, "b".into()),
                (3, "c".into()),
                (4, "other".into()),
                (5, "d".into())
            ]
        );
        // The hand-written record does not hash as the store hashes: the chain breaks there,
        // and only there (record 5 follows record 4's hash).
        assert_eq!(verified(&mut conn).map_err(|b| b.seq), Err(4));
    }
}
