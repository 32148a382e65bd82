//! `nuc backup` and `nuc restore`: one archive file holding what a home needs to come back —
//! a consistent online copy of its database and its non-secret configuration — and a new home
//! made from it.
//!
//! The backup runs while the service may be running: the database is copied as one snapshot,
//! so every issuance acknowledged before the backup began is in it, and nothing half-written
//! is. A SQLite store is copied with `VACUUM INTO` (see [`nuc_store_sqlite::snapshot_into`])
//! into [`DATABASE`]; a PostgreSQL store is dumped by `pg_dump` from one exported snapshot into
//! [`postgres::PG_DUMP`] (see [`postgres`]), and restored only into an empty PostgreSQL
//! database: a backup goes back to the engine it came from. Beside the database go `nuc.toml`
//! without the HSM PINs, the policy, the CA certificates and the root CRL, and the service's
//! TLS certificate.
//!
//! What never goes into the archive: the HSM token (the CA keys are non-extractable; the HSM
//! has its own backup procedure, see docs/operations.md), the PINs, the service's TLS private
//! key and any other secret file the configuration names. The restore says so, and the
//! operator provides them.
//!
//! The archive is a POSIX ustar file (readable with `tar -tvf`) whose first member,
//! [`MANIFEST`], lists every other member with its size and SHA-256, the store's schema
//! version, the audit log's size and latest checkpoint size, and the time; its last member,
//! [`MANIFEST_SHA256`], is the SHA-256 of the manifest. The restore checks every byte of it
//! (headers, members, padding) before it writes anything: a corrupted archive makes no home
//! and loads nothing into a database. The format is [`archive`]'s.

mod archive;
pub mod postgres;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use nuc_ca::home::HomeError;
use nuc_core::ReasonCode;
use serde::{Deserialize, Serialize};

use crate::cli::Failure;
use crate::config::Config;
use crate::private_home;
use crate::store::Location;
use archive::{BLOCK, hash_file, read_archive, write_member};
use postgres::{PG_DUMP, Target};

/// The first member of an archive: what it holds.
pub const MANIFEST: &str = "nuc-backup.json";
/// The last member: the SHA-256 (hex) of [`MANIFEST`].
pub const MANIFEST_SHA256: &str = "nuc-backup.json.sha256";
/// The manifest's format; a restore refuses any other.
const FORMAT: &str = "nuc-backup/1";
/// The database's name in the archive and in a home.
const DATABASE: &str = "nuc.db";
/// The configuration's name in the archive and in a home.
const CONFIG: &str = "nuc.toml";
/// The manifest's names of the engines.
const SQLITE: &str = "sqlite";
const POSTGRES: &str = "postgres";

/// The archive member holding the database of a store on `engine`.
fn database_member(engine: &str) -> Option<&'static str> {
    match engine {
        SQLITE => Some(DATABASE),
        POSTGRES => Some(PG_DUMP),
        _ => None,
    }
}

/// Why a backup or a restore did not happen. Nothing is left half-made by either.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{tool}: {reason}")]
    PgTool { tool: &'static str, reason: String },
    #[error("{tool} of {url} failed: {reason}")]
    PgToolFailed {
        tool: &'static str,
        url: String,
        reason: String,
    },
    #[error("database {url}: {reason}")]
    Database { url: String, reason: String },
    #[error("store-url: {reason}")]
    StoreUrl { reason: String },
    #[error(
        "store-url: the archive holds a PostgreSQL database: name the empty database to load it \
         into with --store-url postgres://USER@HOST/DB (password in NUC_STORE_PASSWORD)"
    )]
    StoreUrlRequired,
    #[error(
        "store-url: the archive holds a {archive} database and --store-url names a {asked} one: \
         a backup is restored to the engine it was taken from (move a SQLite home to \
         PostgreSQL afterwards with `nuc store copy`)"
    )]
    EngineMismatch {
        archive: &'static str,
        asked: &'static str,
    },
    #[error(
        "store-url: {url} is not empty ({tables}); restore loads a backup only into an empty \
         database"
    )]
    TargetNotEmpty { url: String, tables: String },
    #[error(
        "database {url}: the restored {what} is {restored}, the backup's manifest says \
         {recorded}; the restored home was removed, the database holds the loaded dump: drop \
         and recreate it before trying again"
    )]
    RestoredDiffers {
        url: String,
        what: &'static str,
        restored: String,
        recorded: String,
    },
    #[error("out: {0} already exists; refusing to overwrite")]
    OutExists(PathBuf),
    #[error("home: {0} exists and is not empty; restore makes a new home")]
    HomeNotEmpty(PathBuf),
    #[error("softhsm2_conf: {0} is not a file")]
    SoftHsmConf(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("storage: {0}")]
    Store(#[from] nuc_store::StoreError),
    #[error("from: {archive} is not an intact nuc backup ({reason}); nothing was restored")]
    Corrupt { archive: PathBuf, reason: String },
}

