//! `nuc check --home DIR`: whether a home is fit to serve, asked before it is started (or of
//! one that runs), without changing anything in it.
//!
//! Each check prints one line, `ok: THING: …`, `warn: THING: …` or `FAIL: THING: …`, naming
//! what was looked at and why it passed or not: the configuration, the HSM (the PKCS#11
//! module, the token and the CA's keys), the database's schema version, the registry, the
//! freshness of the latest CRLs, and the remaining lifetime of the CA's and the service's
//! certificates. A FAIL means the service cannot work (or relying parties are already let
//! down); a warn means it works now but will not for long. Any FAIL ends the command with exit
//! status 1; warnings alone end it with 0, or with 1 under `--strict` (for monitoring).
//!
//! This module must never migrate the database (its version is read on a read-only
//! connection first, and the store is opened only when the version is the one this build
//! knows), sign anything, or write into the home. One exception it inherits from opening the
//! CA: a token without the audit log's key gets one, as when the service opens it.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use der::Decode;
use nuc_ca::{Ca, Home, RootCrlBy, RootKey};
use nuc_core::{Iin, ReasonCode};
use nuc_registry::{Registry, RegistryError};
use nuc_store::{CaKeyStore, CrlRow, PublicationStore, StoreError};
use x509_cert::Certificate;

use crate::cli::Failure;
use crate::config::Config;
use crate::store::{Location, Store};

/// Days before a certificate's notAfter from which it is reported (`--warn-days`).
pub const DEFAULT_WARN_DAYS: i64 = 30;

/// What the registry is asked to prove that it answers: a well-formed IIN that no person has
/// (all zeros). "Not found" is as good an answer as a record: the registry was reached.
const PROBE_IIN: &str = "000000000000";

/// A CRL is reported this close to its nextUpdate (or within a tenth of its validity, when
/// that is longer): its publisher is late.
const CRL_MARGIN_SECS: i64 = 3_600;

/// How `nuc check` judges and ends.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// A certificate expiring within this many days is a warning.
    pub warn_days: i64,
    /// Warnings also end the command with a failure.
    pub strict: bool,
}

/// How one finding is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        })
    }
}

/// Why the database is not one this build may serve from.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("no database file: run `nuc init` first")]
    Missing,
    #[error("cannot read its schema version: {0}")]
    Unreadable(#[from] StoreError),
    #[error(
        "at schema version {found}, this build expects {known}: back the database up, then \
         start this build once (`nuc serve` migrates it when it opens it)"
    )]
    Behind { found: i64, known: i64 },
    #[error(
        "at schema version {found}, newer than this build knows ({known}): run the build \
         that migrated it"
    )]
    Ahead { found: i64, known: i64 },
}

/// The findings so far, each printed as it is made.
#[derive(Debug, Default)]
struct Report {
    fails: usize,
    warns: usize,
}

impl Report {
    fn say(&mut self, verdict: Verdict, thing: impl fmt::Display, detail: impl fmt::Display) {
        match verdict {
            Verdict::Ok => {}
            Verdict::Warn => self.warns += 1,
            Verdict::Fail => self.fails += 1,
        }
        println!("{verdict}: {thing}: {detail}");
    }

    fn ok(&mut self, thing: impl fmt::Display, detail: impl fmt::Display) {
        self.say(Verdict::Ok, thing, detail);
    }

    fn warn(&mut self, thing: impl fmt::Display, detail: impl fmt::Display) {
        self.say(Verdict::Warn, thing, detail);
    }

    fn fail(&mut self, thing: impl fmt::Display, detail: impl fmt::Display) {
        self.say(Verdict::Fail, thing, detail);
    }

    /// How the command ends: a failure (exit status 1) on any FAIL, or on a warning when
    /// `strict`.
    fn end(self, strict: bool) -> Result<(), Failure> {
        if self.fails == 0 && (self.warns == 0 || !strict) {
            return Ok(());
        }
        Err(Failure {
            code: ReasonCode::Unavailable,
            message: format!(
                "check: {} failed, {} warning(s){}",
                self.fails,
                self.warns,
                if self.fails == 0 { " (--strict)" } else { "" }
            ),
        })
    }
}

