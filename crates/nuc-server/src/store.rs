//! Which store a home uses, and opening it: the embedded SQLite file of the home, or the
//! PostgreSQL database that several instances share (`[store]` in `nuc.toml`).
//!
//! This is the one place where the service picks a storage implementation; everything past it
//! holds an `Arc<dyn ServiceStore>` and hands each role the traits it uses. The database
//! password is read here, from `NUC_STORE_PASSWORD` or `[store] password_file`, and never goes
//! into a URL, an argument or a log line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nuc_store::{ServiceStore, StoreError};
use nuc_store_postgres::{PgOptions, PgStore};
use nuc_store_sqlite::SqliteStore;

use crate::config::{SQLITE, StoreConfig};

/// The store of a running instance, shared by its roles.
pub type Store = Arc<dyn ServiceStore>;

/// The environment variable holding the database password (before `[store] password_file`).
pub const PASSWORD_ENV: &str = "NUC_STORE_PASSWORD";

/// Why the store could not be opened; each names the setting or the database's answer.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("[store] {setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    #[error("{0} has no CA: run `nuc init` first")]
    NoCa(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

fn setting(setting: &'static str, reason: impl Into<String>) -> OpenStoreError {
    OpenStoreError::Setting {
        setting,
        reason: reason.into(),
    }
}

/// Where a home's records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded database file of the home.
    Sqlite(PathBuf),
    /// A PostgreSQL database (URL without password), and a standby for lagging reads.
    Postgres {
        url: String,
        read_url: Option<String>,
    },
}

impl Location {
    /// Reads `[store]` of the home at `dir`, refusing a URL that is neither `sqlite` nor a
    /// PostgreSQL URL, and one that carries a password.
    pub fn of(dir: &Path, cfg: &StoreConfig) -> Result<Self, OpenStoreError> {
        if cfg.url == SQLITE {
            if cfg.read_url.is_some() {
                return Err(setting(
                    "read_url",
                    "a standby is for a PostgreSQL store; SQLite has none",
                ));
            }
            return Ok(Self::Sqlite(dir.join("nuc.db")));
        }
        check_postgres_url("url", &cfg.url)?;
        if let Some(r) = &cfg.read_url {
            check_postgres_url("read_url", r)?;
        }
        Ok(Self::Postgres {
            url: cfg.url.clone(),
            read_url: cfg.read_url.clone(),
        })
    }

    /// For messages: the file, or the database without its credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => p.display().to_string(),
            Self::Postgres { url, .. } => url.clone(),
        }
    }
}

/// A PostgreSQL URL we accept: `postgres://` or `postgresql://`, no password in it.
pub fn check_postgres_url(name: &'static str, url: &str) -> Result<(), OpenStoreError> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Err(setting(
            name,
            "must be `sqlite` or a URL starting with postgres:// (e.g. postgres://nuc@db.example:5432/nuc?sslmode=require)",
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(setting(
            name,
            format!("must not carry a password: put it in {PASSWORD_ENV} or [store] password_file"),
        ));
    }
    if url.contains("password=") {
        return Err(setting(
            name,
            format!("must not carry a password: put it in {PASSWORD_ENV} or [store] password_file"),
        ));
    }
    Ok(())
}

