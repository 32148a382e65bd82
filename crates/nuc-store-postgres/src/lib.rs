//! PostgreSQL storage of the NUC RK core service: every storage trait of `nuc-store` over one
//! database that several instances of `nuc serve` share.
//!
//! This crate owns that database: its schema (versioned migrations in `migrations/`, run by
//! [`PgStore::open`] under an advisory lock), its connections (a small pool for reads, one
//! group-commit writer, one listener for the status feed, one for the publisher lease), and the
//! mapping of PostgreSQL's failures onto [`StoreError`]. It keeps the promises of the SQLite
//! store with the same semantics, spellings, refusals and audit-chain hashing, so that a copy
//! from SQLite keeps verifying ([`copy_from_sqlite`]).
//!
//! Reads that may lag the primary — only the CRLs served to relying parties — go to a hot
//! standby when [`PgOptions::read_url`] names one (see `docs/cluster.md`, "Standby and
//! failover"); every other read, and every write, goes to the primary. When the standby fails,
//! those reads fall back to the primary: it is never less fresh.
//!
//! Across instances: every write transaction first takes one transaction-scoped advisory lock,
//! so the audit log stays one chain (its head is read under that lock) with no fork and no gap;
//! serials, certified keys and used payloads are unique by constraint; CRL numbers come from a
//! sequence; a revocation is announced with `pg_notify` in its own transaction.
//!
//! It must never decide policy, never hold key material, never write a password or an IIN into
//! a log or an error text, and never let a database failure panic.

mod audit;
mod audit_tree;
mod certs;
mod copy;
mod feed;
mod migrate;
mod outbox;
mod pool;
mod publication;
mod registration;
mod seed;
mod snapshot;
mod traits;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};

use nuc_store::StoreError;

pub use audit::GENESIS_HASH;
pub use copy::{SQLITE_SCHEMA_VERSION, copy_from_sqlite};
pub use migrate::{KNOWN as SCHEMA_VERSION, stored_version};
pub use seed::ServerActivity;
pub use snapshot::{ExportedSnapshot, Facts, export_snapshot, facts, user_tables};

/// First key of every advisory lock this store takes ("NUC"), so that they cannot collide with
/// another application's locks on the same database.
pub(crate) const LOCK_CLASS: i32 = 0x004E_5543;
/// Second key: every write transaction (the audit chain's order).
pub(crate) const LOCK_WRITE: i32 = 1;
/// Second key: the right to publish CRLs (a session lock).
pub(crate) const LOCK_PUBLISHER: i32 = 2;
/// Second key: running the migrations.
pub(crate) const LOCK_MIGRATE: i32 = 3;

/// The channel of status changes (`pg_notify`).
pub(crate) const STATUS_CHANNEL: &str = "nuc_status";

/// How to reach the database, beyond its URL.
#[derive(Clone)]
pub struct PgOptions {
    /// The password of the URL's user; the URL itself never carries one. The caller resolves
    /// it from the environment or a file.
    pub password: Option<String>,
    /// A PEM file of the CA certificates that the server's certificate must chain to. When
    /// set, TLS is required and the server's certificate and host name are verified; without
    /// it, `sslmode=require` encrypts without verifying (as libpq does).
    pub tls_ca_file: Option<PathBuf>,
    /// Connections kept for reads (the writer, the feed and the lease have their own).
    pub pool_size: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// A hot standby of the same database (URL without password; same user, password and TLS
    /// CA file) for the reads that may lag: the latest CRLs with their bytes. Its connections
    /// come from a pool of their own, of `pool_size`, made on first use, so a standby that is
    /// down does not stop the store from opening.
    pub read_url: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            password: None,
            tls_ca_file: None,
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            read_url: None,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_url", &self.read_url)
            .finish()
    }
}

/// What went wrong inside this crate: PostgreSQL's error, or a refusal of the store. Crosses
/// the crate's boundary only as a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("{0}")]
    Pg(#[from] postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pg(e) => classify(&e),
            DbError::Store(e) => e,
        }
    }
}

/// SQLSTATEs that say the server cannot be used right now: the connection failed (class 08),
/// the server is shutting down or starting (57P01–57P03), too many connections (53300).
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// Whether the error says the connection is unusable (so that it is replaced).
pub(crate) fn is_connection_error(e: &postgres::Error) -> bool {
    matches!(classify(e), StoreError::Unavailable(_))
}

