//! Group commit: one writer thread owns the write connection and commits the changes of all
//! callers waiting at that moment in a single transaction, so one fsync acknowledges many.
//!
//! Each change runs inside its own SAVEPOINT: a change that fails (a key already certified, a
//! serial already used) is rolled back alone and its caller gets its error, while the others
//! in the batch commit. A caller is answered only after the COMMIT is durable
//! (`synchronous=FULL`): nothing acknowledged is ever lost.
//!
//! The write-ahead log is copied back into the database by a checkpointer thread of its own,
//! not by the committing writer: SQLite's automatic checkpoint runs inside the COMMIT that
//! crosses 1,000 pages, so every caller of that batch would wait for pages to be written back
//! and the database file fsynced. In a database of a million certificates each issuance dirties
//! pages all over the indexes (serials, key hashes and IINs are random), the log fills fast, and
//! those inline checkpoints are what made issuance slow down with the size of the database.
//! A PASSIVE checkpoint never takes the write lock, so commits go on while it runs; the log's
//! durability is what acknowledges a commit, so moving the copy changes nothing after a crash.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The writer's page cache, in KiB as SQLite counts a negative size (default: 2 MiB). An
/// issuance updates the leaves of four indexes at random places; with a million certificates
/// those leaves no longer fit in 2 MiB, and each would be read again from the file.
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// How often the checkpointer looks for committed pages to copy back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Writer {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    stop_checkpoints: Option<Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer on `conn` and the checkpointer on `checkpoints`, two connections to
    /// the same database.
    pub(crate) fn start(conn: Connection, checkpoints: Connection) -> Result<Self, DbError> {
        // The writer never checkpoints: the checkpointer thread does.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        let log = Arc::new(LogState::default());
        let (stop, stopped) = channel();
        let seen = log.clone();
        let checkpointer = std::thread::Builder::new()
            .name("nuc-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, seen, stopped))
            .expect("spawn the storage checkpointer thread");
        let (tx, rx) = sync_channel::<Job>(4 * MAX_BATCH);
        let thread = std::thread::Builder::new()
            .name("nuc-store-writer".into())
            .spawn(move || run(conn, rx, log))
            .expect("spawn the storage writer thread");
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
            stop_checkpoints: Some(stop),
            checkpointer: Some(checkpointer),
        })
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
        self.stop_checkpoints.take();
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
    }
}

/// What the writer and the checkpointer tell each other about the log.
#[derive(Default)]
struct LogState {
    /// Batches committed so far.
    commits: AtomicU64,
    /// The log has grown past [`RESTART_FRAMES`]: the writer should finish its copy.
    long: AtomicBool,
}

fn run(mut conn: Connection, rx: Receiver<Job>, log: Arc<LogState>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if commit_batch(&mut conn, batch) {
            log.commits.fetch_add(1, Ordering::Relaxed);
        }
        if log.long.swap(false, Ordering::Relaxed) {
            // Between two batches nothing is being written: this PASSIVE checkpoint copies the
            // few pages the checkpointer's left (as far as no reader needs them) and so lets
            // the next commit start the log from its beginning. It never waits for a reader.
            if let Err(e) = checkpoint(&conn, "PASSIVE") {
                tracing::warn!(error = %e, "write-ahead log checkpoint by the writer failed");
            }
        }
    }
}

/// Every [`CHECKPOINT_EVERY`], if anything was committed since the last time, copies the
/// log's committed pages into the database (PASSIVE: as far as no reader needs the old ones,
/// never waiting for the writer nor making it wait). Under a steady load the log would then
/// never be wholly copied at the moment a commit begins, and SQLite restarts it from its
/// beginning only then: so once it holds more than [`RESTART_FRAMES`] pages, the writer is
/// asked to finish the copy between two batches (see [`run`]). A last checkpoint runs when the
/// store closes.
fn checkpoint_loop(conn: Connection, log: Arc<LogState>, stop: Receiver<()>) {
    let mut done = 0;
    loop {
        let last = matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        );
        let now = log.commits.load(Ordering::Relaxed);
        if now != done || last {
            done = now;
            let started = std::time::Instant::now();
            match checkpoint(&conn, "PASSIVE") {
                Ok(frames) => {
                    metrics::histogram!("nuc_store_checkpoint_duration_seconds", "engine" => "sqlite")
                        .record(started.elapsed().as_secs_f64());
                    if frames > RESTART_FRAMES {
                        log.long.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "write-ahead log checkpoint failed; retried"),
            }
        }
        if last {
            return;
        }
    }
}

/// Pages in the log past which the writer finishes the copy so that the next commit restarts
/// the log (16 MiB of 4 KiB pages).
const RESTART_FRAMES: i64 = 4096;