/// The database password: `NUC_STORE_PASSWORD`, else the first line of `[store]
/// password_file` (which must be readable by its owner only), else none.
pub fn password(dir: &Path, cfg: &StoreConfig) -> Result<Option<String>, OpenStoreError> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(Some(p));
    }
    let Some(file) = &cfg.password_file else {
        return Ok(None);
    };
    let path = dir.join(file);
    let meta = std::fs::metadata(&path)
        .map_err(|e| setting("password_file", format!("{}: {e}", path.display())))?;
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(setting(
            "password_file",
            format!(
                "{} is readable by others (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| setting("password_file", format!("{}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        return Err(setting(
            "password_file",
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Some(line))
}

/// How to reach PostgreSQL, from `[store]` and the environment.
fn pg_options(dir: &Path, cfg: &StoreConfig) -> Result<PgOptions, OpenStoreError> {
    Ok(PgOptions {
        password: password(dir, cfg)?,
        tls_ca_file: cfg.tls_ca.as_ref().map(|p| dir.join(p)),
        pool_size: cfg.pool_size,
        connect_timeout: std::time::Duration::from_secs(cfg.connect_timeout_secs),
        // Only the service's own database has a standby: set by `connect` from its location.
        read_url: None,
    })
}

/// Opens the store of an initialised home: refuses a home whose store holds no CA.
pub fn open(dir: &Path, cfg: &StoreConfig) -> Result<Store, OpenStoreError> {
    let location = Location::of(dir, cfg)?;
    if let Location::Sqlite(path) = &location
        && !path.exists()
    {
        return Err(OpenStoreError::NoCa(dir.display().to_string()));
    }
    connect(dir, cfg, &location)
}

/// Opens (creating the schema if needed) the store at `location`, whatever it holds.
pub fn connect(
    dir: &Path,
    cfg: &StoreConfig,
    location: &Location,
) -> Result<Store, OpenStoreError> {
    match location {
        Location::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
        Location::Postgres { url, read_url } => {
            let opts = PgOptions {
                read_url: read_url.clone(),
                ..pg_options(dir, cfg)?
            };
            Ok(Arc::new(PgStore::open(url, &opts)?))
        }
    }
}

/// `nuc store copy`: the SQLite store of the home at `dir` into the empty PostgreSQL database
/// at `to`, in one transaction (an interrupted copy leaves the target empty, so it can simply
/// be run again). Prints what was copied and what to change in `nuc.toml`.
pub fn copy(dir: &Path, to: &str) -> Result<(), OpenStoreError> {
    check_postgres_url("url", to)?;
    let config = crate::config::Config::open(dir).map_err(|e| setting("url", e.to_string()))?;
    let Location::Sqlite(path) = Location::of(dir, &config.store)? else {
        return Err(setting(
            "url",
            "this home already keeps its records in PostgreSQL; `nuc store copy` moves a SQLite home",
        ));
    };
    if !path.exists() {
        return Err(OpenStoreError::NoCa(dir.display().to_string()));
    }
    // Opening it first brings an older file to the schema the copy reads.
    drop(SqliteStore::open(&path)?);
    let target = PgStore::open(to, &pg_options(dir, &config.store)?)?;
    let started = std::time::Instant::now();
    let copied = nuc_store_postgres::copy_from_sqlite(&path, &target)?;
    let total: u64 = copied.iter().map(|(_, n)| n).sum();
    for (table, rows) in &copied {
        println!("{table}: {rows} rows");
    }
    println!(
        "copied {total} rows from {} to {to} in {} ms; to serve from it, set in {}:\n[store]\nurl = \"{to}\"",
        path.display(),
        started.elapsed().as_millis(),
        nuc_ca::Home::config_path(dir).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_password_are_refused_and_named() {
        for url in [
            "postgres://nuc:secret@127.0.0.1/nuc",
            "postgresql://nuc:secret@db/nuc?sslmode=require",
            "postgres://nuc@db/nuc?password=secret",
        ] {
            let e = check_postgres_url("url", url).unwrap_err().to_string();
            assert!(e.contains("[store] url") && e.contains("password"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        for url in ["mysql://x", "nuc.db", "postgres:/x"] {
            assert!(check_postgres_url("url", url).is_err(), "{url}");
        }
        for url in [
            "postgres://nuc@127.0.0.1:5432/nuc",
            "postgresql://nuc@db.example/nuc?sslmode=require",
            "postgres://127.0.0.1/nuc",
        ] {
            check_postgres_url("url", url).unwrap();
        }
    }

    #[test]
    fn the_default_is_the_homes_sqlite_file() {
        let dir = Path::new("home");
        assert_eq!(
            Location::of(dir, &StoreConfig::default()).unwrap(),
            Location::Sqlite(dir.join("nuc.db"))
        );
        let with_standby = StoreConfig {
            read_url: Some("postgres://nuc@standby/nuc".into()),
            ..StoreConfig::default()
        };
        assert!(Location::of(dir, &with_standby).is_err());
    }
}
