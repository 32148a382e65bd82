//! Command-line surface (see docs/cli.md), dispatched to nuc-ca and nuc-store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nuc_ca::{Ca, CaError, Home, IssueRequest, RootKey};
use nuc_core::{
    Bin, Identification, Iin, LegalEntity, OperatorStatus, ReasonCode, RevocationReason,
    SubjectInfo,
};
use nuc_ra::RevocationAsk;
use nuc_store::{CertificateReader, Issuance, OperatorStore};

use crate::audit_cli::AuditCommand;
use crate::instance::{Instance, OpenError, open_store};
use crate::outbox_cli::OutboxCommand;
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "nuc",
    version,
    about = "NUC RK core service: CA administration and the service itself"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Create a home: config, SoftHSM2 token, database, CA keys in the HSM and their certificates.
    Init {
        #[arg(long)]
        home: PathBuf,
        /// HTTP address written into a new nuc.toml; certificate URLs point at it.
        #[arg(long)]
        http_listen: Option<String>,
        /// Admin address (Prometheus metrics) written into a new nuc.toml (default
        /// 127.0.0.1:8473).
        #[arg(long)]
        admin_listen: Option<String>,
        /// Root CA key: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384.
        #[arg(long)]
        root_key: Option<String>,
        /// Issuing CA key (same choices).
        #[arg(long)]
        issuing_key: Option<String>,
        /// gRPC address written into a new nuc.toml.
        #[arg(long)]
        grpc_listen: Option<String>,
        /// Registry (ГБД ФЛ/ЮЛ) URL written into a new nuc.toml.
        #[arg(long)]
        registry_url: Option<String>,
        /// Mark the new home as a development home: the service then accepts its test hooks
        /// (NUC_CLOCK_OFFSET_SECS, [grpc] dev_plaintext). For tests and demos, never production.
        #[arg(long)]
        development: bool,
        /// Where the records go: `sqlite` (the default: HOME/nuc.db) or a PostgreSQL URL
        /// without password (postgres://USER@HOST:PORT/DATABASE[?sslmode=require]); the
        /// password comes from NUC_STORE_PASSWORD. Written into `[store] url`.
        #[arg(long)]
        store_url: Option<String>,
        /// Make HOME another instance of the CA already in the store (`--store-url`): same
        /// database, same HSM token and keys, its own configuration and TLS identity. No key
        /// is made.
        #[arg(long, requires = "store_url")]
        join: bool,
        /// With --join: the SoftHSM2 configuration of the CA's token (written into `[hsm]
        /// softhsm2_conf`); other HSMs are named by `[hsm]` (module, token label).
        #[arg(long, requires = "join")]
        softhsm2_conf: Option<PathBuf>,
        /// With --join: the latest root CRL (the file `nuc root crl` made), to serve it from
        /// this instance too.
        #[arg(long, requires = "join")]
        root_crl: Option<PathBuf>,
    },
    /// Certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// CON operators (F6).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Where the records are kept.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Write one archive of the home while the service may run: a consistent copy of the
    /// database and the non-secret configuration (no HSM token, no PIN, no TLS key).
    Backup {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a new home from a backup, after checking every byte of the archive.
    Restore {
        /// The archive `nuc backup` wrote.
        #[arg(long = "from")]
        archive: PathBuf,
        /// The new home: absent or empty.
        #[arg(long)]
        home: PathBuf,
        /// The SoftHSM2 configuration of the CA's token, written into `[hsm] softhsm2_conf`.
        #[arg(long)]
        softhsm2_conf: Option<PathBuf>,
        /// For the backup of a PostgreSQL home: the empty database to load it into (no
        /// password in it: NUC_STORE_PASSWORD), written into `[store] url`.
        #[arg(long)]
        store_url: Option<String>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The notification outbox: dead letters listed and revived.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// The root CA's ceremonies: what only the root key signs, done by an administrator while
    /// the root key is present. The service does none of it (unless `[publication]
    /// root_crl_by = "service"`).
    Root {
        #[command(subcommand)]
        command: RootCommand,
    },
    /// Check a home without changing it: configuration, HSM and CA keys, database schema,
    /// registry, CRL freshness, certificate lifetimes. One line per finding (`ok:`, `warn:`,
    /// `FAIL:`); exit 1 on any FAIL (or warning, with --strict).
    Check {
        #[arg(long)]
        home: PathBuf,
        /// A certificate expiring within this many days is a warning.
        #[arg(long, default_value_t = crate::check::DEFAULT_WARN_DAYS)]
        warn_days: i64,
        /// Exit 1 on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// The scheduler's calls to a running service over mutual TLS (role `scheduler`): publish
    /// the CRLs now, or say which are served.
    Publish {
        #[command(subcommand)]
        command: crate::publish_cli::PublishCommand,
    },
    /// The delegated OCSP responder's certificate: renew it (new key in the HSM) while the
    /// service runs.
    OcspSigner {
        #[command(subcommand)]
        command: crate::renew::OcspSignerCommand,
    },
    /// The NUC's report signer (signs the certificate reports): renew it (new key in the
    /// HSM) while the service runs.
    ReportSigner {
        #[command(subcommand)]
        command: crate::renew::ReportSignerCommand,
    },
    /// The gRPC listener's TLS certificate: renew it (new key) while the service runs.
    Tls {
        #[command(subcommand)]
        command: crate::renew::TlsCommand,
    },
    /// Run the service in the foreground until SIGTERM or Ctrl-C.
    Serve {
        #[arg(long)]
        home: PathBuf,
        /// Override [service] http_listen.
        #[arg(long)]
        http_listen: Option<String>,
        /// Override [service] admin_listen (metrics).
        #[arg(long)]
        admin_listen: Option<String>,
        /// Override [grpc] listen.
        #[arg(long)]
        grpc_listen: Option<String>,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Issue a certificate for the key in a PKCS#10 request; the subject comes from the options.
    Issue {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        iin: Option<String>,
        #[arg(long)]
        surname: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        patronymic: Option<String>,
        #[arg(long)]
        bin: Option<String>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// Common name of a system certificate.
        #[arg(long)]
        cn: Option<String>,
        /// DNS name of a system (server) certificate; repeatable.
        #[arg(long)]
        dns: Vec<String>,
        /// How the applicant was identified: in-person (at a CON) or remote.
        #[arg(long)]
        identification: Option<String>,
    },
    /// Revoke a certificate (administrator).
    Revoke {
        #[arg(long)]
        home: PathBuf,
        /// Serial number in hex.
        #[arg(long)]
        serial: String,
        /// unspecified | key-compromise | affiliation-changed | superseded | cessation-of-operation
        #[arg(long)]
        reason: String,
        /// When the key is known or suspected to have been compromised (unix seconds).
        #[arg(long)]
        invalidity_date: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Issue an operator certificate (subject from the registry) and register the operator.
    Issue {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        iin: String,
        /// operator | manager | admin
        #[arg(long)]
        role: String,
        /// The CON the operator works at.
        #[arg(long)]
        con: String,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Suspend an operator (absent more than 15 days): their signatures are refused.
    Suspend {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        iin: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a suspended operator.
    Resume {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        iin: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Dismiss an operator: their certificates are revoked.
    Dismiss {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        iin: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List operators with their status and certificates.
    List {
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum RootCommand {
    /// Sign the next root CRL with the root key, audit it, and put it where the service
    /// serves /crl/root.crl (HOME/ca/root.crl).
    Crl {
        #[arg(long)]
        home: PathBuf,
        /// Days from now to the CRL's nextUpdate (1 to 365).
        #[arg(long, default_value_t = crate::root_crl::DEFAULT_NEXT_UPDATE_DAYS)]
        next_update_days: i64,
    },
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Copy an embedded (SQLite) home's records into an empty PostgreSQL database, in one
    /// transaction: everything or nothing. Stop the service first; afterwards point `[store]
    /// url` at the database. The SQLite file is left as it was.
    Copy {
        #[arg(long)]
        home: PathBuf,
        /// The target, without password (postgres://USER@HOST:PORT/DATABASE); the password
        /// comes from NUC_STORE_PASSWORD.
        #[arg(long)]
        to: String,
    },
}

/// A failure with its reason code, printed as one line.
pub(crate) struct Failure {
    pub(crate) code: ReasonCode,
    pub(crate) message: String,
}

impl From<CaError> for Failure {
    fn from(e: CaError) -> Self {
        Failure {
            code: e.reason(),
            message: e.to_string(),
        }
    }
}

impl From<crate::root_crl::RootCrlError> for Failure {
    fn from(e: crate::root_crl::RootCrlError) -> Self {
        Failure {
            code: e.reason(),
            message: e.to_string(),
        }
    }
}

impl From<nuc_store::StoreError> for Failure {
    fn from(e: nuc_store::StoreError) -> Self {
        Failure {
            code: match e {
                nuc_store::StoreError::Unavailable(_) => ReasonCode::Unavailable,
                _ => ReasonCode::StorageFailure,
            },
            message: e.to_string(),
        }
    }
}

impl From<crate::store::OpenStoreError> for Failure {
    fn from(e: crate::store::OpenStoreError) -> Self {
        use crate::store::OpenStoreError as E;
        match e {
            E::Setting { .. } => invalid(e.to_string()),
            E::NoCa(_) => Failure {
                code: ReasonCode::CaState,
                message: e.to_string(),
            },
            E::Store(e) => e.into(),
        }
    }
}

pub(crate) fn invalid(message: String) -> Failure {
    Failure {
        code: ReasonCode::InvalidArgument,
        message,
    }
}

fn home_dir(cmd: &Command) -> Option<&Path> {
    match cmd {
        Command::Init { home, .. } | Command::Serve { home, .. } | Command::Check { home, .. } => {
            Some(home)
        }
        Command::Cert {
            command: CertCommand::Issue { home, .. } | CertCommand::Revoke { home, .. },
        } => Some(home),
        Command::Operator { command } => match command {
            OperatorCommand::Issue { home, .. }
            | OperatorCommand::Suspend { home, .. }
            | OperatorCommand::Resume { home, .. }
            | OperatorCommand::Dismiss { home, .. }
            | OperatorCommand::List { home } => Some(home),
        },
        Command::Audit { command } => command.home().map(PathBuf::as_path),
        Command::Outbox { command } => Some(command.home().as_path()),
        // A client of a running service: no home of its own.
        Command::Publish { .. } => None,
        Command::OcspSigner { command } => Some(command.home()),
        Command::ReportSigner { command } => Some(command.home()),
        Command::Tls { command } => Some(command.home()),
        Command::Backup { home, .. } | Command::Restore { home, .. } => Some(home),
        Command::Store {
            command: StoreCommand::Copy { home, .. },
        }
        | Command::Root {
            command: RootCommand::Crl { home, .. },
        } => Some(home),
    }
}

/// SoftHSM2 reads `SOFTHSM2_CONF` once, when its module loads. When the home's token needs a
/// different value, replace this process by the same command with it set, instead of mutating
/// our own environment after start.
fn reexec_for_softhsm(cmd: &Command) -> Option<ExitCode> {
    let dir = home_dir(cmd)?;
    let conf = match Home::open(dir) {
        Ok(home) if !home.softhsm2_env_ok() => home.softhsm2_conf()?,
        Ok(_) => return None,
        // No config yet: `init --join` names the CA's token; `init` writes a dev home with
        // the conf under hsm/.
        Err(_) => match cmd {
            Command::Init {
                softhsm2_conf: Some(conf),
                ..
            } => conf.clone(),
            Command::Init { .. } => dir.join("hsm/softhsm2.conf"),
            _ => return None,
        },
    };
    if std::env::var_os("NUC_REEXECED").is_some() {
        return None; // never loop; the library reports the mismatch
    }
    let exe = std::env::current_exe().ok()?;
    let conf = if conf.is_absolute() {
        conf
    } else {
        std::env::current_dir().ok()?.join(conf)
    };
    // exec, not spawn: the same process (same pid) carries on, so signals reach the service.
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", conf)
        .env("NUC_REEXECED", "1")
        .exec();
    eprintln!("error: INTERNAL: cannot re-execute with SOFTHSM2_CONF set: {err}");
    Some(ExitCode::from(1))
}

pub fn run(args: Args) -> ExitCode {
    if let Some(code) = reexec_for_softhsm(&args.command) {
        return code;
    }
    match dispatch(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}: {}", f.code, f.message);
            ExitCode::from(
                if f.code.is_caller_error() || f.code == ReasonCode::CaState {
                    2
                } else {
                    1
                },
            )
        }
    }
}

impl From<nuc_ra::RaError> for Failure {
    fn from(e: nuc_ra::RaError) -> Self {
        Failure {
            code: e.reason,
            message: e.message,
        }
    }
}

pub(crate) fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "admin".into())
    )
}

/// This home opened as an instance (store, CA, and the RA with the registry of its
/// configuration), on the wall clock.
fn open_instance(dir: &Path) -> Result<Instance, Failure> {
    Instance::open(dir, std::sync::Arc::new(nuc_ra::SystemClock)).map_err(Failure::from)
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Ca(e) => e.into(),
            OpenError::Store(e) => e.into(),
            OpenError::OpenStore(e) => e.into(),
            OpenError::Registry(m) => invalid(format!("[registry] {m}")),
        }
    }
}

fn operator_command(cmd: OperatorCommand) -> Result<(), Failure> {
    // Multi-threaded, with one worker: a blocking store (PostgreSQL's client) may then wait
    // inside the RA's async calls (`block_in_place`), which a single-threaded runtime forbids.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: ReasonCode::Internal,
            message: e.to_string(),
        })?;
    match cmd {
        OperatorCommand::Issue {
            home,
            iin,
            role,
            con,
            csr,
            out,
        } => {
            let csr_bytes = std::fs::read(&csr)
                .map_err(|e| invalid(format!("csr: cannot read {}: {e}", csr.display())))?;
            if out.exists() {
                return Err(invalid(format!(
                    "out: {} already exists; refusing to overwrite",
                    out.display()
                )));
            }
            let inst = open_instance(&home)?;
            let issued =
                runtime.block_on(
                    inst.ra
                        .issue_operator(&actor(), &iin, &role, &con, csr_bytes),
                )?;
            std::fs::write(&out, issued.pem()).map_err(|e| Failure {
                code: ReasonCode::Internal,
                message: format!(
                    "out: certificate {} was issued, but writing {} failed: {e}",
                    issued.serial_hex,
                    out.display()
                ),
            })?;
            println!(
                "issued serial={} profile=operator subject=\"{}\"",
                issued.serial_hex, issued.subject
            );
            Ok(())
        }
        OperatorCommand::Suspend { home, iin, reason } => {
            status_change(&home, &iin, OperatorStatus::Suspended, &reason)
        }
        OperatorCommand::Resume { home, iin, reason } => {
            status_change(&home, &iin, OperatorStatus::Active, &reason)
        }
        OperatorCommand::Dismiss { home, iin, reason } => {
            status_change(&home, &iin, OperatorStatus::Dismissed, &reason)
        }
        OperatorCommand::List { home } => {
            let home = Home::open(&home).map_err(CaError::from)?;
            let store = open_store(&home)?;
            for o in store.operators()? {
                let serials = store.serials_for(&o.iin, "operator")?;
                println!(
                    "{} {} {} role={} con=\"{}\" status={} certificates={}",
                    o.iin,
                    o.surname,
                    o.name,
                    o.role,
                    o.con,
                    o.status,
                    serials.join(",")
                );
            }
            Ok(())
        }
    }
}

fn status_change(
    home: &Path,
    iin: &str,
    status: OperatorStatus,
    reason: &str,
) -> Result<(), Failure> {
    let row = open_instance(home)?
        .ra
        .set_operator_status(&actor(), iin, status, reason)?;
    println!("operator {} is {}", row.iin, row.status);
    Ok(())
}

/// The home at `dir`, its store and its CA (no RA, no registry), with the root key or without.
pub(crate) fn open_ca(dir: &Path, root_key: RootKey) -> Result<(Home, Store, Ca), Failure> {
    let home = Home::open(dir).map_err(CaError::from)?;
    let store = open_store(&home)?;
    let ca = Ca::open_with(&home, store.as_ref(), root_key)?;
    Ok((home, store, ca))
}

/// The root CRL ceremony: the next root CRL, signed with the root key of `ca`, audited under
/// `actor`, put where the service serves it.
pub(crate) fn root_crl_ceremony(
    home: &Home,
    store: &Store,
    ca: &Ca,
    actor: &str,
    next_update_days: i64,
) -> Result<crate::root_crl::Made, Failure> {
    let crls = nuc_publisher::CrlContext { ca, store };
    let made = crate::root_crl::make(
        home,
        crls,
        store,
        actor,
        next_update_days,
        nuc_core::time::now_unix(),
    )?;
    Ok(made)
}

fn dispatch(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Init {
            home,
            http_listen,
            admin_listen,
            root_key,
            issuing_key,
            grpc_listen,
            registry_url,
            development,
            store_url,
            join,
            softhsm2_conf,
            root_crl,
        } => crate::init::run(crate::init::InitArgs {
            home,
            http_listen,
            admin_listen,
            root_key,
            issuing_key,
            grpc_listen,
            registry_url,
            development,
            store_url,
            join,
            softhsm2_conf,
            root_crl,
        }),
        Command::Cert {
            command:
                CertCommand::Issue {
                    home,
                    profile,
                    csr,
                    out,
                    iin,
                    surname,
                    name,
                    patronymic,
                    bin,
                    org,
                    email,
                    role,
                    cn,
                    dns,
                    identification,
                },
        } => {
            // Cheap checks first: a bad IIN is refused before anything is opened.
            let iin = iin
                .map(|s| Iin::parse(&s))
                .transpose()
                .map_err(|e| invalid(e.to_string()))?;
            let organization = match (bin, org) {
                (None, None) => None,
                (Some(b), Some(o)) => Some(LegalEntity {
                    bin: Bin::parse(&b).map_err(|e| invalid(e.to_string()))?,
                    name: o,
                }),
                (Some(b), None) => {
                    Bin::parse(&b).map_err(|e| invalid(e.to_string()))?;
                    return Err(invalid("org: is required together with --bin".into()));
                }
                (None, Some(_)) => {
                    return Err(invalid("bin: is required together with --org".into()));
                }
            };
            let csr_bytes = std::fs::read(&csr)
                .map_err(|e| invalid(format!("csr: cannot read {}: {e}", csr.display())))?;
            if out.exists() {
                return Err(invalid(format!(
                    "out: {} already exists; refusing to overwrite",
                    out.display()
                )));
            }
            let identification = identification
                .map(|m| m.parse::<Identification>())
                .transpose()
                .map_err(|e| invalid(format!("identification: {e}")))?;
            let (_, store, ca) = open_ca(&home, RootKey::Offline)?;
            let order = IssueRequest {
                profile,
                csr: csr_bytes,
                subject: SubjectInfo {
                    iin,
                    surname,
                    name,
                    patronymic,
                    organization,
                    email,
                    common_name: cn,
                },
                role,
                identification,
                dns_names: dns,
                actor: actor(),
                request_number: None,
                key_storage: Default::default(),
            };
            let issued = ca
                .issue(
                    std::slice::from_ref(&order),
                    &Issuance::alone(store.as_ref()),
                )?
                .remove(0);
            std::fs::write(&out, issued.pem()).map_err(|e| Failure {
                code: ReasonCode::Internal,
                message: format!(
                    "out: certificate {} was issued and stored, but writing {} failed: {e}",
                    issued.serial_hex,
                    out.display()
                ),
            })?;
            println!(
                "issued serial={} profile={} subject=\"{}\"",
                issued.serial_hex, issued.profile, issued.subject
            );
            Ok(())
        }
        Command::Cert {
            command:
                CertCommand::Revoke {
                    home,
                    serial,
                    reason,
                    invalidity_date,
                },
        } => {
            let code = RevocationReason::parse_accepted(&reason)
                .map_err(|e| invalid(format!("reason: {e}")))?;
            let row = open_instance(&home)?.ra.revoke(
                &actor(),
                &RevocationAsk {
                    serial: &serial,
                    reason: code,
                    invalidity_date,
                    why: "by an administrator (CLI)",
                },
                None,
            )?;
            println!(
                "revoked serial={} reason={reason} at={}",
                row.serial,
                nuc_core::time::rfc3339(row.revoked_at)
            );
            Ok(())
        }
        Command::Operator { command } => operator_command(command),
        Command::Backup { home, out } => {
            let manifest = crate::backup::backup(&home, &out)?;
            crate::backup::report_backup(&out, &manifest);
            Ok(())
        }
        Command::Restore {
            archive,
            home,
            softhsm2_conf,
            store_url,
        } => {
            let restored = crate::backup::restore(
                &archive,
                &home,
                softhsm2_conf.as_deref(),
                store_url.as_deref(),
            )?;
            crate::backup::report_restore(&home, &restored);
            Ok(())
        }
        Command::Root {
            command:
                RootCommand::Crl {
                    home,
                    next_update_days,
                },
        } => {
            let (home, store, ca) = open_ca(&home, RootKey::Online)?;
            let made = root_crl_ceremony(&home, &store, &ca, &actor(), next_update_days)?;
            println!(
                "root CRL number={} this_update={} next_update={} sha256={} path={}",
                made.number,
                nuc_core::time::rfc3339(made.this_update),
                nuc_core::time::rfc3339(made.next_update),
                made.sha256,
                made.path.display()
            );
            Ok(())
        }
        Command::Audit { command } => crate::audit_cli::run(command),
        Command::Outbox { command } => crate::outbox_cli::run(command),
        Command::Publish { command } => crate::publish_cli::run(command),
        Command::OcspSigner { command } => crate::renew::ocsp_signer(command),
        Command::ReportSigner { command } => crate::renew::report_signer(command),
        Command::Tls { command } => crate::renew::tls(command),
        Command::Check {
            home,
            warn_days,
            strict,
        } => crate::check::run(&home, crate::check::CheckOptions { warn_days, strict }),
        Command::Store {
            command: StoreCommand::Copy { home, to },
        } => crate::store::copy(&home, &to).map_err(Failure::from),
        Command::Serve {
            home,
            http_listen,
            admin_listen,
            grpc_listen,
        } => crate::serve::run(
            &home,
            crate::serve::ServeOptions {
                http_listen,
                admin_listen,
                grpc_listen,
            },
        )
        // What kept the instance from opening keeps its own reason (a setting refused, the
        // database unreachable or refusing our credentials); the rest is ours.
        .map_err(|e| match e.downcast::<OpenError>() {
            Ok(open) => Failure::from(open),
            Err(e) => Failure {
                code: ReasonCode::Internal,
                message: e.to_string(),
            },
        }),
    }
}
