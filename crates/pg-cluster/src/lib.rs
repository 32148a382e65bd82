//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a temporary directory,
//! `postgres` started through `pg_ctl` on a free loopback TCP port, stopped by its pid and
//! removed when the [`Cluster`] is dropped.
//!
//! Credentials are really checked (`--auth=scram-sha-256`, the superuser's password from a
//! file, never on a command line) and `fsync` stays on, so a test sees what a real server
//! does. Only `initdb` runs with `--no-sync`: the cluster's initial files are thrown away with
//! it, so flushing them would only slow every test down.
//!
//! A cluster may also be made as a hot standby of another ([`Cluster::standby_of`]): a base
//! backup streaming from it, optionally its synchronous standby, promoted on demand
//! ([`Cluster::promote`]), so that tests can take a primary away and fail over.
//!
//! This crate is test support: it must never be a dependency of the service itself, and it
//! must never touch a cluster it did not create (it stops only the pid it started).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";

/// Why the cluster could not be made or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin and PG_BIN unset): install Debian's postgresql: make deps"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("postmaster.pid of the cluster is unreadable: {0}")]
    Pid(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// A running throwaway cluster. Dropping it stops the server (by pid) and removes its files.
pub struct Cluster {
    bin: PathBuf,
    /// Holds the data directory, the socket directory, the log and the password file.
    dir: tempfile::TempDir,
    password: String,
    port: u16,
    /// The unprivileged user the server runs as when this process is root.
    run_as: Option<String>,
    /// The postmaster's pid; changes on [`Cluster::restart`].
    pid: Mutex<Option<u32>>,
    /// The name a standby gives the primary (its `application_name`): what
    /// `synchronous_standby_names` and `pg_stat_replication` call it.
    name: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir())
            .finish_non_exhaustive()
    }
}

/// Where the PostgreSQL binaries are: `PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(ClusterError::NotInstalled)
        };
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| ClusterError::NotInstalled)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(ClusterError::NotInstalled)
}