/// One checkpoint in `mode`; the pages in the log when it ran.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(1)
    })
}

/// One batch in one transaction, timed from its start to its durable commit
/// (`nuc_store_commit_duration_seconds`; a failed commit counts in
/// `nuc_store_commit_errors_total`). Whether it committed.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>) -> bool {
    let started = std::time::Instant::now();
    let committed = commit_batch_unobserved(conn, batch);
    if committed {
        metrics::histogram!("nuc_store_commit_duration_seconds", "engine" => "sqlite")
            .record(started.elapsed().as_secs_f64());
    } else {
        metrics::counter!("nuc_store_commit_errors_total", "engine" => "sqlite").increment(1);
    }
    committed
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn
    }

    fn writer(path: &std::path::Path) -> Writer {
        let conn = open(path);
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        // As in the service: a checkpointer that waited for readers would wait this long.
        let checkpoints = open(path);
        checkpoints.busy_timeout(Duration::from_secs(10)).unwrap();
        Writer::start(conn, checkpoints).unwrap()
    }

    fn insert(w: &Writer, bytes: usize) {
        w.write(Box::new(move |tx| {
            tx.execute("INSERT INTO t (b) VALUES (?1)", [vec![7u8; bytes]])?;
            Ok(())
        }))
        .unwrap();
    }

    /// Rows in the database file itself, not counting what only the log holds.
    fn rows_in_file(path: &std::path::Path) -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(uri, flags).unwrap();
        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn committed_pages_reach_the_database_file_without_a_commit_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let w = writer(&path);
        for _ in 0..100 {
            insert(&w, 10);
        }
        // 100 small commits are far below SQLite's own automatic checkpoint (1,000 pages),
        // which the writer does not run anyway: only the checkpointer can have copied them.
        std::thread::sleep(3 * CHECKPOINT_EVERY);
        assert_eq!(rows_in_file(&path), 100);
        drop(w);
    }

    #[test]
    fn the_log_is_restarted_under_a_steady_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let w = writer(&path);
        let wal = path.with_extension("db-wal");
        let mut largest = 0;
        // 1,000 commits of 64 KiB: 64 MiB through the log, paced (at most 100 commits, 1,600
        // pages, per checkpoint interval however fast the disk) so that the bound below holds
        // when the log is restarted and fails when it is not.
        for _ in 0..1000 {
            insert(&w, 64 * 1024);
            std::thread::sleep(Duration::from_millis(2));
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        let bound = 3 * RESTART_FRAMES as u64 * 4096;
        assert!(
            largest < bound,
            "the log grew to {largest} B (bound {bound} B): it is never restarted"
        );
        drop(w);
        assert_eq!(rows_in_file(&path), 1000);
    }

    /// The process killed (SIGKILL) in the middle of a steady load, while the checkpointer is
    /// copying pages: every commit acknowledged before the kill is in the database reopened.
    #[test]
    fn nothing_acknowledged_is_lost_when_the_process_is_killed_mid_checkpoint() {
        const CHILD: &str = "NUC_WRITER_TEST_CHILD_DB";
        if let Ok(path) = std::env::var(CHILD) {
            let path = std::path::PathBuf::from(path);
            let w = writer(&path);
            let mut out = std::io::stdout();
            for i in 1.. {
                insert(&w, 16 * 1024);
                use std::io::Write;
                writeln!(out, "ack {i}").unwrap();
                out.flush().unwrap();
            }
            unreachable!();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "writer::tests::nothing_acknowledged_is_lost_when_the_process_is_killed_mid_checkpoint",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut acked = 0;
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        // Past a few checkpoints and a restart of the log (16 KiB a commit: 4 pages).
        while acked < 3000 {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(n) = l.strip_prefix("ack ") {
                        acked = n.parse().unwrap();
                    }
                }
                _ => panic!("the writing child stopped after {acked} commits"),
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let conn = open(&path);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert!(
            rows >= acked,
            "{rows} rows after the kill, {acked} acknowledged"
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// A reader holding an old snapshot (a CRL's scan of every revocation, a backup) keeps
    /// the log from being restarted, but never makes a commit wait.
    #[test]
    fn a_long_reader_never_makes_a_commit_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let w = writer(&path);
        insert(&w, 10);
        let reader = open(&path);
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        let mut slowest = Duration::ZERO;
        // 40 MiB through the log while the snapshot is held: past RESTART_FRAMES.
        for _ in 0..640 {
            let started = std::time::Instant::now();
            insert(&w, 64 * 1024);
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_micros(500));
        }
        assert!(
            slowest < Duration::from_secs(1),
            "a commit waited {slowest:?}"
        );
        reader.execute_batch("COMMIT").unwrap();
        drop(w);
        assert_eq!(rows_in_file(&path), 641);
    }
}
