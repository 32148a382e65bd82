//! The database part of a backup of a home whose store is PostgreSQL: Debian's `pg_dump` reads
//! one exported snapshot into a custom-format dump (the archive's [`PG_DUMP`] member), and
//! `pg_restore` loads it into an empty database in one transaction.
//!
//! This module owns finding those tools, the connection settings they get and reading their
//! failures. It reaches the database as the service does (the URL of `[store] url`, the
//! password from `NUC_STORE_PASSWORD` or `[store] password_file`, `[store] tls_ca`), and it must
//! never put the password on a command line, in an error text or a log line: the tools get it
//! in their environment (`PGPASSWORD`), visible to the same user only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nuc_store_postgres::{Facts, PgOptions};

use super::BackupError;
use crate::config::StoreConfig;
use crate::store::PASSWORD_ENV;

/// The dump's name in the archive.
pub const PG_DUMP: &str = "db/nuc.pgdump";

/// Where Debian installs the PostgreSQL client tools, one directory per major version.
const DEBIAN_PG: &str = "/usr/lib/postgresql";

/// `tool` (`pg_dump`, `pg_restore`): the newest Debian one under `/usr/lib/postgresql/*/bin`
/// (a newer client reads every older server), else the one on `PATH`.
pub(super) fn find(tool: &'static str) -> Result<PathBuf, BackupError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_PG)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin").join(tool);
            bin.is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or(BackupError::PgTool {
            tool,
            reason: format!(
                "not found (neither {DEBIAN_PG}/*/bin/{tool} nor on PATH): install Debian's \
                 postgresql-client"
            ),
        })
}

/// How the tools and our own connection reach one database.
pub(super) struct Target {
    /// As configured (no password in it): for messages and our own connection.
    pub url: String,
    /// For libpq: the URL with the TLS settings of `[store] tls_ca` added.
    conninfo: String,
    password: Option<String>,
    tls_ca: Option<PathBuf>,
    connect_timeout: Duration,
}

impl Target {
    /// The home's own database, as the service reaches it.
    pub(super) fn of_home(home: &Path, cfg: &StoreConfig, url: &str) -> Result<Self, BackupError> {
        let password = crate::store::password(home, cfg).map_err(|e| BackupError::Config {
            path: home.join(super::CONFIG),
            reason: e.to_string(),
        })?;
        Self::new(
            url,
            password,
            cfg.tls_ca.as_ref().map(|p| home.join(p)),
            Duration::from_secs(cfg.connect_timeout_secs),
        )
    }

    /// A database named on the command line (`--store-url`): its password from
    /// `NUC_STORE_PASSWORD`, TLS as its URL says.
    pub(super) fn named(url: &str) -> Result<Self, BackupError> {
        crate::store::check_postgres_url("url", url).map_err(|e| BackupError::StoreUrl {
            reason: e.to_string(),
        })?;
        Self::new(
            url,
            std::env::var(PASSWORD_ENV).ok(),
            None,
            Duration::from_secs(10),
        )
    }

    fn new(
        url: &str,
        password: Option<String>,
        tls_ca: Option<PathBuf>,
        connect_timeout: Duration,
    ) -> Result<Self, BackupError> {
        let conninfo = match &tls_ca {
            None => url.to_owned(),
            Some(ca) => verify_full(url, ca)?,
        };
        Ok(Self {
            url: url.to_owned(),
            conninfo,
            password,
            tls_ca,
            connect_timeout,
        })
    }

    /// The options of our own connection (the snapshot, the checks).
    pub(super) fn options(&self) -> PgOptions {
        PgOptions {
            password: self.password.clone(),
            tls_ca_file: self.tls_ca.clone(),
            pool_size: 1,
            connect_timeout: self.connect_timeout,
            read_url: None,
        }
    }

    /// A failure of our own connection, naming the database.
    pub(super) fn failed(&self, e: nuc_store::StoreError) -> BackupError {
        BackupError::Database {
            url: self.url.clone(),
            reason: e.to_string(),
        }
    }