impl From<BackupError> for Failure {
    fn from(e: BackupError) -> Self {
        let code = match &e {
            // As the CA reports a home it cannot read.
            BackupError::Home(_) => ReasonCode::CaState,
            BackupError::StoreUrl { .. }
            | BackupError::StoreUrlRequired
            | BackupError::EngineMismatch { .. }
            | BackupError::TargetNotEmpty { .. }
            | BackupError::OutExists(_)
            | BackupError::HomeNotEmpty(_)
            | BackupError::SoftHsmConf(_)
            | BackupError::Corrupt { .. } => ReasonCode::InvalidArgument,
            BackupError::Config { .. } => ReasonCode::CaState,
            BackupError::Store(_)
            | BackupError::Database { .. }
            | BackupError::PgToolFailed { .. }
            | BackupError::RestoredDiffers { .. } => ReasonCode::StorageFailure,
            // The host lacks the PostgreSQL client tools.
            BackupError::PgTool { .. } => ReasonCode::Unavailable,
            BackupError::Io { .. } => ReasonCode::Internal,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.into(),
        source,
    }
}

/// What an archive holds, as its first member says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// When the database snapshot was taken (Unix seconds, and RFC 3339 for people).
    pub created_at: i64,
    pub created: String,
    pub store: StoreFacts,
    pub members: Vec<Member>,
    /// What the archive deliberately does not hold, for the operator to provide on restore.
    pub left_out: Vec<String>,
}

/// The database copy, as read from the copy itself.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFacts {
    pub engine: String,
    pub schema_version: i64,
    pub audit_records: i64,
    pub latest_checkpoint_size: Option<i64>,
}

/// One file of the archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Relative to the home, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A file to archive: its name in the archive and where its bytes are.
struct Source {
    name: String,
    from: Content,
}

enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// `nuc backup --home DIR --out FILE`.
pub fn backup(home: &Path, out: &Path) -> Result<Manifest, BackupError> {
    let config = Config::open(home)?;
    let location = Location::of(home, &config.store).map_err(|e| BackupError::Config {
        path: home.join(CONFIG),
        reason: e.to_string(),
    })?;
    if out.exists() {
        return Err(BackupError::OutExists(out.into()));
    }
    // The snapshot goes into a private directory beside the archive, removed whatever happens.
    let staging = Staging::new(out)?;
    let (database, copy, store, created_at) = match location {
        Location::Sqlite(db) => {
            let copy = staging.dir.join(DATABASE);
            let snapshot = nuc_store_sqlite::snapshot_into(&db, &copy)?;
            let facts = StoreFacts {
                engine: SQLITE.into(),
                schema_version: snapshot.schema_version,
                audit_records: snapshot.audit_records,
                latest_checkpoint_size: snapshot.latest_checkpoint,
            };
            (DATABASE, copy, facts, nuc_core::time::now_unix())
        }
        Location::Postgres { url, .. } => {
            let target = Target::of_home(home, &config.store, &url)?;
            let (dump, facts, taken) = postgres::dump(&target, &staging.dir)?;
            let facts = StoreFacts {
                engine: POSTGRES.into(),
                schema_version: facts.schema_version,
                audit_records: facts.audit_records,
                latest_checkpoint_size: facts.latest_checkpoint,
            };
            (PG_DUMP, dump, facts, taken)
        }
    };

    let mut left_out = vec![
        "the HSM token: the CA keys are non-extractable; back the token up with the HSM's own \
         procedure (docs/operations.md, Backups)"
            .to_owned(),
        "the HSM PINs ([hsm] pin, so_pin are removed from nuc.toml): NUC_HSM_PIN / \
         NUC_HSM_SO_PIN come from where the PINs are kept"
            .to_owned(),
    ];
    let mut sources = vec![
        Source {
            name: CONFIG.into(),
            from: Content::Bytes(config_without_pins(home)?),
        },
        Source {
            name: database.into(),
            from: Content::File(copy.clone()),
        },
    ];
    if store.engine == POSTGRES {
        left_out.push(
            "the database's roles and privileges (dumped with --no-owner --no-privileges): the \
             user of the restore's --store-url owns what is restored; a standby ([store] \
             read_url) is set up anew"
                .to_owned(),
        );
    }
    for name in home_files(home, &config, &mut left_out)? {
        sources.push(Source {
            from: Content::File(home.join(&name)),
            name,
        });
    }

    let mut members = Vec::new();
    for s in &sources {
        let (size, sha256) = match &s.from {
            Content::Bytes(b) => (b.len() as u64, hex::encode(openssl::sha::sha256(b))),
            Content::File(p) => hash_file(p)?,
        };
        members.push(Member {
            path: s.name.clone(),
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at,
        created: nuc_core::time::rfc3339(created_at),
        store,
        members,
        left_out,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        path: out.into(),
        source: std::io::Error::other(e),
    })?;
    let manifest_sha = format!("{}\n", hex::encode(openssl::sha::sha256(&manifest_json)));

    // The archive is written under a temporary name and renamed when complete: an interrupted
    // backup leaves no file that looks like a backup.
    let part = staging.dir.join("archive");
    {
        let file = private_home::create_file(&part).map_err(io(&part))?;
        let mut w = BufWriter::new(file);
        write_member(
            &mut w,
            (MANIFEST, created_at),
            &mut &manifest_json[..],
            manifest_json.len() as u64,
        )
        .map_err(io(&part))?;
        for (s, m) in sources.iter().zip(&manifest.members) {
            match &s.from {
                Content::Bytes(b) => {
                    write_member(&mut w, (&s.name, created_at), &mut &b[..], m.size)
                }
                Content::File(p) => {
                    let mut f = File::open(p).map_err(io(p))?;
                    write_member(&mut w, (&s.name, created_at), &mut f, m.size)
                }
            }
            .map_err(io(&part))?;
        }
        write_member(
            &mut w,
            (MANIFEST_SHA256, created_at),
            &mut manifest_sha.as_bytes(),
            manifest_sha.len() as u64,
        )
        .map_err(io(&part))?;
        w.write_all(&[0u8; 2 * BLOCK]).map_err(io(&part))?;
        let file = w.into_inner().map_err(|e| BackupError::Io {
            path: part.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&part))?;
    }
    // Never over a file that appeared meanwhile.
    std::fs::hard_link(&part, out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::OutExists(out.into())
        } else {
            BackupError::Io {
                path: out.into(),
                source: e,
            }
        }
    })?;
    Ok(manifest)
}