/// Runs every check on the home at `dir`, printing one line per finding.
pub fn run(dir: &Path, opts: CheckOptions) -> Result<(), Failure> {
    if opts.warn_days < 0 {
        return Err(crate::cli::invalid(
            "warn-days: must not be negative".into(),
        ));
    }
    let now = nuc_core::time::now_unix();
    let mut report = Report::default();
    let config = match Config::open(dir) {
        Ok(c) => {
            report.ok("configuration", "nuc.toml parses and passes its checks");
            c
        }
        Err(e) => {
            // Everything else is named by the configuration: nothing more can be checked.
            report.fail("configuration", e);
            return report.end(opts.strict);
        }
    };
    let home = Home {
        dir: dir.into(),
        config: config.ca_settings(),
    };
    let module = &home.config.hsm.module;
    let module_present = module.is_file();
    if !module_present {
        report.fail(
            "hsm",
            format_args!(
                "PKCS#11 module {} ([hsm] module): no such file",
                module.display()
            ),
        );
    }
    let store = database(dir, &config, &mut report);
    match (&store, module_present) {
        (Some(store), true) => hsm(&home, store.as_ref(), &mut report),
        (None, true) => report.warn(
            "hsm",
            "token and CA keys not checked: their list is in the database, which is not usable (above)",
        ),
        (_, false) => {}
    }
    registry(dir, &config, &mut report);
    match &store {
        Some(store) => {
            crls(store, now, &mut report);
            ca_certificates(dir, store.as_ref(), now, opts.warn_days, &mut report);
        }
        None => report.warn(
            "CRLs and CA certificates",
            "not checked: they are in the database, which is not usable (above)",
        ),
    }
    root_crl(&home, now, &mut report);
    tls_certificate(dir, &config, now, opts.warn_days, &mut report);
    report.end(opts.strict)
}

/// The schema version of the home's database, read without migrating it; the store, opened
/// only when the version is the one this build knows.
fn database(dir: &Path, config: &Config, report: &mut Report) -> Option<Store> {
    let location = match Location::of(dir, &config.store) {
        Ok(l) => l,
        Err(e) => {
            report.fail("database", e);
            return None;
        }
    };
    let thing = format!("database {}", location.describe());
    let versions = match &location {
        Location::Sqlite(path) if !path.exists() => Err(SchemaError::Missing),
        Location::Sqlite(path) => nuc_store_sqlite::stored_version(path)
            .map(|found| (found, nuc_store_sqlite::SCHEMA_VERSION))
            .map_err(SchemaError::from),
        Location::Postgres { url, .. } => pg_options(dir, config)
            .and_then(|opts| nuc_store_postgres::stored_version(url, &opts))
            .map(|found| (found, nuc_store_postgres::SCHEMA_VERSION))
            .map_err(SchemaError::from),
    };
    let outcome = versions.and_then(|(found, known)| match found.cmp(&known) {
        std::cmp::Ordering::Less => Err(SchemaError::Behind { found, known }),
        std::cmp::Ordering::Greater => Err(SchemaError::Ahead { found, known }),
        std::cmp::Ordering::Equal => Ok(found),
    });
    let version = match outcome {
        Ok(v) => v,
        Err(e) => {
            report.fail(&thing, e);
            return None;
        }
    };
    // The version is this build's: opening the store migrates nothing.
    match crate::store::open(dir, &config.store) {
        Ok(store) => {
            report.ok(
                &thing,
                format_args!("opens, at schema version {version} as this build expects"),
            );
            Some(store)
        }
        Err(e) => {
            report.fail(&thing, e);
            None
        }
    }
}

/// How to reach PostgreSQL for the version read: `[store]` and the password, as the store
/// itself is reached.
fn pg_options(dir: &Path, config: &Config) -> Result<nuc_store_postgres::PgOptions, StoreError> {
    let cfg = &config.store;
    let password =
        crate::store::password(dir, cfg).map_err(|e| StoreError::Database(e.to_string()))?;
    Ok(nuc_store_postgres::PgOptions {
        password,
        tls_ca_file: cfg.tls_ca.as_ref().map(|p| dir.join(p)),
        pool_size: 1,
        connect_timeout: std::time::Duration::from_secs(cfg.connect_timeout_secs),
        read_url: None,
    })
}

/// The module loads, the token opens with the PIN, and the CA's keys are in it: the CA opened
/// as the service opens it (the root key looked up only when the service signs with it).
fn hsm(home: &Home, store: &dyn CaKeyStore, report: &mut Report) {
    let root_key = match home.config.publication.root_crl_by {
        RootCrlBy::Ceremony => RootKey::Offline,
        RootCrlBy::Service => RootKey::Online,
    };
    let hsm = &home.config.hsm;
    let keys = match root_key {
        RootKey::Online => "issuing, ocsp-signer and root",
        RootKey::Offline => "issuing and ocsp-signer (the root key is offline here)",
    };
    match Ca::open_with(home, store, root_key) {
        Ok(_) => report.ok(
            "hsm",
            format_args!(
                "module {} loads, token {:?} opens with the PIN, CA keys {keys} and the audit \
                 key {} are in it",
                hsm.module.display(),
                hsm.token_label,
                nuc_ca::audit_key::AUDIT_LABEL,
            ),
        ),
        Err(e) => report.fail("hsm", e),
    }
}

