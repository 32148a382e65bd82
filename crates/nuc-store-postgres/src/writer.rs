//! Group commit: one writer thread per store owns the write connection and commits the changes
//! of all callers waiting at that moment in one transaction.
//!
//! Each transaction first takes the write advisory lock, shared by every instance on the
//! database: writes of all instances are serialised, so the audit chain's head read inside the
//! transaction is the true one and the chain never forks. Each change runs inside its own
//! SAVEPOINT: a refused change is rolled back alone while the others commit. A caller is
//! answered only after COMMIT returned. A lost connection fails the batch (nothing of it was
//! committed, unless COMMIT itself was cut, see [`commit_batch`]) and is replaced for the next.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use nuc_store::StoreError;

use crate::{
    Cache, Connector, DbError, LOCK_CLASS, LOCK_WRITE, Sql, classify, is_connection_error,
};

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

/// Begins the batch's transaction and takes the write lock, on the connection in hand or, when
/// it is gone or proves dead at BEGIN (so before anything was done), on a new one.
fn begin(connector: &Connector, conn: &mut Option<Conn>) -> Result<(), DbError> {
    if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
        *conn = None;
    }
    if let Some(c) = conn.as_mut() {
        match c.client.batch_execute("BEGIN") {
            Ok(()) => return lock(c),
            Err(e) if is_connection_error(&e) => *conn = None,
            Err(e) => return Err(e.into()),
        }
    }
    let mut c = Conn {
        client: connector.connect()?,
        cache: Cache::new(),
    };
    c.client.batch_execute("BEGIN")?;
    lock(&mut c)?;
    *conn = Some(c);
    Ok(())
}

fn lock(c: &mut Conn) -> Result<(), DbError> {
    Ok(c.client.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({LOCK_CLASS}, {LOCK_WRITE})"
    ))?)
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
    let size = batch.len();
    let mut replies = Vec::with_capacity(size);
    let mut changes = Vec::with_capacity(size);
    for job in batch {
        replies.push(job.reply);
        changes.push(job.change);
    }
    if let Err(e) = begin(connector, conn) {
        return fail_batch(conn, replies, e.into(), "transaction start");
    }
    let Some(c) = conn.as_mut() else {
        return fail_all(replies, StoreError::WriterStopped);
    };
    let mut results = Vec::with_capacity(size);
    let mut broken = None;
    for change in changes {
        let mut sql = Sql {
            c: &mut c.client,
            cache: &mut c.cache,
        };
        let outcome = (|| -> Result<Result<(), DbError>, DbError> {
            sql.batch("SAVEPOINT change")?;
            match change(&mut sql) {
                Ok(()) => {
                    sql.batch("RELEASE SAVEPOINT change")?;
                    Ok(Ok(()))
                }
                Err(e) => {
                    sql.batch("ROLLBACK TO SAVEPOINT change")?;
                    sql.batch("RELEASE SAVEPOINT change")?;
                    Ok(Err(e))
                }
            }
        })();
        match outcome {
            Ok(result) => results.push(result),
            Err(e) => {
                broken = Some(StoreError::from(e));
                break;
            }
        }
    }
    if let Some(error) = broken {
        return fail_batch(conn, replies, error, "batch");
    }
    match c.client.batch_execute("COMMIT") {
        Ok(()) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => fail_batch(conn, replies, classify(&e), "commit"),
    }
}
