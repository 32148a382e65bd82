//! `nuc init`: a new home with a new CA (its keys born in the HSM, its first root CRL), or
//! with `--join` another home of a CA that already lives in a shared store — its own
//! configuration and TLS identity, the same database, token and keys.
//!
//! Nothing of a failed init stays in the home. A new CA is never made in a store that already
//! holds one, and a join never makes a key.

use std::path::{Path, PathBuf};

use nuc_ca::{Ca, CaError, Home, InitOptions, RootKey};
use nuc_core::ReasonCode;
use nuc_store::CaKeyStore;

use crate::cli::{Failure, invalid, open_ca, root_crl_ceremony};
use crate::config::{Config, SQLITE, StoreConfig};
use crate::store::{self, Location};

/// What `nuc init` was asked.
pub(crate) struct InitArgs {
    pub home: PathBuf,
    pub http_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub root_key: Option<String>,
    pub issuing_key: Option<String>,
    pub grpc_listen: Option<String>,
    pub registry_url: Option<String>,
    pub development: bool,
    pub store_url: Option<String>,
    pub join: bool,
    pub softhsm2_conf: Option<PathBuf>,
    pub root_crl: Option<PathBuf>,
}

/// Removes what this init wrote in the home if it does not finish.
struct Undo<'a> {
    home: &'a Path,
    created_dir: bool,
    wrote_config: bool,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.created_dir {
            let _ = std::fs::remove_dir_all(self.home);
        } else if self.wrote_config {
            let _ = std::fs::remove_file(Home::config_path(self.home));
        }
    }
}

fn failure(code: ReasonCode, message: String) -> Failure {
    Failure { code, message }
}

pub(crate) fn run(args: InitArgs) -> Result<(), Failure> {
    let home = args.home.clone();
    let mut undo = Undo {
        home: &home,
        created_dir: !home.exists(),
        wrote_config: false,
        armed: true,
    };
    // The whole nuc.toml first (only if absent): the CA reads its sections of it.
    if !Home::config_path(&home).exists() {
        let config = new_config(&args)?;
        // Private from the start: what init writes next is not readable in between.
        crate::private_home::create_dir_all(&home)
            .map_err(|e| failure(ReasonCode::CaState, format!("{}: {e}", home.display())))?;
        config.write_new(&home).map_err(CaError::from)?;
        undo.wrote_config = true;
    } else if args.store_url.is_some() || args.join {
        return Err(invalid(format!(
            "store_url: {} exists already; --store-url and --join make a new home",
            Home::config_path(&home).display()
        )));
    }
    let config = Config::open(&home).map_err(CaError::from)?;
    let location = Location::of(&home, &config.store)?;
    if args.join {
        join(&home, &config, &location, args.root_crl.as_deref())?;
    } else {
        create(&home, &config, &location)?;
    }
    undo.armed = false;
    Ok(())
}

/// The new home's `nuc.toml`: development defaults and what the command line says.
fn new_config(args: &InitArgs) -> Result<Config, Failure> {
    let mut config = Config::dev(args.http_listen.as_deref().unwrap_or("127.0.0.1:8470"));
    if let Some(a) = &args.admin_listen {
        config.service.admin_listen = Some(a.clone());
    }
    if let Some(k) = &args.root_key {
        config.ca.root_key = k.clone();
    }
    if let Some(k) = &args.issuing_key {
        config.ca.issuing_key = k.clone();
    }
    if let Some(g) = &args.grpc_listen {
        config.grpc.listen = g.clone();
    }
    if let Some(r) = &args.registry_url {
        config.registry.url = r.clone();
    }
    config.service.development = args.development;
    if let Some(url) = &args.store_url
        && url != SQLITE
    {
        store::check_postgres_url("url", url)?;
        config.store = StoreConfig {
            url: url.clone(),
            ..StoreConfig::default()
        };
    }
    if let Some(conf) = &args.softhsm2_conf {
        // Absolute: the token is the first home's, wherever this one is.
        let conf = std::path::absolute(conf)
            .map_err(|e| invalid(format!("softhsm2_conf: {}: {e}", conf.display())))?;
        if !conf.is_file() {
            return Err(invalid(format!(
                "softhsm2_conf: {} is not a file",
                conf.display()
            )));
        }
        config.hsm.softhsm2_conf = Some(conf);
    }
    Ok(config)
}