/// The registry answers a cheap look-up within `[registry] timeout_ms`.
fn registry(dir: &Path, config: &Config, report: &mut Report) {
    let url = &config.registry.url;
    let thing = format!("registry {url}");
    let client = match config.registry.client(dir) {
        Ok(c) => c,
        Err(e) => {
            report.fail(&thing, format_args!("[registry] {e}"));
            return;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report.fail(&thing, format_args!("not asked: no async runtime: {e}"));
            return;
        }
    };
    let probe = Iin::parse(PROBE_IIN).expect("the probe is a well-formed IIN");
    let started = Instant::now();
    match runtime.block_on(client.person(&probe)) {
        Ok(_) | Err(RegistryError::NotFound { .. }) => report.ok(
            &thing,
            format_args!("answers ({} ms)", started.elapsed().as_millis()),
        ),
        Err(e) => report.fail(&thing, e),
    }
}

/// Whether a CRL valid from `this_update` to `next_update` is still
/// fresh at `now`: past is a failure, the last tenth of its validity (at least an hour) a
/// warning.
pub fn crl_freshness(this_update: i64, next_update: i64, now: i64) -> Verdict {
    let left = next_update - now;
    let margin = ((next_update - this_update) / 10).max(CRL_MARGIN_SECS);
    if left <= 0 {
        Verdict::Fail
    } else if left < margin {
        Verdict::Warn
    } else {
        Verdict::Ok
    }
}

/// Whether a certificate expiring at `not_after` is still good at `now`: expired is a
/// failure, within `warn_days` a warning.
pub fn lifetime(not_after: i64, now: i64, warn_days: i64) -> Verdict {
    let left = not_after - now;
    if left <= 0 {
        Verdict::Fail
    } else if left < warn_days.saturating_mul(86_400) {
        Verdict::Warn
    } else {
        Verdict::Ok
    }
}

