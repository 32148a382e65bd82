//! Which store a benchmark runs on: the embedded SQLite file of each home, or a database of a
//! throwaway PostgreSQL cluster (crate `pg-cluster`) that the bench starts itself and stops
//! when the benchmark ends.
//!
//! This is the one place of the bench that picks a storage implementation: everything else
//! holds an `Arc<dyn ServiceStore>` (in-process) or hands `nuc` the `--store-url` and the
//! password. The password goes to children only through `NUC_STORE_PASSWORD` (what `nuc`
//! reads), never on a command line, and it is never printed. The bench must never touch a
//! PostgreSQL server it did not start.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use nuc_ca::Home;
use nuc_store::ServiceStore;
use nuc_store_postgres::{PgOptions, PgStore, ServerActivity};
use nuc_store_sqlite::SqliteStore;

/// The environment variable `nuc` (and this bench's children) read the database password from.
pub(crate) const PASSWORD_ENV: &str = "NUC_STORE_PASSWORD";

/// A storage engine the service can run on (`--engines`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// The embedded SQLite file of each home (WAL, synchronous=FULL, group commit).
    Sqlite,
    /// A PostgreSQL database shared by the instances (fsync on, synchronous_commit on), in a
    /// throwaway cluster started by the bench on a loopback port.
    Postgres,
}

impl Engine {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A PostgreSQL cluster of the bench's own: stopped (by its pid) and removed when the last
/// [`Db`] on it is dropped.
pub(crate) struct PgServer {
    cluster: pg_cluster::Cluster,
}

impl PgServer {
    /// A fresh cluster with `settings` (lines of `postgresql.conf`, `name=value`) added.
    pub(crate) fn start(settings: &[String]) -> Result<Arc<Self>> {
        let cluster = pg_cluster::Cluster::start().context(
            "starting a throwaway PostgreSQL cluster (Debian's `postgresql`, which `make deps` \
             installs; PG_BIN names another bin directory)",
        )?;
        if !settings.is_empty() {
            let conf = cluster.data_dir().join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf)
                .with_context(|| format!("reading {}", conf.display()))?;
            for s in settings {
                let Some((name, value)) = s.split_once('=') else {
                    bail!("--pg-setting {s:?}: expected NAME=VALUE");
                };
                text.push_str(&format!("\n{} = '{}'\n", name.trim(), value.trim()));
            }
            std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
            cluster
                .restart()
                .with_context(|| format!("restarting PostgreSQL with {settings:?}"))?;
            eprintln!("PostgreSQL cluster with {}", settings.join(", "));
        }
        Ok(Arc::new(Self { cluster }))
    }

    /// The cluster a benchmark on `engine` needs: one started now for PostgreSQL (with
    /// `settings`), none for SQLite.
    pub(crate) fn for_engine(engine: Engine, settings: &[String]) -> Result<Option<Arc<Self>>> {
        match engine {
            Engine::Sqlite => Ok(None),
            Engine::Postgres => Self::start(settings).map(Some),
        }
    }

    /// The postmaster's pid (its backends are its children), for CPU accounting.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.cluster.pid()
    }
}

/// Where one benchmark's records go: each home's SQLite file, or one fresh database of a
/// [`PgServer`] (every home of the benchmark shares it, as instances of one CA do).
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite,
    Postgres {
        url: String,
        password: String,
        server: Arc<PgServer>,
    },
}

impl Db {
    /// A store of `engine` for one benchmark: for PostgreSQL, database `name` (a plain
    /// identifier) created in `server`, which the caller started.
    pub(crate) fn new(engine: Engine, server: Option<&Arc<PgServer>>, name: &str) -> Result<Self> {
        match engine {
            Engine::Sqlite => Ok(Db::Sqlite),
            Engine::Postgres => {
                let server = server
                    .context("a PostgreSQL benchmark without its cluster")?
                    .clone();
                server
                    .cluster
                    .create_database(name)
                    .with_context(|| format!("creating the database {name}"))?;
                Ok(Db::Postgres {
                    url: server.cluster.url(name),
                    password: server.cluster.password().to_owned(),
                    server,
                })
            }
        }
    }

    pub(crate) fn engine(&self) -> Engine {
        match self {
            Db::Sqlite => Engine::Sqlite,
            Db::Postgres { .. } => Engine::Postgres,
        }
    }

    /// The URL (no password in it), for PostgreSQL.
    pub(crate) fn url(&self) -> Option<&str> {
        match self {
            Db::Sqlite => None,
            Db::Postgres { url, .. } => Some(url),
        }
    }

    /// The cluster, for PostgreSQL.
    pub(crate) fn server(&self) -> Option<&PgServer> {
        match self {
            Db::Sqlite => None,
            Db::Postgres { server, .. } => Some(server),
        }
    }