/// The error's text with its causes, never with a parameter's value (the server's `DETAIL`,
/// which may quote a row, is left out).
fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// PostgreSQL's error as the traits' error: `Unavailable` for what a retry may cure once the
/// database is back, `Database` naming authentication for wrong credentials.
pub(crate) fn classify(e: &postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let text = format!("{} (SQLSTATE {code})", db.message());
        return if unavailable_state(code) {
            StoreError::Unavailable(text)
        } else if code == "28P01" || code == "28000" {
            StoreError::Database(format!(
                "authentication to the database failed: {text}; check the store's user and password"
            ))
        } else {
            StoreError::Database(text)
        };
    }
    let text = describe(e);
    if e.is_closed()
        || [
            "error communicating with the server",
            "error connecting to server",
            "timeout waiting for server",
        ]
        .iter()
        .any(|p| text.starts_with(p))
    {
        StoreError::Unavailable(text)
    } else if text.contains("password missing") {
        StoreError::Database(
            "authentication to the database failed: the server asks for a password and the store was given none"
                .into(),
        )
    } else if text.starts_with("authentication error") {
        StoreError::Database(format!("authentication to the database failed: {text}"))
    } else {
        StoreError::Database(text)
    }
}

/// Prepared statements of one connection, by their text.
pub(crate) type Cache = HashMap<String, Statement>;

/// A connection (or a transaction on it) with its statement cache: every statement is parsed
/// once per connection.
pub(crate) struct Sql<'a, C: GenericClient> {
    pub(crate) c: &'a mut C,
    pub(crate) cache: &'a mut Cache,
    /// The audit chain's head, known only inside the writer's transaction (read there once,
    /// under the write lock, and carried from change to change); `None` everywhere else, where
    /// appending to the chain is refused.
    pub(crate) head: Option<audit::Head>,
}

impl<C: GenericClient> Sql<'_, C> {
    fn stmt(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql)?;
        self.cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DbError> {
        let s = self.stmt(sql)?;
        Ok(self.c.execute(&s, params)?)
    }

    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let s = self.stmt(sql)?;
        Ok(self.c.query(&s, params)?)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        let s = self.stmt(sql)?;
        Ok(self.c.query_opt(&s, params)?)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        let s = self.stmt(sql)?;
        Ok(self.c.query_one(&s, params)?)
    }

    /// Statements without parameters, not cached (savepoints, locks).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.c.batch_execute(sql)?)
    }
}

/// A stored spelling read back as its domain enum; an unknown one is [`StoreError::Corrupt`],
/// never a silent default.
pub(crate) fn spelled<T>(
    row: &Row,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> Result<T, DbError> {
    spelled_opt(row, idx, parse)?.ok_or_else(|| {
        DbError::Store(StoreError::Corrupt(format!(
            "column {} is NULL where a value is required",
            row.columns()[idx].name()
        )))
    })
}

/// Like [`spelled`], for a nullable column.
pub(crate) fn spelled_opt<T>(
    row: &Row,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, DbError> {
    let text: Option<String> = row.try_get(idx)?;
    text.map(|t| {
        parse(&t).ok_or_else(|| {
            DbError::Store(StoreError::Corrupt(format!(
                "column {} holds unknown value {t:?}",
                row.columns()[idx].name()
            )))
        })
    })
    .transpose()
}

/// A stored CRLReason code read back as its reason.
pub(crate) fn reason(row: &Row, idx: usize) -> Result<nuc_core::RevocationReason, DbError> {
    reason_of(row.try_get(idx)?)
}

/// The reason of a stored CRLReason code; a code RFC 5280 does not know is corrupt data.
pub(crate) fn reason_of(code: i64) -> Result<nuc_core::RevocationReason, DbError> {
    nuc_core::RevocationReason::from_code(code).ok_or_else(|| {
        DbError::Store(StoreError::Corrupt(format!(
            "{code} is not an RFC 5280 CRLReason"
        )))
    })
}

/// Runs `f`, which waits on the database through rust-postgres' blocking client, where that
/// client may run: the client drives its connection with a runtime of its own, which cannot
/// start on a thread already running an async runtime (the server's handlers, a command's
/// `block_on`). On a worker of a multi-threaded runtime the worker is handed over for the
/// time of the call (`block_in_place`); elsewhere outside any runtime, `f` runs as it is. Inside
/// a single-threaded runtime it is refused with an error instead of the client's panic.
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> Result<T, DbError>) -> Result<T, DbError> {
    match tokio::runtime::Handle::try_current() {
        Err(_) => f(),
        Ok(h) => match h.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => {
                Err(DbError::Store(StoreError::Database(
                    "the PostgreSQL store was called inside a single-threaded async runtime; \
                     call it from a multi-threaded runtime or a blocking thread"
                        .into(),
                )))
            }
            _ => tokio::task::block_in_place(f),
        },
    }
}