fn run(mut cmd: Command, what: &str) -> Result<String, ClusterError> {
    let out = cmd.output().map_err(io(format!("cannot run {what}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(ClusterError::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            output: text.trim().to_owned(),
        })
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a loopback port"))?;
    Ok(l.local_addr().map_err(io("read a loopback port"))?.port())
}

/// Whether `pid` is a live process (a zombie waiting for its parent counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

impl Cluster {
    /// Makes and starts a fresh cluster. Run as root, the server runs as `nobody` (initdb and
    /// postgres refuse root), its directory handed over to that user.
    pub fn start() -> Result<Cluster, ClusterError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("pg-cluster-")
            .tempdir()
            .map_err(io("create the cluster's temporary directory"))?;
        let run_as = rustix::process::geteuid()
            .is_root()
            .then(|| "nobody".to_owned());
        let mut secret = [0u8; 18];
        getrandom::fill(&mut secret).map_err(|e| ClusterError::Io {
            what: "draw the superuser's password".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let password = hex::encode(secret);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(io("write the password file"))?;
        let mut cluster = Cluster {
            bin,
            dir,
            password,
            port: 0,
            run_as,
            pid: Mutex::new(None),
            name: String::new(),
        };
        if let Some(user) = cluster.run_as.clone() {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(&user).arg(cluster.dir.path());
            run(chown, "chown of the cluster's directory")?;
        }
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "--no-sync"])
            .args(["--encoding=UTF8", "--locale=C", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(initdb, "initdb")?;
        let _ = std::fs::remove_file(&pwfile);
        // A port found free may be taken before the server binds it: try a few.
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::NotInstalled))
    }

    /// Makes a hot standby of `primary` and starts it on a port of its own: a base backup
    /// (`pg_basebackup -R -X stream`, so it streams from the primary from then on) in a new
    /// temporary directory. The superuser and its password are the primary's.
    ///
    /// With `synchronous`, the primary is told to wait for it before it acknowledges any
    /// commit: `synchronous_standby_names` names it and `synchronous_commit = remote_apply`
    /// (not `on`, which waits only until the standby has *flushed* the WAL: a read on the
    /// standby right after an acknowledged commit could still miss it; with `remote_apply` the
    /// commit is visible there before the client hears of it). Returns once
    /// `pg_stat_replication` on the primary shows it streaming and `sync`.
    ///
    /// The settings go to the primary's `postgresql.auto.conf` after the backup was taken, so
    /// the standby does not inherit them: promoted, it does not wait for a standby of its own.
    /// While a synchronous standby is down, the primary's commits wait for it.
    pub fn standby_of(primary: &Cluster, synchronous: bool) -> Result<Cluster, ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("pg-standby-")
            .tempdir()
            .map_err(io("create the standby's temporary directory"))?;
        let mut standby = Cluster {
            bin: primary.bin.clone(),
            dir,
            password: primary.password.clone(),
            port: 0,
            run_as: primary.run_as.clone(),
            pid: Mutex::new(None),
            name: String::new(),
        };
        if let Some(user) = standby.run_as.clone() {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(&user).arg(standby.dir.path());
            run(chown, "chown of the standby's directory")?;
        }
        let mut backup = standby.command("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", SUPERUSER, "--no-password", "-D"])
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .env("PGPASSWORD", &primary.password)
            .env_remove("PGSERVICE");
        run(backup, "pg_basebackup")?;
        let mut last = None;
        for _ in 0..5 {
            standby.port = free_port()?;
            standby.name = format!("standby_{}", standby.port);
            // The walreceiver's application_name is the cluster_name when primary_conninfo
            // (written by -R) names none.
            let conf = standby.data_dir().join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).map_err(io("read postgresql.conf"))?;
            text.push_str(&format!(
                "\ncluster_name = '{}'\nhot_standby = on\n",
                standby.name
            ));
            std::fs::write(&conf, text).map_err(io("write postgresql.conf"))?;
            match standby.pg_ctl_start() {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        if synchronous {
            // One statement per call: ALTER SYSTEM refuses to run inside a transaction block.
            primary.psql(
                "postgres",
                &format!(
                    "ALTER SYSTEM SET synchronous_standby_names = '\"{}\"'",
                    standby.name
                ),
            )?;
            primary.psql(
                "postgres",
                "ALTER SYSTEM SET synchronous_commit = 'remote_apply'",
            )?;
            primary.psql("postgres", "SELECT pg_reload_conf()")?;
        }
        let want = if synchronous { "sync" } else { "async" };
        let query = format!(
            "SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = '{}'",
            standby.name
        );
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = primary.psql("postgres", &query)?;
            if seen.trim() == format!("streaming {want}") {
                return Ok(standby);
            }
            if Instant::now() >= until {
                return Err(ClusterError::Command {
                    command: "wait for the standby to stream".into(),
                    status: format!("pg_stat_replication says {:?}", seen.trim()),
                    output: standby.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Promotes this standby (`pg_ctl promote`) and returns once it accepts writes.
    pub fn promote(&self) -> Result<(), ClusterError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "promote"]);
        run(cmd, "pg_ctl promote")?;
        // A transaction id is assigned only where writes are allowed.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            match self.psql("postgres", "SELECT txid_current()") {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The name this standby goes by on its primary (empty for a cluster made by
    /// [`Cluster::start`]).
    pub fn standby_name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` (one statement, or several run as one transaction) with `psql` in database
    /// `db` as the superuser, over TCP; returns what it printed (unaligned, tuples only: one row a line, columns separated by `|`).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "--no-password", "-d", db])
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", &self.password)
            .env_remove("PGSERVICE");
        run(cmd, "psql")
    }

    /// A command of the PostgreSQL binaries, as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(cmd, "pg_ctl start").map_err(|e| match e {
            ClusterError::Command {
                command,
                status,
                output,
            } => ClusterError::Command {
                command,
                status,
                output: format!("{output}\nserver log:\n{}", self.log_tail()),
            },
            e => e,
        })?;
        let pid = self.read_pid()?;
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        Ok(())
    }

    fn read_pid(&self) -> Result<u32, ClusterError> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .map_err(|e| ClusterError::Pid(e.to_string()))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| ClusterError::Pid("no pid on its first line".into()))
    }

    /// The last lines of the server's log (for error texts).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A URL for database `db` as the superuser, over TCP on loopback, without TLS and without
    /// the password (see [`Cluster::password`]).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates database `name` (a plain identifier).
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        let mut cmd = Command::new(self.bin.join("createdb"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "--no-password", name])
            .env("PGPASSWORD", &self.password)
            .env_remove("PGSERVICE");
        run(cmd, "createdb").map(drop)
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the cluster's unix socket (and of its log).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fast shutdown (connections are ended, nothing committed is lost); waits until the
    /// postmaster is gone.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        signal(pid, rustix::process::Signal::INT);
        if !wait_gone(pid, Duration::from_secs(30)) {
            signal(pid, rustix::process::Signal::KILL);
            wait_gone(pid, Duration::from_secs(5));
        }
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// SIGKILL of the postmaster, as a crash: its backends end on their own shortly after, and
    /// the next start recovers from the WAL.
    pub fn kill(&self) {
        if let Some(pid) = self.pid.lock().unwrap_or_else(|p| p.into_inner()).take() {
            signal(pid, rustix::process::Signal::KILL);
            wait_gone(pid, Duration::from_secs(5));
        }
    }

    /// Turns TLS on with this certificate and key (PEM) and restarts: from then on TCP
    /// connections are accepted only over TLS (`hostssl` in `pg_hba.conf`), so a client that
    /// gets in is known to have used it.
    pub fn enable_tls(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let (cert, key) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&cert, cert_pem).map_err(io("write the server certificate"))?;
        std::fs::write(&key, key_pem).map_err(io("write the server key"))?;
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io("restrict the server key"))?;
        if let Some(user) = &self.run_as {
            let mut chown = Command::new("chown");
            chown.arg(user).arg(&cert).arg(&key);
            run(chown, "chown of the server's certificate and key")?;
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(io("read postgresql.conf"))?;
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).map_err(io("write postgresql.conf"))?;
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).map_err(io("read pg_hba.conf"))?;
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, text).map_err(io("write pg_hba.conf"))?;
        self.restart()
    }

    /// Stops the server if it runs, and starts it again on the same port and data.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop()?;
        // After a kill, orphaned backends hold the old shared memory for a moment: the
        // postmaster refuses to start until they are gone.
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_checks_passwords_restarts_and_goes_away() {
        let c = Cluster::start().unwrap();
        assert!(!c.url("x").contains(c.password()));
        c.create_database("nuc").unwrap();
        let psql = |password: &str| {
            let mut cmd = Command::new(c.bin.join("psql"));
            cmd.args(["-h", "127.0.0.1", "-p", &c.port().to_string()])
                .args(["-U", SUPERUSER, "-d", "nuc", "-tAc", "SHOW fsync"])
                .env("PGPASSWORD", password);
            run(cmd, "psql")
        };
        assert_eq!(psql(c.password()).unwrap().trim(), "on");
        let refused = psql("wrong").unwrap_err().to_string();
        assert!(
            refused.contains("password authentication failed"),
            "{refused}"
        );
        let first = c.pid().unwrap();
        c.kill();
        assert!(!alive(first));
        c.restart().unwrap();
        assert_ne!(c.pid(), Some(first));
        assert_eq!(psql(c.password()).unwrap().trim(), "on");
        let (dir, pid) = (c.data_dir(), c.pid().unwrap());
        drop(c);
        assert!(!alive(pid), "the postmaster outlived its cluster");
        assert!(!dir.exists(), "the cluster's files outlived it");
    }

    #[test]
    fn a_synchronous_standby_shows_every_acknowledged_commit_and_takes_over() {
        let p = Cluster::start().unwrap();
        p.create_database("nuc").unwrap();
        p.psql("nuc", "CREATE TABLE t (v INT PRIMARY KEY)").unwrap();
        let s = Cluster::standby_of(&p, true).unwrap();
        assert_ne!(s.port(), p.port());
        assert_eq!(
            p.psql("postgres", "SHOW synchronous_commit")
                .unwrap()
                .trim(),
            "remote_apply"
        );
        let state = p
            .psql(
                "postgres",
                "SELECT application_name, state, sync_state FROM pg_stat_replication",
            )
            .unwrap();
        assert_eq!(state.trim(), format!("{}|streaming|sync", s.standby_name()));
        // Applied on the standby before the primary acknowledged it: visible there at once.
        for i in 1..=20 {
            p.psql("nuc", &format!("INSERT INTO t VALUES ({i})"))
                .unwrap();
            let seen = s.psql("nuc", "SELECT count(*) FROM t").unwrap();
            assert_eq!(seen.trim(), i.to_string(), "after commit {i}");
        }
        let refused = s.psql("nuc", "INSERT INTO t VALUES (0)").unwrap_err();
        assert!(refused.to_string().contains("read-only"), "{refused}");
        // The standby did not inherit the primary's wait for a standby.
        assert_eq!(
            s.psql("postgres", "SHOW synchronous_standby_names")
                .unwrap()
                .trim(),
            ""
        );

        p.kill();
        s.promote().unwrap();
        s.psql("nuc", "INSERT INTO t VALUES (21)").unwrap();
        assert_eq!(
            s.psql("nuc", "SELECT count(*), max(v) FROM t")
                .unwrap()
                .trim(),
            "21|21"
        );
        let (dir, pid) = (s.data_dir(), s.pid().unwrap());
        drop(s);
        assert!(!alive(pid), "the standby outlived its cluster");
        assert!(!dir.exists(), "the standby's files outlived it");
    }

    #[test]
    fn an_asynchronous_standby_streams_without_holding_commits_up() {
        let p = Cluster::start().unwrap();
        p.create_database("nuc").unwrap();
        let s = Cluster::standby_of(&p, false).unwrap();
        assert_eq!(
            p.psql("postgres", "SHOW synchronous_standby_names")
                .unwrap()
                .trim(),
            ""
        );
        assert_eq!(
            p.psql(
                "postgres",
                "SELECT state, sync_state FROM pg_stat_replication"
            )
            .unwrap()
            .trim(),
            "streaming|async"
        );
        // Stopped, it holds nothing up on the primary.
        s.stop().unwrap();
        p.psql("nuc", "CREATE TABLE t AS SELECT 1 AS v").unwrap();
        s.restart().unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while !s
            .psql("nuc", "SELECT v FROM t")
            .is_ok_and(|o| o.trim() == "1")
        {
            assert!(Instant::now() < until, "the standby never caught up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