/// A new CA: keys in the HSM, certificates, the service's TLS identity, the report signer,
/// the first root CRL.
fn create(home: &Path, config: &Config, location: &Location) -> Result<(), Failure> {
    // A home that has its CA already is refused as such by `Ca::init` (nothing changed),
    // whatever its store holds: that the store holds a CA too is no news to it.
    let home_has_ca = home.join("ca").join("root.pem").exists();
    if let Location::Postgres { .. } = location
        && !home_has_ca
    {
        // Refused before any key is made: one database, one CA.
        let shared = store::connect(home, &config.store, location)?;
        if !shared.ca_keys()?.is_empty() {
            return Err(failure(
                ReasonCode::CaState,
                format!(
                    "{} already holds a CA; to add an instance of it use `nuc init --join`",
                    location.describe()
                ),
            ));
        }
    }
    let report = Ca::init(home, &InitOptions::default(), &|_| {
        Ok(Box::new(
            store::connect(home, &config.store, location)
                .map_err(|e| nuc_store::StoreError::Database(e.to_string()))?,
        ))
    })?;
    // Init is the root key's first ceremony: it also signs the first root CRL.
    let (home, shared, ca) = open_ca(home, RootKey::Online)?;
    crate::tls::create_server_identity(&home, &config.grpc, &ca, shared.as_ref()).map_err(|e| {
        failure(
            ReasonCode::Internal,
            format!("TLS identity of the service: {e}"),
        )
    })?;
    // The NUC's document signer: its key in the HSM, its certificate issued (and recorded,
    // audited) like any other.
    let report_signer = ca.ensure_report_signer(shared.as_ref(), "cli:init")?;
    let report_signer_pem = match &report_signer {
        Some(made) => Some((
            made,
            crate::renew::write_report_signer_pem(&home.ca_dir(), &made.cert_der)?,
        )),
        None => None,
    };
    let root_crl = root_crl_ceremony(
        &home,
        &shared,
        &ca,
        "cli:init",
        crate::root_crl::DEFAULT_NEXT_UPDATE_DAYS,
    )?;
    for (role, alg) in &report.algorithms {
        println!("{role}: {alg} key generated in the HSM (sensitive, not extractable)");
    }
    println!(
        "audit log: ed25519 checkpoint key generated in the HSM; its verifier key, for auditors and witnesses to pin: {}",
        ca.checkpoint_signer(&config.audit.origin)?
            .verifier()
            .to_vkey()
    );
    finish(&home, config, &report)?;
    if let Some((made, path)) = report_signer_pem {
        println!(
            "report signer certificate: {} (serial {}, {} key in the HSM; renew it with `nuc report-signer renew`)",
            path.display(),
            made.serial,
            made.algorithm
        );
    }
    println!(
        "root CRL: {} (number {}, next update {}; renew it with `nuc root crl`)",
        root_crl.path.display(),
        root_crl.number,
        nuc_core::time::rfc3339(root_crl.next_update)
    );
    Ok(())
}

/// Another home of the CA in the shared store: no key made, its own TLS identity.
fn join(
    home: &Path,
    config: &Config,
    location: &Location,
    root_crl: Option<&Path>,
) -> Result<(), Failure> {
    if let Location::Sqlite(_) = location {
        return Err(invalid(
            "store_url: --join needs a shared store (a PostgreSQL URL); a SQLite file belongs to one home"
                .into(),
        ));
    }
    let shared = store::connect(home, &config.store, location)?;
    let report = Ca::join(home, shared.as_ref())?;
    let (home, shared, ca) = open_ca(home, RootKey::Offline)?;
    crate::tls::create_server_identity(&home, &config.grpc, &ca, shared.as_ref()).map_err(|e| {
        failure(
            ReasonCode::Internal,
            format!("TLS identity of the service: {e}"),
        )
    })?;
    if let Some(from) = root_crl {
        let to = home.ca_dir().join("root.crl");
        std::fs::copy(from, &to).map_err(|e| {
            invalid(format!(
                "root_crl: copying {} to {}: {e}",
                from.display(),
                to.display()
            ))
        })?;
    }
    println!(
        "joined the CA in {} (no key made; its keys are in token {:?})",
        location.describe(),
        config.hsm.token_label
    );
    finish(&home, config, &report)?;
    if root_crl.is_none() {
        println!(
            "root CRL: none yet in this home: copy the latest one (`nuc root crl` makes it) to {}",
            home.ca_dir().join("root.crl").display()
        );
    }
    Ok(())
}

/// Makes the home private and says where its certificates are.
fn finish(home: &Home, config: &Config, report: &nuc_ca::InitReport) -> Result<(), Failure> {
    // Everything init made (database, token, nuc.toml with its PINs) is the owner's alone,
    // whatever the umask was.
    crate::private_home::restrict(&home.dir).map_err(|e| {
        failure(
            ReasonCode::Internal,
            format!("{}: making the home private: {e}", home.dir.display()),
        )
    })?;
    println!("root CA certificate: {}", report.root_pem.display());
    println!("issuing CA certificate: {}", report.issuing_pem.display());
    println!("OCSP signer certificate: {}", report.ocsp_pem.display());
    println!(
        "gRPC TLS certificate of the service: {}",
        home.dir.join(&config.grpc.tls_cert).display()
    );
    Ok(())
}