    /// `bin` with the connection in its environment and nothing inherited that could point
    /// it elsewhere (the URL alone says where).
    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        for var in [
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATABASE",
            "PGUSER",
            "PGPASSWORD",
            "PGSSLMODE",
            "PGSSLROOTCERT",
        ] {
            cmd.env_remove(var);
        }
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd.env(
            "PGCONNECT_TIMEOUT",
            self.connect_timeout.as_secs().max(2).to_string(),
        )
        .env("PGAPPNAME", "nuc-backup")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        cmd
    }

    /// Runs `bin` with `args` and the connection, and reads its failure.
    fn run(
        &self,
        tool: &'static str,
        bin: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<(), BackupError> {
        let mut cmd = self.command(bin);
        cmd.args(args).arg(format!("--dbname={}", self.conninfo));
        let out = cmd.output().map_err(|e| BackupError::PgTool {
            tool,
            reason: format!("{}: {e}", bin.display()),
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(BackupError::PgToolFailed {
            tool,
            url: self.url.clone(),
            reason: failure(&String::from_utf8_lossy(&out.stderr), out.status),
        })
    }
}

/// The URL with `sslmode=verify-full` and `sslrootcert` = `ca`: what the service does with
/// `[store] tls_ca` (TLS required, the server's certificate and host name verified).
fn verify_full(url: &str, ca: &Path) -> Result<String, BackupError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        match key {
            "sslmode" if value == "disable" => {
                return Err(BackupError::StoreUrl {
                    reason: "[store] url says sslmode=disable but [store] tls_ca is set: remove \
                             one of them"
                        .into(),
                });
            }
            "sslmode" | "sslrootcert" => {}
            _ => params.push(p.to_owned()),
        }
    }
    params.push("sslmode=verify-full".into());
    params.push(format!(
        "sslrootcert={}",
        percent_encode(&ca.to_string_lossy())
    ));
    Ok(format!("{base}?{}", params.join("&")))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A tool's failure in a few words: the cause first when it is one we know, then what the
/// tool said (its last lines; it never prints the password).
fn failure(stderr: &str, status: std::process::ExitStatus) -> String {
    let said: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let said = said[said.len().saturating_sub(3)..].join("; ");
    let lower = stderr.to_lowercase();
    let cause = if lower.contains("password authentication failed")
        || lower.contains("no password supplied")
        || lower.contains("authentication failed")
    {
        format!(
            "the database refused the credentials (the password comes from {PASSWORD_ENV} or \
             [store] password_file): "
        )
    } else if lower.contains("connection refused")
        || lower.contains("could not connect")
        || lower.contains("could not translate host name")
        || lower.contains("timeout expired")
        || lower.contains("no route to host")
    {
        "the database is unreachable: ".to_owned()
    } else {
        String::new()
    };
    if said.is_empty() {
        format!("{cause}exited with {status}")
    } else {
        format!("{cause}{said}")
    }
}

/// Dumps the home's database into `dir`: one snapshot exported on our connection, read by
/// `pg_dump --snapshot` while that transaction stays open, and the facts read in the same
/// snapshot. Returns the dump's path, its facts and when the snapshot was taken.
pub(super) fn dump(target: &Target, dir: &Path) -> Result<(PathBuf, Facts, i64), BackupError> {
    let bin = find("pg_dump")?;
    let snapshot = nuc_store_postgres::export_snapshot(&target.url, &target.options())
        .map_err(|e| target.failed(e))?;
    let taken = nuc_core::time::now_unix();
    let file = dir.join("nuc.pgdump");
    let snapshot_arg = format!("--snapshot={}", snapshot.id());
    target.run(
        "pg_dump",
        &bin,
        &[
            "--format=custom".as_ref(),
            "--no-owner".as_ref(),
            "--no-privileges".as_ref(),
            "--no-password".as_ref(),
            snapshot_arg.as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
        ],
    )?;
    let facts = snapshot.facts();
    snapshot.end().map_err(|e| target.failed(e))?;
    Ok((file, facts, taken))
}

/// Refuses a restore target that holds any table (ours or anyone's): the restore goes only
/// into an empty database, so that it adds nothing to what is there and overwrites nothing.
pub(super) fn check_empty(target: &Target) -> Result<(), BackupError> {
    let tables = nuc_store_postgres::user_tables(&target.url, &target.options())
        .map_err(|e| target.failed(e))?;
    if tables.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    Err(BackupError::TargetNotEmpty {
        url: target.url.clone(),
        tables: format!(
            "{} table(s): {}{}",
            tables.len(),
            shown.join(", "),
            if tables.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ),
    })
}

/// Loads `dump` into the (checked empty) database in one transaction: on any error nothing of
/// it stays. Returns the restored database's facts.
pub(super) fn restore(target: &Target, bin: &Path, dump: &Path) -> Result<Facts, BackupError> {
    target.run(
        "pg_restore",
        bin,
        &[
            "--no-owner".as_ref(),
            "--no-privileges".as_ref(),
            "--exit-on-error".as_ref(),
            "--single-transaction".as_ref(),
            "--no-password".as_ref(),
            dump.as_os_str(),
        ],
    )?;
    nuc_store_postgres::facts(&target.url, &target.options()).map_err(|e| target.failed(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_ca_makes_the_tools_verify_the_server_and_its_name() {
        let url = verify_full(
            "postgres://nuc@db.example:5432/nuc?sslmode=require&application_name=x",
            Path::new("/etc/nuc/db ca.pem"),
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://nuc@db.example:5432/nuc?application_name=x&sslmode=verify-full&sslrootcert=/etc/nuc/db%20ca.pem"
        );
        let plain = verify_full("postgres://nuc@db/nuc", Path::new("ca.pem")).unwrap();
        assert_eq!(
            plain,
            "postgres://nuc@db/nuc?sslmode=verify-full&sslrootcert=ca.pem"
        );
        let e = verify_full("postgres://nuc@db/nuc?sslmode=disable", Path::new("ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode=disable") && e.contains("tls_ca"), "{e}");
    }

    #[test]
    fn a_tool_failure_names_its_cause() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(1 << 8);
        let refused = failure(
            "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"nuc\"\n",
            status,
        );
        assert!(
            refused.starts_with("the database refused the credentials"),
            "{refused}"
        );
        let down = failure(
            "pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n",
            status,
        );
        assert!(down.starts_with("the database is unreachable"), "{down}");
        assert!(down.contains("port 1 failed"), "{down}");
        assert!(failure("", status).contains("exited with"));
    }
}