/// Drops connections where their client may close them: a client closes its connection
/// through a runtime of its own, which cannot start on a thread running an async runtime (a
/// store dropped at the end of `nuc serve`'s `block_on`), so there they are closed on a thread
/// of their own.
pub(crate) fn drop_off_runtime<T: Send + 'static>(connections: T) {
    if tokio::runtime::Handle::try_current().is_err() {
        drop(connections);
        return;
    }
    // Closing sends one message and never waits for an answer: the join is short.
    let closing = std::thread::Builder::new()
        .name("pg-close".into())
        .spawn(move || drop(connections));
    if let Ok(t) = closing {
        let _ = t.join();
    }
    // No thread could be made: the connections were dropped with the closure, unclosed
    // (the server sees them end), never with a panic.
}

/// Makes connections, all with the same settings.
pub(crate) struct Connector {
    config: postgres::Config,
    tls: postgres_openssl::MakeTlsConnector,
}

impl Connector {
    fn new(url: &str, opts: &PgOptions) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            // The URL is not repeated: it may hold what its author did not mean to show.
            StoreError::Database(format!(
                "the store URL is not a valid PostgreSQL URL: {}",
                describe(&e)
            ))
        })?;
        if config.get_password().is_some() {
            return Err(StoreError::Database(
                "the store URL carries a password: give it through the store's password setting (environment or file) instead"
                    .into(),
            ));
        }
        if let Some(p) = &opts.password {
            config.password(p);
        }
        let mut builder =
            openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
                .map_err(|e| StoreError::Database(format!("TLS to the database: {e}")))?;
        let verify = match &opts.tls_ca_file {
            Some(ca) => {
                if config.get_ssl_mode() == postgres::config::SslMode::Disable {
                    return Err(StoreError::Database(
                        "the store URL says sslmode=disable but a TLS CA file is set: remove one of them".into(),
                    ));
                }
                builder.set_ca_file(ca).map_err(|e| {
                    StoreError::Database(format!(
                        "cannot use the store's TLS CA file {}: {e}",
                        ca.display()
                    ))
                })?;
                // A CA file means the server must prove who it is: never fall back to plain.
                config.ssl_mode(postgres::config::SslMode::Require);
                true
            }
            None => {
                builder.set_verify(openssl::ssl::SslVerifyMode::NONE);
                false
            }
        };
        let mut tls = postgres_openssl::MakeTlsConnector::new(builder.build());
        if !verify {
            tls.set_callback(|c, _| {
                c.set_verify_hostname(false);
                Ok(())
            });
        }
        // A vanished server is noticed within seconds, by both sides: the client's keepalives
        // and unacknowledged-data timeout, and the server's keepalives for this session (so
        // that the publisher lease of a dead instance is freed).
        let server_side = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 -c tcp_user_timeout=10000";
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {server_side}"),
            _ => server_side.to_owned(),
        };
        config
            .options(&options)
            .connect_timeout(opts.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("nuc");
        }
        Ok(Self { config, tls })
    }

    pub(crate) fn connect(&self) -> Result<postgres::Client, DbError> {
        Ok(self.config.connect(self.tls.clone())?)
    }
}

/// How long reads stay off a standby after it failed one (so that a standby that is down does
/// not cost every read a connection attempt).
pub(crate) const STANDBY_PAUSE: Duration = Duration::from_secs(5);

/// A hot standby for the reads that may lag.
struct Standby {
    pool: pool::Pool,
    /// When it last failed a read.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Standby {
    fn usable(&self) -> bool {
        let failed_at = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed_at.is_none_or(|t| t.elapsed() >= STANDBY_PAUSE)
    }

    fn failed(&self) {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }
}