/// A private directory next to the archive being made, removed when dropped.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn new(out: &Path) -> Result<Self, BackupError> {
        let name = out
            .file_name()
            .ok_or_else(|| BackupError::Io {
                path: out.into(),
                source: std::io::Error::other("not a file name"),
            })?
            .to_string_lossy();
        let dir = out.with_file_name(format!(".{name}.{}.part", std::process::id()));
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(private_home::DIR_MODE)
            .create(&dir)
            .map_err(io(&dir))?;
        Ok(Self { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nuc.toml` as it goes into the archive: the HSM PINs removed (a dev home keeps them there).
fn config_without_pins(home: &Path) -> Result<Vec<u8>, BackupError> {
    let path = home.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| BackupError::Config {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if let Some(hsm) = table.get_mut("hsm").and_then(toml::Value::as_table_mut) {
        hsm.remove("pin");
        hsm.remove("so_pin");
    }
    let text = toml::to_string(&table).map_err(|e| BackupError::Config {
        path,
        reason: e.to_string(),
    })?;
    Ok(text.into_bytes())
}

/// The non-secret files of the home besides the configuration and the database: the policy's
/// directory, the CA certificates and CRLs, the service's TLS certificate. Names are relative
/// to the home; what the configuration names outside the home, and every secret it names, is
/// listed in `left_out` instead.
fn home_files(
    home: &Path,
    config: &Config,
    left_out: &mut Vec<String>,
) -> Result<Vec<String>, BackupError> {
    let mut names = Vec::new();
    let policy = &config.policy.file;
    match inside(policy).and_then(|p| p.parent().map(Path::to_path_buf)) {
        Some(dir) if !dir.as_os_str().is_empty() => walk(home, &dir, &mut names)?,
        Some(_) => names.push(slashed(policy)),
        None => left_out.push(format!(
            "the policy {} (outside the home)",
            policy.display()
        )),
    }
    let ca = home.join("ca");
    let mut entries: Vec<_> = std::fs::read_dir(&ca)
        .map_err(io(&ca))?
        .collect::<Result<_, _>>()
        .map_err(io(&ca))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata().map_err(io(&e.path()))?;
        if meta.is_file() && (name.ends_with(".pem") || name.ends_with(".crl")) {
            names.push(format!("ca/{name}"));
        }
    }
    match inside(&config.grpc.tls_cert) {
        Some(cert) if home.join(cert).is_file() => names.push(slashed(cert)),
        _ => left_out.push(format!(
            "the gRPC TLS certificate {} (outside the home or absent)",
            config.grpc.tls_cert.display()
        )),
    }
    left_out.push(format!(
        "the gRPC TLS private key [grpc] tls_key = {}: a secret; restore it from where the \
         secrets are kept, or give the restored home a new TLS identity",
        config.grpc.tls_key.display()
    ));
    if let Some(key) = &config.registry.client_key {
        left_out.push(format!(
            "the registry client key [registry] client_key = {}",
            key.display()
        ));
    }
    for (setting, path) in [
        ("[registry] ca_cert", &config.registry.ca_cert),
        ("[registry] client_cert", &config.registry.client_cert),
        ("[store] password_file", &config.store.password_file),
    ] {
        if let Some(p) = path {
            left_out.push(format!("{setting} = {}", p.display()));
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// `path` if it is relative and stays inside the home (no `..`, no root).
fn inside(path: &Path) -> Option<&Path> {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then_some(path)
}

fn slashed(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every regular file under `home/dir` (links are not followed), as names relative to home.
fn walk(home: &Path, dir: &Path, names: &mut Vec<String>) -> Result<(), BackupError> {
    let full = home.join(dir);
    for e in std::fs::read_dir(&full).map_err(io(&full))? {
        let e = e.map_err(io(&full))?;
        let meta = std::fs::symlink_metadata(e.path()).map_err(io(&e.path()))?;
        let rel = dir.join(e.file_name());
        if meta.is_dir() {
            walk(home, &rel, names)?;
        } else if meta.is_file() {
            names.push(slashed(&rel));
        }
    }
    Ok(())
}

/// What a restore made.
pub struct Restored {
    pub manifest: Manifest,
    /// `[hsm] softhsm2_conf` of the restored home, when it names one.
    pub softhsm2_conf: Option<PathBuf>,
    pub token_label: String,
    /// The PostgreSQL database the dump was loaded into, for an archive of such a home.
    pub store_url: Option<String>,
}

/// Removes the home a restore was making if it does not finish.
struct Undo<'a> {
    home: &'a Path,
    created: bool,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.created {
            let _ = std::fs::remove_dir_all(self.home);
        } else if let Ok(entries) = std::fs::read_dir(self.home) {
            // It was empty: empty it again.
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// `nuc restore --from FILE --home NEWDIR [--softhsm2-conf FILE] [--store-url URL]`: an
/// archive of a SQLite home makes the home with its database file; one of a PostgreSQL home
/// needs `store_url`, an empty PostgreSQL database, which `pg_restore` loads in one transaction
/// and the new home's `[store] url` names.
pub fn restore(
    archive: &Path,
    home: &Path,
    softhsm2_conf: Option<&Path>,
    store_url: Option<&str>,
) -> Result<Restored, BackupError> {
    let existed = match std::fs::read_dir(home) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::HomeNotEmpty(home.into()));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(home)(e)),
    };
    let softhsm2_conf = softhsm2_conf
        .map(|c| {
            let abs = std::path::absolute(c).map_err(io(c))?;
            if abs.is_file() {
                Ok(abs)
            } else {
                Err(BackupError::SoftHsmConf(c.into()))
            }
        })
        .transpose()?;
    let corrupt = |reason: String| BackupError::Corrupt {
        archive: archive.into(),
        reason,
    };
    // First pass: every byte checked, nothing written.
    let checked = read_archive(archive, |_, _| Ok(())).map_err(corrupt)?;

    // The database to load a PostgreSQL dump into: named, reachable, empty, and the tool
    // there, all before anything is written.
    let database = match (checked.store.engine.as_str(), store_url) {
        (SQLITE, None) => None,
        (SQLITE, Some(url)) => {
            return Err(BackupError::EngineMismatch {
                archive: "SQLite",
                asked: if url == crate::config::SQLITE {
                    "SQLite"
                } else {
                    "PostgreSQL"
                },
            });
        }
        (_, None) => return Err(BackupError::StoreUrlRequired),
        (_, Some(url)) => {
            if url == crate::config::SQLITE {
                return Err(BackupError::EngineMismatch {
                    archive: "PostgreSQL",
                    asked: "SQLite",
                });
            }
            let target = Target::named(url)?;
            let bin = postgres::find("pg_restore")?;
            postgres::check_empty(&target)?;
            Some((target, bin))
        }
    };

    // Second pass: the members written as they are read, and checked again; a difference (the
    // file changed in between) undoes the home. A dump goes beside the home, not into it.
    let mut undo = Undo {
        home,
        created: !existed,
        armed: true,
    };
    private_home::create_dir_all(home).map_err(io(home))?;
    let staging = match &database {
        Some(_) => Some(Staging::new(home)?),
        None => None,
    };
    let dump = staging.as_ref().map(|s| s.dir.join("nuc.pgdump"));
    let dest = |name: &str| match &dump {
        Some(d) if name == PG_DUMP => d.clone(),
        _ => home.join(name),
    };
    let mut open: Option<(PathBuf, BufWriter<File>)> = None;
    let mut failed: Option<BackupError> = None;
    let manifest = read_archive(archive, |name, chunk| {
        let result = (|| -> Result<(), BackupError> {
            let path = dest(name);
            if open.as_ref().is_none_or(|(p, _)| *p != path) {
                if let Some((p, w)) = open.take() {
                    finish(&p, w)?;
                }
                if let Some(parent) = path.parent() {
                    private_home::create_dir_all(parent).map_err(io(parent))?;
                }
                let f = create_new_private(&path).map_err(io(&path))?;
                open = Some((path.clone(), BufWriter::new(f)));
            }
            if let Some((_, w)) = open.as_mut() {
                w.write_all(chunk).map_err(io(&path))?;
            }
            Ok(())
        })();
        result.map_err(|e| {
            let message = e.to_string();
            failed = Some(e);
            message
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let manifest = manifest.map_err(corrupt)?;
    if let Some((p, w)) = open.take() {
        finish(&p, w)?;
    }
    // Empty members were never opened above.
    for m in manifest.members.iter().filter(|m| m.size == 0) {
        let path = dest(&m.path);
        if let Some(parent) = path.parent() {
            private_home::create_dir_all(parent).map_err(io(parent))?;
        }
        create_new_private(&path).map_err(io(&path))?;
    }
    if let Some(conf) = &softhsm2_conf {
        point_at_token(home, conf)?;
    }
    if let (Some((target, bin)), Some(dump)) = (&database, &dump) {
        point_at_database(home, &target.url)?;
        let restored = postgres::restore(target, bin, dump)?;
        let differs = |what, restored: String, recorded: String| BackupError::RestoredDiffers {
            url: target.url.clone(),
            what,
            restored,
            recorded,
        };
        let recorded = &manifest.store;
        if restored.schema_version != recorded.schema_version {
            return Err(differs(
                "schema version",
                restored.schema_version.to_string(),
                recorded.schema_version.to_string(),
            ));
        }
        if restored.audit_records != recorded.audit_records
            || restored.latest_checkpoint != recorded.latest_checkpoint_size
        {
            return Err(differs(
                "audit log (records, latest checkpoint)",
                format!(
                    "{} {:?}",
                    restored.audit_records, restored.latest_checkpoint
                ),
                format!(
                    "{} {:?}",
                    recorded.audit_records, recorded.latest_checkpoint_size
                ),
            ));
        }
    }
    drop(staging);
    private_home::restrict(home).map_err(io(home))?;
    let config = Config::open(home)?;
    undo.armed = false;
    Ok(Restored {
        manifest,
        softhsm2_conf: config.hsm.softhsm2_conf.as_ref().map(|c| home.join(c)),
        token_label: config.hsm.token_label.clone(),
        store_url: database.map(|(t, _)| t.url),
    })
}

fn create_new_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(private_home::FILE_MODE)
        .open(path)
}

fn finish(path: &Path, w: BufWriter<File>) -> Result<(), BackupError> {
    let file = w.into_inner().map_err(|e| BackupError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(path))
}

/// Sets `[store] url` of the restored home to the database the dump was loaded into; the
/// original's standby (`read_url`) is not this database's, so it goes.
fn point_at_database(home: &Path, url: &str) -> Result<(), BackupError> {
    let path = home.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let bad = |reason: String| BackupError::Config {
        path: path.clone(),
        reason,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let store = table
        .entry("store")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| bad("[store] is not a table".into()))?;
    store.insert("url".into(), toml::Value::String(url.to_owned()));
    store.remove("read_url");
    let text = toml::to_string(&table).map_err(|e| bad(e.to_string()))?;
    std::fs::write(&path, text).map_err(io(&path))
}

/// Sets `[hsm] softhsm2_conf` of the restored home to `conf` (absolute).
fn point_at_token(home: &Path, conf: &Path) -> Result<(), BackupError> {
    let path = home.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let bad = |reason: String| BackupError::Config {
        path: path.clone(),
        reason,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let hsm = table
        .get_mut("hsm")
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| bad("no [hsm] section".into()))?;
    hsm.insert(
        "softhsm2_conf".into(),
        toml::Value::String(conf.to_string_lossy().into_owned()),
    );
    let text = toml::to_string(&table).map_err(|e| bad(e.to_string()))?;
    std::fs::write(&path, text).map_err(io(&path))
}

/// Prints what `nuc backup` made.
pub fn report_backup(out: &Path, m: &Manifest) {
    println!(
        "backup {}: {} files, {} database schema version {}, audit log {} records, latest checkpoint size {}, taken {}",
        out.display(),
        m.members.len(),
        m.store.engine,
        m.store.schema_version,
        m.store.audit_records,
        m.store
            .latest_checkpoint_size
            .map_or_else(|| "none".to_owned(), |s| s.to_string()),
        m.created
    );
    for l in &m.left_out {
        println!("not in the backup: {l}");
    }
}

/// Prints what `nuc restore` made and what the operator must still provide.
pub fn report_restore(home: &Path, r: &Restored) {
    println!(
        "restored {} from the backup taken {} (audit log {} records, schema version {}):",
        home.display(),
        r.manifest.created,
        r.manifest.store.audit_records,
        r.manifest.store.schema_version
    );
    for m in &r.manifest.members {
        println!("  {} ({} bytes, sha256 {})", m.path, m.size, m.sha256);
    }
    if let Some(url) = &r.store_url {
        println!(
            "database: {PG_DUMP} loaded into {url} ([store] url of the new home), schema version \
             and audit log checked against the manifest"
        );
        println!(
            "still to provide: the database password to the service ({} or [store] \
             password_file)",
            crate::store::PASSWORD_ENV
        );
    }
    match &r.softhsm2_conf {
        Some(conf) if conf.is_file() => println!(
            "HSM: [hsm] softhsm2_conf = {}; the token labelled {:?} must be there with the CA keys",
            conf.display(),
            r.token_label
        ),
        Some(conf) => println!(
            "still to provide: the HSM token labelled {:?}: restore the token directory and a \
             softhsm2.conf naming it at {}, or run restore with --softhsm2-conf pointing at it",
            r.token_label,
            conf.display()
        ),
        None => println!(
            "still to provide: the HSM token labelled {:?} reachable through [hsm] module",
            r.token_label
        ),
    }
    println!(
        "still to provide: the HSM PINs (NUC_HSM_PIN, NUC_HSM_SO_PIN); they are not in a backup"
    );
    for l in &r.manifest.left_out {
        println!("not in the backup: {l}");
    }
}