    /// What `nuc init` is given to make a home on this store (nothing for SQLite, the default).
    pub(crate) fn init_args(&self) -> Vec<String> {
        match self {
            Db::Sqlite => vec![],
            Db::Postgres { url, .. } => vec!["--store-url".into(), url.clone()],
        }
    }

    /// The password in the environment of a `nuc` or a child of this bench; for SQLite, none.
    pub(crate) fn env(&self, cmd: &mut Command) {
        match self {
            Db::Sqlite => cmd.env_remove(PASSWORD_ENV),
            Db::Postgres { password, .. } => cmd.env(PASSWORD_ENV, password),
        };
    }

    /// A child of this bench told to open this store: `--store-url` and the password.
    pub(crate) fn child_args(&self, cmd: &mut Command) {
        if let Some(url) = self.url() {
            cmd.arg("--store-url").arg(url);
        }
        self.env(cmd);
    }
}

/// Opens a store from a child of this bench: the PostgreSQL database at `url` (password from
/// [`PASSWORD_ENV`]), else the SQLite file at `sqlite`.
pub(crate) fn open_at(url: Option<&str>, sqlite: &Path) -> Result<Arc<dyn ServiceStore>> {
    match url {
        Some(url) => {
            let opts = PgOptions {
                password: std::env::var(PASSWORD_ENV).ok(),
                ..PgOptions::default()
            };
            Ok(Arc::new(
                PgStore::open(url, &opts).with_context(|| format!("opening {url}"))?,
            ))
        }
        None => Ok(Arc::new(SqliteStore::open(sqlite).with_context(|| {
            format!("opening the database {}", sqlite.display())
        })?)),
    }
}

/// Opens the store of `home` from a child of this bench (see [`open_at`]).
pub(crate) fn open(home: &Home, url: Option<&str>) -> Result<Arc<dyn ServiceStore>> {
    open_at(url, &home.db_path())
}

/// Seeds the store of `home` with the certificates of `seed` (`nuc_store::seed`: no audit
/// records, `der` for each one's DER), through a connection of its own; `progress` hears the
/// rows written so far. Benchmark homes only.
pub(crate) fn seed_certificates(
    home: &Home,
    url: Option<&str>,
    seed: &nuc_store::seed::CertificateSeed,
    der: &[u8],
    progress: &mut dyn FnMut(usize),
) -> Result<()> {
    match url {
        Some(url) => {
            let opts = PgOptions {
                password: std::env::var(PASSWORD_ENV).ok(),
                ..PgOptions::default()
            };
            PgStore::open(url, &opts)
                .with_context(|| format!("opening {url}"))?
                .seed_certificates_unaudited(seed, der, progress)
                .context("seeding certificates")
        }
        None => SqliteStore::open(&home.db_path())
            .with_context(|| format!("opening the database {}", home.db_path().display()))?
            .seed_certificates_unaudited(seed, der, progress)
            .context("seeding certificates"),
    }
}

/// The PostgreSQL server's counters for the store at `url` (`None` on SQLite), read once its
/// statistics have caught up with the work just done.
pub(crate) fn server_activity(url: Option<&str>) -> Result<Option<ServerActivity>> {
    let Some(url) = url else {
        return Ok(None);
    };
    // A backend that goes idle reports what it has left of its statistics 10 s later
    // (PGSTAT_IDLE_INTERVAL); the store's connections stay open between the runs.
    std::thread::sleep(std::time::Duration::from_secs(11));
    let opts = PgOptions {
        password: std::env::var(PASSWORD_ENV).ok(),
        ..PgOptions::default()
    };
    let store = PgStore::open(url, &opts).with_context(|| format!("opening {url}"))?;
    Ok(Some(
        store
            .server_activity()
            .context("reading the server's statistics")?,
    ))
}

/// What the PostgreSQL server did for the `n` issuances since `before`, as one line's text
/// (nothing on SQLite).
pub(crate) fn activity_since(
    url: Option<&str>,
    before: Option<ServerActivity>,
    n: usize,
) -> Result<Option<String>> {
    Ok(match (before, server_activity(url)?) {
        (Some(b), Some(a)) => Some(activity_text(&b, &a, n)),
        _ => None,
    })
}

/// What `after - before` cost per issuance, as one line's text.
fn activity_text(before: &ServerActivity, after: &ServerActivity, n: usize) -> String {
    let per = |a: i64, b: i64| (a - b) as f64 / n as f64;
    format!(
        "per issuance: WAL {:.1} kB with {:.2} full-page images, blocks read from the OS {:.2}, \
         found in shared buffers {:.1}",
        per(after.wal_bytes, before.wal_bytes) / 1e3,
        per(after.wal_full_page_images, before.wal_full_page_images),
        per(after.blocks_read, before.blocks_read),
        per(after.blocks_hit, before.blocks_hit),
    )
}