/// The service's store on PostgreSQL. Share it behind an `Arc`: reads go through a small pool,
/// every change through the group-commit writer.
pub struct PgStore {
    connector: Arc<Connector>,
    pool: pool::Pool,
    /// The standby of [`PgOptions::read_url`], when set.
    standby: Option<Standby>,
    writer: writer::Writer,
    /// Started by the first subscriber: a command that never listens (the CLI) opens no
    /// listening connection and waits for no listener thread when it ends.
    feed: std::sync::Mutex<Option<feed::Feed>>,
    lease: feed::Lease,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, runs the migrations this build knows (under an advisory lock, so instances
    /// starting together do not race; a newer schema is refused), and starts the writer and
    /// the status listener. The URL carries no password ([`PgOptions::password`]).
    pub fn open(url: &str, opts: &PgOptions) -> Result<PgStore, StoreError> {
        off_runtime(|| Self::open_here(url, opts).map_err(DbError::Store)).map_err(StoreError::from)
    }

    fn open_here(url: &str, opts: &PgOptions) -> Result<PgStore, StoreError> {
        let connector = Arc::new(Connector::new(url, opts)?);
        let standby = match &opts.read_url {
            Some(read_url) => {
                let c = Connector::new(read_url, opts).map_err(|e| {
                    StoreError::Database(format!("the standby URL (read_url): {e}"))
                })?;
                Some(Standby {
                    pool: pool::Pool::new(Arc::new(c), opts.pool_size.max(1)),
                    failed_at: std::sync::Mutex::new(None),
                })
            }
            None => None,
        };
        let mut write = connector.connect()?;
        migrate::run(&mut write)?;
        Ok(PgStore {
            pool: pool::Pool::new(connector.clone(), opts.pool_size.max(1)),
            standby,
            writer: writer::Writer::start(connector.clone(), write),
            feed: std::sync::Mutex::new(None),
            lease: feed::Lease::default(),
            connector,
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.read(|s| {
            Ok(s.query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )?
            .try_get(0)?)
        })?)
    }

    /// Whether nothing is stored yet: no CA key and no row anywhere. Only such a database may
    /// be the target of `nuc init` or of a copy.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.read(|s| Ok(s.query_one(copy::EMPTY_QUERY, &[])?.try_get(0)?))?)
    }

    /// Applies a change durably through the group-commit writer.
    pub(crate) fn write(
        &self,
        change: impl FnOnce(&mut Sql<'_, postgres::Client>) -> Result<(), DbError> + Send + 'static,
    ) -> Result<(), DbError> {
        self.writer.write(Box::new(change))
    }

    /// Like [`PgStore::write`], for a change that also computes a value.
    pub(crate) fn write_returning<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Sql<'_, postgres::Client>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        self.write(move |tx| {
            let v = change(tx)?;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            Ok(())
        })?;
        let v = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        v.ok_or(DbError::Store(StoreError::WriterStopped))
    }

    /// Runs a read on a pooled connection (see [`pool::Pool::read`]).
    pub(crate) fn read<T>(
        &self,
        f: impl FnMut(&mut Sql<'_, postgres::Client>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        off_runtime(|| self.pool.read(f))
    }

    /// Runs a read that may lag the primary: on the standby when there is one and it has not
    /// failed in the last [`STANDBY_PAUSE`], else (and when it fails now) on the primary.
    pub(crate) fn read_lagging<T>(
        &self,
        mut f: impl FnMut(&mut Sql<'_, postgres::Client>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if let Some(standby) = &self.standby
            && standby.usable()
        {
            match off_runtime(|| standby.pool.read(&mut f)) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    // Whatever the standby's trouble (down, not yet holding the schema, a
                    // query cancelled by replay), the primary can answer, and fresher.
                    tracing::warn!(
                        error = %StoreError::from(e),
                        "the standby ([store] read_url) failed a read; reading from the primary for {}s",
                        STANDBY_PAUSE.as_secs()
                    );
                    standby.failed();
                }
            }
        }
        self.read(f)
    }

    /// A round trip on a read connection and an empty change through the writer (which takes
    /// the write lock, so a writer stuck behind another instance shows here).
    pub(crate) fn ping(&self) -> Result<(), DbError> {
        self.read(|s| s.batch("SELECT 1"))?;
        self.write(|_| Ok(()))
    }
}
