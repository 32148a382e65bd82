//! Group commit: one writer thread owns the write connection and commits the changes of all
//! callers waiting at that moment in a single transaction, so one fsync acknowledges many.
//!
//! Each change runs inside its own SAVEPOINT: a change that fails (a key already certified, a
//! serial already used) is rolled back alone and its caller gets its error, while the others
//! in the batch commit. A caller is answered only after the COMMIT is durable
//! (`synchronous=FULL`): nothing acknowledged is ever lost.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use nuc_store::StoreError;

use crate::DbError;

/// A change to apply inside the batch's transaction.
pub(crate) type Change = Box<dyn FnOnce(&Transaction<'_>) -> Result<(), DbError> + Send>;

struct Job {
    change: Change,
    reply: Sender<Result<(), DbError>>,
}

/// Largest batch: bounds the time a transaction holds the write lock.
const MAX_BATCH: usize = 256;

pub(crate) struct Writer {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Self {
        let (tx, rx) = sync_channel::<Job>(4 * MAX_BATCH);
        let thread = std::thread::Builder::new()
            .name("nuc-store-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn the storage writer thread");
        Self {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    /// Applies `change` durably, together with whatever else is being written now.
    pub(crate) fn write(&self, change: Change) -> Result<(), DbError> {
        let (reply, answer) = channel();
        self.jobs
            .as_ref()
            .expect("writer is running while the store lives")
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

fn run(mut conn: Connection, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch);
    }
}

/// One batch in one transaction, timed from its start to its durable commit
/// (`nuc_store_commit_duration_seconds`; a failed commit counts in
/// `nuc_store_commit_errors_total`).
fn commit_batch(conn: &mut Connection, batch: Vec<Job>) {
    let started = std::time::Instant::now();
    let committed = commit_batch_unobserved(conn, batch);
    if committed {
        metrics::histogram!("nuc_store_commit_duration_seconds", "engine" => "sqlite")
            .record(started.elapsed().as_secs_f64());
    } else {
        metrics::counter!("nuc_store_commit_errors_total", "engine" => "sqlite").increment(1);
    }
}

/// Whether the batch committed.
fn commit_batch_unobserved(conn: &mut Connection, batch: Vec<Job>) -> bool {
    let size = batch.len();
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(DbError::Store(StoreError::CommitFailed(msg.clone()))));
            }
            return false;
        }
    };
    let mut results = Vec::with_capacity(size);
    let mut replies = Vec::with_capacity(size);
    for job in batch {
        replies.push(job.reply);
        let outcome = (|| -> Result<(), DbError> {
            tx.prepare_cached("SAVEPOINT change")?.execute([])?;
            match (job.change)(&tx) {
                Ok(()) => {
                    tx.prepare_cached("RELEASE change")?.execute([])?;
                    Ok(())
                }
                Err(e) => {
                    tx.prepare_cached("ROLLBACK TO change")?.execute([])?;
                    tx.prepare_cached("RELEASE change")?.execute([])?;
                    Err(e)
                }
            }
        })();
        results.push(outcome);
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            true
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, size, "storage commit failed; the whole batch is refused");
            for reply in replies {
                let _ = reply.send(Err(DbError::Store(StoreError::CommitFailed(msg.clone()))));
            }
            false
        }
    }
}