/// How long from `now` to `then`, for a reader: days, else hours, else minutes.
fn span(now: i64, then: i64) -> String {
    let secs = (then - now).abs();
    let (n, unit) = match secs {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3_600 => (s / 3_600, "hours"),
        s => (s / 60, "minutes"),
    };
    if then >= now {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

fn crl_line(report: &mut Report, thing: &str, number: String, this: i64, next: i64, now: i64) {
    let when = nuc_core::time::rfc3339(next);
    let thing = format!("{thing} number {number}");
    match crl_freshness(this, next, now) {
        Verdict::Ok => report.ok(
            thing,
            format_args!("next update {when} ({})", span(now, next)),
        ),
        Verdict::Warn => report.warn(
            thing,
            format_args!(
                "next update {when} ({}): in the last tenth of its validity; its publisher is late",
                span(now, next)
            ),
        ),
        Verdict::Fail => report.fail(
            thing,
            format_args!(
                "next update {when} passed ({}): relying parties refuse it",
                span(now, next)
            ),
        ),
    }
}

/// The latest complete and delta CRLs in the store.
fn crls(store: &Store, now: i64, report: &mut Report) {
    let latest: [(&str, Result<Option<CrlRow>, StoreError>); 2] = [
        ("full CRL", store.latest_full_crl_info()),
        ("delta CRL", store.latest_delta_crl_info()),
    ];
    for (thing, row) in latest {
        match row {
            Ok(Some(crl)) => crl_line(
                report,
                thing,
                crl.crl_number.to_string(),
                crl.this_update,
                crl.next_update,
                now,
            ),
            Ok(None) => report.warn(
                thing,
                "none in the database yet (the service publishes one when it starts)",
            ),
            Err(e) => report.fail(thing, format_args!("cannot read the latest: {e}")),
        }
    }
}

/// The root CRL the home serves (`HOME/ca/root.crl`), made by `nuc root crl`.
fn root_crl(home: &Home, now: i64, report: &mut Report) {
    match crate::root_crl::current(home) {
        Ok(Some(crl)) => crl_line(
            report,
            "root CRL",
            crl.number.to_string(),
            crl.this_update,
            crl.next_update,
            now,
        ),
        Ok(None) => report.warn(
            "root CRL",
            "none in ca/root.crl: make one (`nuc root crl`) or copy the latest there",
        ),
        Err(e) => report.fail("root CRL", e),
    }
}

/// How a certificate's remaining lifetime reads; `renew` is the command that renews it, said
/// with a warning or a failure.
fn certificate_line(
    report: &mut Report,
    thing: &str,
    cert: &Certificate,
    now: i64,
    warn_days: i64,
    renew: Option<&str>,
) {
    let renew = renew
        .map(|command| format!("; renew it: `{command}`"))
        .unwrap_or_default();
    let not_after = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration()
        .as_secs() as i64;
    let when = nuc_core::time::rfc3339(not_after);
    match lifetime(not_after, now, warn_days) {
        Verdict::Ok => report.ok(
            thing,
            format_args!("valid until {when} ({})", span(now, not_after)),
        ),
        Verdict::Warn => report.warn(
            thing,
            format_args!(
                "expires {when}, within the warning window of {warn_days} days ({}){renew}",
                span(now, not_after)
            ),
        ),
        Verdict::Fail => report.fail(
            thing,
            format_args!("expired {when} ({}){renew}", span(now, not_after)),
        ),
    }
}

/// The root, issuing and OCSP-signer certificates, as the store keeps them.
fn ca_certificates(
    dir: &Path,
    store: &dyn CaKeyStore,
    now: i64,
    warn_days: i64,
    report: &mut Report,
) {
    let keys = match store.ca_keys() {
        Ok(k) => k,
        Err(e) => {
            report.fail("CA certificates", format_args!("cannot read them: {e}"));
            return;
        }
    };
    let renew_ocsp = format!("nuc ocsp-signer renew --home {}", dir.display());
    for (role, thing, renew) in [
        ("root", "root CA certificate", None),
        ("issuing", "issuing CA certificate", None),
        (
            "ocsp-signer",
            "OCSP signer certificate",
            Some(renew_ocsp.as_str()),
        ),
    ] {
        match keys.iter().find(|k| k.role == role) {
            None => report.fail(thing, format_args!("the database has no {role} CA key")),
            Some(k) => match Certificate::from_der(&k.cert_der) {
                Ok(cert) => certificate_line(report, thing, &cert, now, warn_days, renew),
                Err(e) => report.fail(thing, format_args!("unreadable in the database: {e}")),
            },
        }
    }
}

/// The service's own TLS certificate (`[grpc] tls_cert`, the first certificate of the file).
fn tls_certificate(dir: &Path, config: &Config, now: i64, warn_days: i64, report: &mut Report) {
    let path = dir.join(&config.grpc.tls_cert);
    let thing = format!("TLS certificate {}", config.grpc.tls_cert.display());
    let pem = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.grpc.dev_plaintext => {
            report.ok(&thing, "none, and none used ([grpc] dev_plaintext)");
            return;
        }
        Err(e) => {
            report.fail(
                &thing,
                format_args!("cannot read it ([grpc] tls_cert): {e}"),
            );
            return;
        }
    };
    match Certificate::load_pem_chain(&pem) {
        Ok(chain) if !chain.is_empty() => {
            let renew = format!("nuc tls renew --home {}", dir.display());
            certificate_line(report, &thing, &chain[0], now, warn_days, Some(&renew))
        }
        Ok(_) => report.fail(&thing, "no certificate in it ([grpc] tls_cert)"),
        Err(e) => report.fail(&thing, format_args!("unreadable ([grpc] tls_cert): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_probe_is_a_well_formed_iin() {
        Iin::parse(PROBE_IIN).unwrap();
    }

    #[test]
    fn a_crl_is_late_in_its_last_tenth_or_hour_and_failed_once_past() {
        let day = 86_400;
        // A day's validity: the last 2.4 hours warn.
        assert_eq!(crl_freshness(0, day, day - 3 * 3_600), Verdict::Ok);
        assert_eq!(crl_freshness(0, day, day - 2 * 3_600), Verdict::Warn);
        assert_eq!(crl_freshness(0, day, day), Verdict::Fail);
        // Two hours' validity: the last hour warns, not only the last twelve minutes.
        assert_eq!(crl_freshness(0, 7_200, 3_000), Verdict::Ok);
        assert_eq!(crl_freshness(0, 7_200, 4_000), Verdict::Warn);
        assert_eq!(crl_freshness(0, 7_200, 9_000), Verdict::Fail);
    }

    #[test]
    fn a_certificate_warns_within_the_window_and_fails_once_expired() {
        let day = 86_400;
        assert_eq!(lifetime(100 * day, 0, 30), Verdict::Ok);
        assert_eq!(lifetime(29 * day, 0, 30), Verdict::Warn);
        assert_eq!(lifetime(0, 0, 30), Verdict::Fail);
        assert_eq!(lifetime(29 * day, 0, 0), Verdict::Ok);
        assert_eq!(lifetime(i64::MAX - 1, 0, i64::MAX), Verdict::Warn);
    }

    #[test]
    fn spans_read_in_the_largest_fitting_unit() {
        assert_eq!(span(0, 3 * 86_400), "in 3 days");
        assert_eq!(span(0, 5 * 3_600), "in 5 hours");
        assert_eq!(span(600, 0), "10 minutes ago");
    }
}
