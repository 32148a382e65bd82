//! The certification authority: bootstrap of a home, and issuance.
//!
//! Issuance follows Boulder's order: validate everything, build and lint the TBS, *reserve* the
//! serial and key in storage, have the HSM sign, then *record* the certificate. A refusal
//! changes nothing but the audit log (one `certificate.refused` record); an HSM failure after
//! the reservation leaves an `abandoned` serial, never a certificate we do not know of.
//!
//! The CA writes through an [`IssuanceLedger`] its caller gives it: it keeps the order of the
//! steps, the caller (the RA) decides what commits with each of them. The CA knows no request
//! state. Its keys and the HSM are private; what other roles may ask of it is a trait each —
//! [`Issuer`] for the RA, [`CrlSigner`] and [`OcspSigner`] for the publisher, [`ReportSigner`]
//! for the API's handlers that hand out the NUC's signed reports.
//!
//! The root key is not the service's: by default ([`Ca::open`] with `[publication] root_crl_by
//! = "ceremony"`) the CA never even looks it up, and what the root signs is made by an
//! administrator's ceremony ([`Ca::open_for_ceremony`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use const_oid::ObjectIdentifier;
use der::{Decode, Encode, EncodePem};
use nuc_core::{Identification, KeyStorage, SubjectInfo};
use nuc_store::{AuditEntry, CaKeyRow, CaKeyStore, IssuanceLedger, Reservation, StoreError};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::name::Name;

use crate::csr::{self, CheckedCsr};
use crate::error::CaError;
use crate::home::{CaSettings, Home, PublicationConfig, RootCrlBy};
use crate::lint::{LintContext, lint};
use crate::ocsp_signer::OcspResponder;
use crate::policy::{DEFAULT_PROFILES, Policy, Profile};
use crate::subject::distinguished_name;
use crate::tbs::{self, TbsInput, encode_name, fixed_attr, key_identifier};
use nuc_hsm::{Hsm, HsmKey, HsmLane, KeyAlgorithm};

/// HSM labels of the CA's own keys.
pub const ROOT_LABEL: &str = "nuc-root";
pub const ISSUING_LABEL: &str = "nuc-issuing";
pub const OCSP_LABEL: &str = "nuc-ocsp";

/// What an issuance asks for. The subject comes from the registry (or the administrator),
/// the request contributes only its key.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub profile: String,
    pub csr: Vec<u8>,
    pub subject: SubjectInfo,
    pub role: Option<String>,
    /// How the applicant was identified, for profiles that record it (default in person).
    pub identification: Option<Identification>,
    pub dns_names: Vec<String>,
    /// Who asks, for the audit log.
    pub actor: String,
    /// The RA request this issuance answers, if any.
    pub request_number: Option<String>,
    /// Where the key was generated; keys on cards may get a longer validity.
    pub key_storage: KeyStorage,
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub serial_hex: String,
    pub der: Vec<u8>,
    pub subject: String,
    pub profile: String,
}

impl Issued {
    pub fn pem(&self) -> String {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der)
            .expect("PEM of DER bytes")
    }
}

/// An issuance checked and linted, ready to reserve and sign.
struct Prepared {
    reservation: Reservation,
    reserved_audit: AuditEntry,
    tbs_der: Vec<u8>,
    actor: String,
}

/// The public half of one of the CA's keys: its certificate and what a signature by it names.
#[derive(Debug, Clone)]
pub struct CaIdentity {
    pub cert_der: Vec<u8>,
    pub subject: Name,
    /// The subjectKeyIdentifier (and the authorityKeyIdentifier of what it signs).
    pub key_id: Vec<u8>,
    pub not_after: i64,
    pub algorithm: KeyAlgorithm,
    pub spki: SubjectPublicKeyInfoOwned,
}

/// A CA key in the HSM with its certificate. Never leaves this crate.
#[derive(Debug, Clone)]
pub(crate) struct CaSigner {
    pub(crate) id: CaIdentity,
    pub(crate) key: HsmKey,
}

impl CaIdentity {
    /// What a CA certificate says about its key, without the key.
    fn from_certificate(cert_der: Vec<u8>, algorithm: KeyAlgorithm) -> Result<Self, CaError> {
        let cert = Certificate::from_der(&cert_der)?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info().clone();
        Ok(Self {
            key_id: key_identifier(&spki),
            subject: tbs.subject().clone(),
            not_after: tbs.validity().not_after.to_unix_duration().as_secs() as i64,
            algorithm,
            spki,
            cert_der,
        })
    }
}

impl CaSigner {
    pub(crate) fn new(key: HsmKey, cert_der: Vec<u8>) -> Result<Self, CaError> {
        let id = CaIdentity::from_certificate(cert_der, key.algorithm)?;
        if id.spki.to_der()? != key.spki.to_der()? {
            return Err(CaError::CaState(format!(
                "the certificate stored for HSM key {:?} does not match the key in the token",
                key.label
            )));
        }
        Ok(Self { id, key })
    }

    /// A signature over `data` by this key, in the encoding certificates and CRLs carry.
    fn sign(&self, hsm: &Hsm, data: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(hsm.sign(&self.key, data)?)
    }
}

/// An opened CA: its policy, the publication URLs it writes into certificates, the HSM session
/// pool, and its keys. Nothing here is public: the roles reach it through [`Issuer`],
/// [`CrlSigner`], [`OcspSigner`] and [`ReportSigner`].
///
/// The root key is held only when this opening may sign with it (see [`RootKey`]); otherwise
/// the root is its certificate alone, and the token's root key object is never looked up.
pub struct Ca {
    pub(crate) policy: Policy,
    publication: PublicationConfig,
    pub(crate) hsm: Arc<Hsm>,
    pub(crate) issuing: CaSigner,
    root: CaIdentity,
    root_key: Option<HsmKey>,
    /// The delegated OCSP responder (role `ocsp-signer`; key `OCSP_LABEL`, or the label of
    /// its renewal): swapped whole, certificate and key together, when it is renewed
    /// ([`crate::ocsp_signer`]).
    pub(crate) ocsp: RwLock<Arc<OcspResponder>>,
    /// Sessions set apart for OCSP signatures ([`Ca::set_ocsp_lane`]): anyone on the network
    /// can ask for one, so they must never queue in front of issuance.
    pub(crate) ocsp_lane: Option<Arc<HsmLane>>,
    /// The audit log's checkpoint key ([`crate::audit_key`]).
    audit_key: nuc_hsm::Ed25519Key,
    /// The report signer in force (role `report-signer`), if the store names one: swapped
    /// whole, certificate and key together, when it is made or renewed
    /// ([`crate::report_signer`]).
    pub(crate) report: RwLock<Option<Arc<CaSigner>>>,
}

/// Whether an opening of the CA looks up the root key in the HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKey {
    /// Never: the root is its certificate alone, and any signature by it is refused
    /// ([`CaError::RootKeyOffline`]).
    Offline,
    /// Found in the token and held: for the root's ceremonies, or the service when
    /// `[publication] root_crl_by = "service"`.
    Online,
}

/// Opens (creating) the store at the path a new home wants: the CA opens no database itself.
pub type OpenStore<'a> = dyn Fn(&Path) -> Result<Box<dyn CaKeyStore>, StoreError> + 'a;

/// What a new home's `nuc.toml` gets when [`Ca::init`] writes it (none exists yet): the CA's
/// sections only. `nuc init` writes the whole file itself first, so these are ignored there.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The HTTP address the certificates' URLs point at.
    pub http_listen: Option<String>,
    pub root_key: Option<String>,
    pub issuing_key: Option<String>,
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub root_pem: PathBuf,
    pub issuing_pem: PathBuf,
    pub ocsp_pem: PathBuf,
    pub algorithms: [(String, String); 3],
}

pub(crate) fn serial_bytes() -> Result<[u8; 20], CaError> {
    let mut s = [0u8; 20];
    getrandom::fill(&mut s).map_err(|e| CaError::CaState(format!("no randomness: {e}")))?;
    // 20 octets, positive and with a non-zero first octet, so the DER INTEGER is exactly 20.
    s[0] &= 0x7f;
    if s[0] == 0 {
        s[0] = 0x01;
    }
    Ok(s)
}

pub(crate) fn key_alg(field: &str, s: &str) -> Result<KeyAlgorithm, CaError> {
    KeyAlgorithm::from_str(s).map_err(|e| CaError::invalid(field, e.to_string()))
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    std::fs::write(path, contents).map_err(|source| {
        CaError::Home(crate::home::HomeError::Io {
            path: path.into(),
            source,
        })
    })
}

fn mkdir(path: &Path) -> Result<(), CaError> {
    std::fs::create_dir_all(path).map_err(|source| {
        CaError::Home(crate::home::HomeError::Io {
            path: path.into(),
            source,
        })
    })
}

/// Removes what a failed `init` created, so that it can simply be run again.
struct InitRollback {
    created: Vec<PathBuf>,
    armed: bool,
}

impl Drop for InitRollback {
    fn drop(&mut self) {
        if self.armed {
            for p in self.created.iter().rev() {
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
            }
        }
    }
}

/// Signs a TBS with a CA key, returning the certificate DER.
fn sign_tbs(hsm: &Hsm, key: &HsmKey, tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let signature = hsm.sign(key, tbs_der)?;
    Ok(tbs::assemble(
        tbs_der,
        key.algorithm.signature_algorithm(),
        &signature,
    )?)
}

/// Builds, lints and signs one of the CA's own certificates.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ca_certificate(
    hsm: &Hsm,
    policy: &Policy,
    urls: &PublicationConfig,
    profile: &Profile,
    subject_key: &HsmKey,
    signer_key: &HsmKey,
    issuer: Option<&CaSigner>,
    now: i64,
) -> Result<Vec<u8>, CaError> {
    let dn = profile
        .subject
        .iter()
        .map(|a| {
            fixed_attr(&a.attr, &a.value).ok_or_else(|| {
                CaError::invalid(
                    "policy",
                    format!("profile {}: unknown attribute {}", profile.name, a.attr),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let subject = encode_name(&dn)?;
    let issuer_name = issuer
        .map(|i| i.id.subject.clone())
        .unwrap_or_else(|| subject.clone());
    let mut not_after = now + i64::from(profile.validity_days) * 86_400 - 1;
    if let Some(i) = issuer {
        not_after = not_after.min(i.id.not_after);
    }
    let serial = serial_bytes()?;
    let input = TbsInput {
        profile,
        policy,
        urls,
        serial: &serial,
        signature_algorithm: signer_key.algorithm.signature_algorithm(),
        issuer: issuer_name.clone(),
        issuer_key_id: issuer.map(|i| i.id.key_id.clone()),
        not_before: now,
        not_after,
        subject,
        spki: subject_key.spki.clone(),
        key_usage: profile.key_usage.clone(),
        extended_key_usage: profile.extended_key_usage.clone(),
        email: None,
        dns_names: vec![],
    };
    let tbs_der = tbs::build(&input)?;
    lint(
        &tbs_der,
        &LintContext {
            profile,
            policy_oid: policy.policy_oid,
            issuer: &issuer_name,
            issuer_key_id: issuer.map(|i| i.id.key_id.as_slice()),
            issuer_not_after: issuer.map(|i| i.id.not_after),
            key_usage: &profile.key_usage,
            extended_key_usage: &profile.extended_key_usage,
            key_on_card: false,
        },
    )
    .map_err(|f| CaError::LintFailed(f.join("; ")))?;
    sign_tbs(hsm, signer_key, &tbs_der)
}

impl Ca {
    /// Creates a home with its CA: config (if absent), policy copy, token, database, the three
    /// keys inside the HSM, their certificates. Refuses a home that already has a CA, and
    /// removes what it created if anything fails.
    ///
    /// The CA opens no database: `open_store` does, given the path the home wants, and the
    /// CA's keys and the audit record of their creation are written through it.
    pub fn init(
        dir: &Path,
        opts: &InitOptions,
        open_store: &OpenStore<'_>,
    ) -> Result<InitReport, CaError> {
        let mut rollback = InitRollback {
            created: vec![],
            armed: true,
        };
        if !dir.exists() {
            mkdir(dir)?;
            rollback.created.push(dir.into());
        }
        let config_path = Home::config_path(dir);
        let fresh_config = !config_path.exists();
        let home = if fresh_config {
            let mut config =
                CaSettings::dev(opts.http_listen.as_deref().unwrap_or("127.0.0.1:8470"));
            if let Some(k) = &opts.root_key {
                config.ca.root_key = k.clone();
            }
            if let Some(k) = &opts.issuing_key {
                config.ca.issuing_key = k.clone();
            }
            Home {
                dir: dir.into(),
                config,
            }
        } else {
            Home::open(dir)?
        };
        let existing = [home.db_path(), home.ca_dir().join("root.pem")];
        if let Some(p) = existing.iter().find(|p| p.exists()) {
            rollback.armed = false;
            return Err(CaError::CaState(format!(
                "{} already has a CA ({} exists); nothing was changed",
                dir.display(),
                p.display()
            )));
        }
        let algs = [
            ("root", key_alg("root_key", &home.config.ca.root_key)?),
            (
                "issuing",
                key_alg("issuing_key", &home.config.ca.issuing_key)?,
            ),
            (
                "ocsp-signer",
                key_alg("ocsp_key", &home.config.ca.ocsp_key)?,
            ),
        ];
        if !home.softhsm2_env_ok() {
            return Err(CaError::CaState(format!(
                "SOFTHSM2_CONF must point at {} before the PKCS#11 module loads",
                home.softhsm2_conf()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        if fresh_config {
            let text =
                toml::to_string(&home.config).map_err(|e| CaError::CaState(e.to_string()))?;
            let header = "# NUC RK core service configuration (written by `nuc init`; see README.md).\n\
                          # PINs here are dev defaults: production sets NUC_HSM_PIN / NUC_HSM_SO_PIN instead.\n\n";
            write_file(&config_path, format!("{header}{text}").as_bytes())?;
            rollback.created.push(config_path.clone());
        }
        let policy_path = home.policy_path();
        if !policy_path.exists() {
            let parent = policy_path.parent().expect("policy file has a directory");
            if !parent.exists() {
                mkdir(parent)?;
                rollback.created.push(parent.into());
            }
            write_file(&policy_path, DEFAULT_PROFILES.as_bytes())?;
            rollback.created.push(policy_path.clone());
        }
        let policy =
            Policy::from_toml(&std::fs::read_to_string(&policy_path).map_err(|source| {
                crate::home::HomeError::Io {
                    path: policy_path.clone(),
                    source,
                }
            })?)?;
        if let Some(conf) = home.softhsm2_conf() {
            let hsm_dir = conf.parent().expect("conf has a directory").to_path_buf();
            let tokens = hsm_dir.join("tokens");
            if !hsm_dir.exists() {
                mkdir(&hsm_dir)?;
                rollback.created.push(hsm_dir.clone());
            }
            mkdir(&tokens)?;
            rollback.created.push(tokens.clone());
            if !conf.exists() {
                let text = format!(
                    "# SoftHSM2 configuration of this NUC home (see hsm-sim/README.md).\n\
                     directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                    tokens.canonicalize().unwrap_or(tokens.clone()).display()
                );
                write_file(&conf, text.as_bytes())?;
                rollback.created.push(conf.clone());
            }
        }
        let hsm_cfg = &home.config.hsm;
        let (so_pin, user_pin) = (hsm_cfg.so_pin()?, hsm_cfg.user_pin()?);
        Hsm::create_token(&hsm_cfg.module, &hsm_cfg.token_label, &so_pin, &user_pin)?;
        let hsm = Hsm::open(&hsm_cfg.module, &hsm_cfg.token_label, &user_pin)?;
        let started = std::time::Instant::now();
        let root_key = hsm.generate_key(ROOT_LABEL, algs[0].1)?;
        let issuing_key = hsm.generate_key(ISSUING_LABEL, algs[1].1)?;
        let ocsp_key = hsm.generate_key(OCSP_LABEL, algs[2].1)?;
        hsm.generate_ed25519(crate::audit_key::AUDIT_LABEL)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "CA keys generated in the HSM"
        );

        let now = nuc_core::time::now_unix();
        let p = |n: &str| {
            policy
                .profiles
                .get(n)
                .ok_or_else(|| CaError::CaState(format!("policy lacks profile {n}")))
        };
        let root_der = ca_certificate(
            &hsm,
            &policy,
            &home.config.publication,
            p("root")?,
            &root_key,
            &root_key,
            None,
            now,
        )?;
        let root = CaSigner::new(root_key, root_der)?;
        let issuing_der = ca_certificate(
            &hsm,
            &policy,
            &home.config.publication,
            p("issuing")?,
            &issuing_key,
            &root.key,
            Some(&root),
            now,
        )?;
        let issuing = CaSigner::new(issuing_key, issuing_der)?;
        let ocsp_der = ca_certificate(
            &hsm,
            &policy,
            &home.config.publication,
            p("ocsp-signer")?,
            &ocsp_key,
            &issuing.key,
            Some(&issuing),
            now,
        )?;

        let ca_dir = home.ca_dir();
        mkdir(&ca_dir)?;
        rollback.created.push(ca_dir.clone());
        let db_path = home.db_path();
        rollback.created.extend([
            db_path.clone(),
            db_path.with_extension("db-wal"),
            db_path.with_extension("db-shm"),
        ]);
        let store = open_store(&db_path)?;
        let rows = [
            ("root", ROOT_LABEL, algs[0].1, root.id.cert_der.clone()),
            (
                "issuing",
                ISSUING_LABEL,
                algs[1].1,
                issuing.id.cert_der.clone(),
            ),
            ("ocsp-signer", OCSP_LABEL, algs[2].1, ocsp_der.clone()),
        ]
        .map(|(role, label, alg, der)| CaKeyRow {
            role: role.into(),
            hsm_label: label.into(),
            algorithm: alg.to_string(),
            cert_der: der,
        });
        let pem = |der: &[u8]| -> Result<String, CaError> {
            Ok(Certificate::from_der(der)?.to_pem(der::pem::LineEnding::LF)?)
        };
        let (root_pem, issuing_pem, ocsp_pem) = (
            pem(&root.id.cert_der)?,
            pem(&issuing.id.cert_der)?,
            pem(&ocsp_der)?,
        );
        let paths = [
            ca_dir.join("root.pem"),
            ca_dir.join("issuing.pem"),
            ca_dir.join("ocsp-signer.pem"),
        ];
        write_file(&paths[0], root_pem.as_bytes())?;
        write_file(&paths[1], issuing_pem.as_bytes())?;
        write_file(&paths[2], ocsp_pem.as_bytes())?;
        write_file(
            &ca_dir.join("chain.pem"),
            format!("{issuing_pem}{root_pem}").as_bytes(),
        )?;
        let fingerprint = |der: &[u8]| hex::encode(openssl::sha::sha256(der));
        store.put_ca_keys(
            &rows,
            &AuditEntry {
                actor: "cli:init".into(),
                action: "ca.initialised".into(),
                object: format!("token:{}", hsm_cfg.token_label),
                details: serde_json::json!({
                    "root": { "algorithm": algs[0].1.to_string(), "sha256": fingerprint(&root.id.cert_der) },
                    "issuing": { "algorithm": algs[1].1.to_string(), "sha256": fingerprint(&issuing.id.cert_der) },
                    "ocsp_signer": { "algorithm": algs[2].1.to_string(), "sha256": fingerprint(&ocsp_der) },
                }),
            },
        )?;
        rollback.armed = false;
        let [r, i, o] = paths;
        Ok(InitReport {
            root_pem: r,
            issuing_pem: i,
            ocsp_pem: o,
            algorithms: algs.map(|(role, a)| (role.to_string(), a.to_string())),
        })
    }

    /// Makes `dir` (its `nuc.toml` already written) another home of the CA whose keys `keys`
    /// holds: the policy, the CA certificates as files, and a check that the token this home
    /// names holds every key of the CA. No key is made; nothing in the store changes. Removes
    /// what it wrote if anything fails.
    pub fn join(dir: &Path, keys: &dyn CaKeyStore) -> Result<InitReport, CaError> {
        let mut rollback = InitRollback {
            created: vec![],
            armed: true,
        };
        let home = Home::open(dir)?;
        if home.ca_dir().join("root.pem").exists() {
            rollback.armed = false;
            return Err(CaError::CaState(format!(
                "{} already has a CA; nothing was changed",
                dir.display()
            )));
        }
        let rows = keys.ca_keys()?;
        if rows.is_empty() {
            rollback.armed = false;
            return Err(CaError::CaState(
                "the store holds no CA to join: run `nuc init` without --join first".into(),
            ));
        }
        if !home.softhsm2_env_ok() {
            return Err(CaError::CaState(format!(
                "SOFTHSM2_CONF must point at {} before the PKCS#11 module loads",
                home.softhsm2_conf()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        let policy_path = home.policy_path();
        if !policy_path.exists() {
            let parent = policy_path.parent().expect("policy file has a directory");
            if !parent.exists() {
                mkdir(parent)?;
                rollback.created.push(parent.into());
            }
            write_file(&policy_path, DEFAULT_PROFILES.as_bytes())?;
            rollback.created.push(policy_path.clone());
        }
        let ca_dir = home.ca_dir();
        mkdir(&ca_dir)?;
        rollback.created.push(ca_dir.clone());
        let pem = |role: &str| -> Result<String, CaError> {
            let row = rows
                .iter()
                .find(|k| k.role == role)
                .ok_or_else(|| CaError::CaState(format!("the store has no {role} CA key")))?;
            Ok(Certificate::from_der(&row.cert_der)?.to_pem(der::pem::LineEnding::LF)?)
        };
        let (root_pem, issuing_pem, ocsp_pem) =
            (pem("root")?, pem("issuing")?, pem("ocsp-signer")?);
        let paths = [
            ca_dir.join("root.pem"),
            ca_dir.join("issuing.pem"),
            ca_dir.join("ocsp-signer.pem"),
        ];
        write_file(&paths[0], root_pem.as_bytes())?;
        write_file(&paths[1], issuing_pem.as_bytes())?;
        write_file(&paths[2], ocsp_pem.as_bytes())?;
        write_file(
            &ca_dir.join("chain.pem"),
            format!("{issuing_pem}{root_pem}").as_bytes(),
        )?;
        // The token must hold the CA's keys: the service's two, and the root's unless this
        // home leaves it to ceremonies.
        Self::open(&home, keys)?;
        let algorithm = |role: &str| {
            rows.iter()
                .find(|k| k.role == role)
                .map(|k| k.algorithm.clone())
                .unwrap_or_default()
        };
        rollback.armed = false;
        let [r, i, o] = paths;
        Ok(InitReport {
            root_pem: r,
            issuing_pem: i,
            ocsp_pem: o,
            algorithms: ["root", "issuing", "ocsp-signer"]
                .map(|role| (role.to_string(), algorithm(role))),
        })
    }

    /// Opens an initialised home as the service does: policy, HSM login, and the CA's keys
    /// (their certificates read from `keys`). The root key is looked up only when
    /// `[publication] root_crl_by = "service"`; by default it stays offline.
    pub fn open(home: &Home, keys: &dyn CaKeyStore) -> Result<Self, CaError> {
        let root_key = match home.config.publication.root_crl_by {
            RootCrlBy::Ceremony => RootKey::Offline,
            RootCrlBy::Service => RootKey::Online,
        };
        Self::open_with(home, keys, root_key)
    }

    /// Opens an initialised home for one of the root's ceremonies: the root key must be in
    /// the token, whatever `[publication] root_crl_by` says.
    pub fn open_for_ceremony(home: &Home, keys: &dyn CaKeyStore) -> Result<Self, CaError> {
        Self::open_with(home, keys, RootKey::Online)
    }

    /// Opens an initialised home, with the root key or without it.
    pub fn open_with(
        home: &Home,
        keys: &dyn CaKeyStore,
        root_key: RootKey,
    ) -> Result<Self, CaError> {
        if !home.softhsm2_env_ok() {
            return Err(CaError::CaState(
                "SOFTHSM2_CONF does not point at this home's token".into(),
            ));
        }
        let policy_path = home.policy_path();
        let policy =
            Policy::from_toml(&std::fs::read_to_string(&policy_path).map_err(|source| {
                crate::home::HomeError::Io {
                    path: policy_path.clone(),
                    source,
                }
            })?)?;
        let hsm_cfg = &home.config.hsm;
        let hsm = Hsm::open(&hsm_cfg.module, &hsm_cfg.token_label, &hsm_cfg.user_pin()?)?;
        let keys = keys.ca_keys()?;
        if keys.is_empty() {
            return Err(CaError::CaState(format!(
                "{} has no CA: run `nuc init` first",
                home.dir.display()
            )));
        }
        let signer = |role: &str| -> Result<CaSigner, CaError> {
            let row = keys
                .iter()
                .find(|k| k.role == role)
                .ok_or_else(|| CaError::CaState(format!("database has no {role} CA key")))?;
            let key = hsm.find_key(&row.hsm_label, key_alg("algorithm", &row.algorithm)?)?;
            CaSigner::new(key, row.cert_der.clone())
        };
        let issuing = signer("issuing")?;
        let ocsp = signer("ocsp-signer")?;
        let (root, root_key) = match root_key {
            RootKey::Online => {
                let root = signer("root")?;
                (root.id, Some(root.key))
            }
            RootKey::Offline => {
                let row = keys
                    .iter()
                    .find(|k| k.role == "root")
                    .ok_or_else(|| CaError::CaState("database has no root CA key".into()))?;
                let root = CaIdentity::from_certificate(
                    row.cert_der.clone(),
                    key_alg("algorithm", &row.algorithm)?,
                )?;
                (root, None)
            }
        };
        let audit_key = crate::audit_key::find_or_make(&hsm)?;
        let hsm = Arc::new(hsm);
        let report_row = keys
            .iter()
            .find(|k| k.role == crate::report_signer::REPORT_SIGNER_ROLE)
            .cloned();
        let ca = Self {
            policy,
            publication: home.config.publication.clone(),
            ocsp: RwLock::new(Arc::new(OcspResponder::new(
                issuing.id.clone(),
                ocsp,
                hsm.clone(),
                None,
            ))),
            hsm,
            issuing,
            root,
            root_key,
            ocsp_lane: None,
            audit_key,
            report: RwLock::new(None),
        };
        // Optional: a home made before the report signer gets one at the service's start. One
        // that cannot be used (expired, key missing) leaves the CA without one, so that every
        // other command, its renewal first, still works; only reports are refused.
        if let Some(row) = report_row {
            match ca.report_signer_from_row(&row) {
                Ok(signer) => {
                    *ca.report.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(signer));
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "the report signer the store names is not usable: reports cannot be signed until it is renewed (`nuc report-signer renew`)"
                ),
            }
        }
        Ok(ca)
    }

    /// Signs OCSP responses from now on on `sessions` HSM sessions of their own, with at most
    /// `queue` responses waiting for one; beyond that a signature is refused at once
    /// (`HsmError::Saturated`, reason `UNAVAILABLE`) instead of waiting. Without a lane, OCSP
    /// signs on the shared pool.
    pub fn set_ocsp_lane(&mut self, sessions: usize, queue: usize) -> Result<(), CaError> {
        if sessions == 0 {
            return Err(CaError::invalid(
                "[ocsp] signing_sessions",
                "must be at least 1 (OCSP responses need a signature)",
            ));
        }
        let lane = Arc::new(self.hsm.lane(sessions, queue)?);
        self.ocsp_lane = Some(lane.clone());
        // The responder in force signs on the lane from now on too.
        let current = self.ocsp();
        self.install_ocsp(Arc::new(current.with_lane(Some(lane))));
        Ok(())
    }

    /// The issuing CA's certificate and key names.
    pub fn issuing(&self) -> &CaIdentity {
        &self.issuing.id
    }

    /// The root CA's certificate and key names.
    pub fn root(&self) -> &CaIdentity {
        &self.root
    }

    /// Whether this opening holds the root key (it signs the root CRL) or left it offline.
    pub fn root_key(&self) -> RootKey {
        if self.root_key.is_some() {
            RootKey::Online
        } else {
            RootKey::Offline
        }
    }

    /// Whether the HSM answers on a pooled, logged-in session (readiness), without signing.
    pub fn check_hsm(&self) -> Result<(), CaError> {
        Ok(self.hsm.check_session()?)
    }

    /// The signer of the audit log's checkpoints, under the log's name `origin`.
    pub fn checkpoint_signer(
        &self,
        origin: &str,
    ) -> Result<crate::audit_key::CheckpointSigner<'_>, CaError> {
        crate::audit_key::CheckpointSigner::new(&self.hsm, &self.audit_key, origin)
    }

    /// The URLs certificates and CRLs carry.
    pub fn publication(&self) -> &PublicationConfig {
        &self.publication
    }

    pub(crate) fn sign_with_issuing(&self, data: &[u8]) -> Result<Vec<u8>, CaError> {
        self.issuing.sign(&self.hsm, data)
    }

    pub(crate) fn sign_with_root(&self, data: &[u8]) -> Result<Vec<u8>, CaError> {
        let key = self.root_key.as_ref().ok_or(CaError::RootKeyOffline)?;
        Ok(self.hsm.sign(key, data)?)
    }

    /// The certificate profiles and OIDs this CA issues by.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The HSM and the issuing key, for the benchmarks that measure the raw signing rate of
    /// the token (the limit every issuance ratio is measured against). Not for issuing.
    #[cfg(feature = "bench")]
    pub fn bench_issuing_key(&self) -> (&Hsm, &HsmKey) {
        (self.hsm.as_ref(), &self.issuing.key)
    }

    /// Everything before the reservation: profile, role, subject, key, TBS, lint. `max_days`
    /// shortens the profile's validity (never lengthens it).
    fn prepare(&self, req: &IssueRequest, max_days: Option<u32>) -> Result<Prepared, CaError> {
        let profile = self.policy.end_entity(&req.profile).ok_or_else(|| {
            CaError::invalid(
                "profile",
                format!(
                    "unknown profile {:?} (known: {})",
                    req.profile,
                    self.policy.end_entity_names().join(", ")
                ),
            )
        })?;
        let role_oid = match (&req.role, profile.roles.is_empty()) {
            (None, true) => None,
            (Some(r), true) => {
                return Err(CaError::invalid(
                    "role",
                    format!("profile {} takes no role (got {r:?})", profile.name),
                ));
            }
            (None, false) if profile.role_optional => None,
            (None, false) => {
                return Err(CaError::invalid(
                    "role",
                    format!(
                        "profile {} requires one of: {}",
                        profile.name,
                        profile.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            (Some(r), false) => Some(*profile.roles.get(r).ok_or_else(|| {
                CaError::invalid(
                    "role",
                    format!(
                        "unknown role {r:?} for profile {} (known: {})",
                        profile.name,
                        profile.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?),
        };
        let ident_oid = match (profile.identification, &req.identification) {
            (true, m) => {
                let m = m.unwrap_or(Identification::InPerson).as_str();
                Some(*self.policy.identification.get(m).ok_or_else(|| {
                    CaError::invalid(
                        "identification",
                        format!(
                            "unknown method {m:?} (known: {})",
                            self.policy
                                .identification
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?)
            }
            (false, Some(_)) => {
                return Err(CaError::invalid(
                    "identification",
                    format!("profile {} records no identification method", profile.name),
                ));
            }
            (false, None) => None,
        };
        if !req.dns_names.is_empty() && profile.kind != crate::policy::ProfileKind::System {
            return Err(CaError::invalid(
                "dns",
                format!("profile {} takes no DNS names", profile.name),
            ));
        }
        for d in &req.dns_names {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(CaError::invalid("dns", format!("{d:?} is not a DNS name")));
            }
        }
        let dn = distinguished_name(profile, &req.subject)?;
        let checked: CheckedCsr = csr::check(&req.csr, profile)?;
        // A key already certified is refused atomically by the reservation below.
        let key_usage: Vec<KeyUsages> = match (&profile.key_usage_ec, checked.algorithm) {
            (Some(ec), KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) => ec.clone(),
            _ => profile.key_usage.clone(),
        };
        let mut eku: Vec<ObjectIdentifier> = profile.extended_key_usage.clone();
        eku.extend(role_oid);
        eku.extend(ident_oid);

        let subject = encode_name(&dn)?;
        let now = nuc_core::time::now_unix();
        let validity_days = if req.key_storage.on_card() {
            profile.validity_days_on_card.ok_or_else(|| {
                CaError::invalid(
                    "key_storage",
                    format!("profile {} is not issued for keys on cards", profile.name),
                )
            })?
        } else {
            profile.validity_days
        };
        let validity_days = max_days.map_or(validity_days, |d| d.min(validity_days));
        let not_after =
            (now + i64::from(validity_days) * 86_400 - 1).min(self.issuing.id.not_after);
        let serial = serial_bytes()?;
        let input = TbsInput {
            profile,
            policy: &self.policy,
            urls: &self.publication,
            serial: &serial,
            signature_algorithm: self.issuing.key.algorithm.signature_algorithm(),
            issuer: self.issuing.id.subject.clone(),
            issuer_key_id: Some(self.issuing.id.key_id.clone()),
            not_before: now,
            not_after,
            subject: subject.clone(),
            spki: checked.spki.clone(),
            key_usage: key_usage.clone(),
            extended_key_usage: eku.clone(),
            email: req.subject.email.clone(),
            dns_names: req.dns_names.clone(),
        };
        let tbs_der = tbs::build(&input)?;
        lint(
            &tbs_der,
            &LintContext {
                profile,
                policy_oid: self.policy.policy_oid,
                issuer: &self.issuing.id.subject,
                issuer_key_id: Some(&self.issuing.id.key_id),
                issuer_not_after: Some(self.issuing.id.not_after),
                key_usage: &key_usage,
                extended_key_usage: &eku,
                key_on_card: req.key_storage.on_card(),
            },
        )
        .map_err(|f| CaError::LintFailed(f.join("; ")))?;

        let serial_hex = hex::encode(serial);
        let subject_text = crate::cert::dn_text(&subject);
        Ok(Prepared {
            reservation: Reservation {
                serial: serial_hex.clone(),
                profile: profile.name.clone(),
                subject: subject_text.clone(),
                iin: req.subject.iin.as_ref().map(|i| i.to_string()),
                bin: req.subject.organization.as_ref().map(|o| o.bin.to_string()),
                spki_sha256: checked.spki_sha256.clone(),
                not_before: now,
                not_after,
                request_number: req.request_number.clone(),
            },
            reserved_audit: AuditEntry {
                actor: req.actor.clone(),
                action: "certificate.reserved".into(),
                object: format!("serial:{serial_hex}"),
                details: serde_json::json!({ "profile": profile.name, "spki_sha256": checked.spki_sha256 }),
            },
            tbs_der,
            actor: req.actor.clone(),
        })
    }

    /// Reserves, signs in the HSM, records: two commits for the whole batch, each carrying
    /// what the ledger's owner composed with it. If the HSM fails, every reservation of the
    /// batch is abandoned.
    fn complete(
        &self,
        prepared: Vec<Prepared>,
        ledger: &dyn IssuanceLedger,
    ) -> Result<Vec<Issued>, CaError> {
        let items: Vec<_> = prepared
            .iter()
            .map(|p| (p.reservation.clone(), p.reserved_audit.clone()))
            .collect();
        ledger.reserve(&items)?;
        let mut signed = Vec::with_capacity(prepared.len());
        for p in &prepared {
            match sign_tbs(&self.hsm, &self.issuing.key, &p.tbs_der) {
                Ok(der) => signed.push(der),
                Err(e) => {
                    for q in &prepared {
                        let _ = ledger.abandon(
                            &q.reservation.serial,
                            &AuditEntry {
                                actor: q.actor.clone(),
                                action: "certificate.abandoned".into(),
                                object: format!("serial:{}", q.reservation.serial),
                                details: serde_json::json!({ "reason": e.reason().as_str(), "message": e.to_string() }),
                            },
                        );
                    }
                    return Err(e);
                }
            }
        }
        let records: Vec<_> = prepared
            .iter()
            .zip(&signed)
            .map(|(p, der)| {
                let r = &p.reservation;
                (
                    r.serial.clone(),
                    der.clone(),
                    AuditEntry {
                        actor: p.actor.clone(),
                        action: "certificate.issued".into(),
                        object: format!("serial:{}", r.serial),
                        details: serde_json::json!({
                            "profile": r.profile,
                            "subject": r.subject,
                            "sha256": hex::encode(openssl::sha::sha256(der)),
                        }),
                    },
                )
            })
            .collect();
        ledger.record(&records)?;
        Ok(prepared
            .into_iter()
            .zip(signed)
            .map(|(p, der)| {
                tracing::info!(serial = %p.reservation.serial, profile = %p.reservation.profile, "certificate issued");
                metrics::counter!("nuc_certificates_issued_total", "profile" => p.reservation.profile.clone())
                    .increment(1);
                Issued {
                    serial_hex: p.reservation.serial,
                    der,
                    subject: p.reservation.subject,
                    profile: p.reservation.profile,
                }
            })
            .collect())
    }

    /// Issues the certificates of `orders` together, written through `ledger`: the
    /// reservations in one commit, the certificates in another. Nothing is reserved if any
    /// order is refused; a refusal is audited (`certificate.refused`) and changes nothing else.
    pub fn issue(
        &self,
        orders: &[IssueRequest],
        ledger: &dyn IssuanceLedger,
    ) -> Result<Vec<Issued>, CaError> {
        self.issue_for_days(orders, ledger, None)
    }

    /// [`Ca::issue`], each certificate valid at most `max_days` days (within its profile's
    /// validity): what a renewal of the service's own TLS certificate asks for.
    ///
    /// The profile of the NUC's report signer is refused here: its certificates are made by
    /// the CA alone, for its own key in the HSM ([`crate::report_signer`]), so that a
    /// certificate of that profile always names the NUC's key.
    pub fn issue_for_days(
        &self,
        orders: &[IssueRequest],
        ledger: &dyn IssuanceLedger,
        max_days: Option<u32>,
    ) -> Result<Vec<Issued>, CaError> {
        if let Some(order) = orders
            .iter()
            .find(|o| o.profile == crate::report_signer::REPORT_SIGNER_PROFILE)
        {
            let e = CaError::invalid(
                "profile",
                format!(
                    "{} is the NUC's own report signer, made by the service for its key in the \
                     HSM (`nuc report-signer renew`), never issued on request",
                    order.profile
                ),
            );
            audit_refusal(ledger, order, &e);
            return Err(e);
        }
        self.issue_unchecked_profile(orders, ledger, max_days)
    }

    /// [`Ca::issue_for_days`] for any end-entity profile, the report signer's included: for
    /// [`crate::report_signer`] only.
    pub(crate) fn issue_unchecked_profile(
        &self,
        orders: &[IssueRequest],
        ledger: &dyn IssuanceLedger,
        max_days: Option<u32>,
    ) -> Result<Vec<Issued>, CaError> {
        let mut prepared = Vec::with_capacity(orders.len());
        for order in orders {
            match self.prepare(order, max_days) {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    audit_refusal(ledger, order, &e);
                    return Err(e);
                }
            }
        }
        self.complete(prepared, ledger).inspect_err(|e| {
            for order in orders {
                audit_refusal(ledger, order, e);
            }
        })
    }

    /// Checks a PKCS#10 request against an end-entity profile: the key's algorithm and size,
    /// and its proof of possession. Nothing is stored.
    pub fn check_key(&self, profile: &str, csr_der: &[u8]) -> Result<CheckedCsr, CaError> {
        let profile = self
            .policy
            .end_entity(profile)
            .ok_or_else(|| CaError::CaState(format!("policy has no profile {profile}")))?;
        csr::check(csr_der, profile)
    }
}

/// A refusal for the caller's fault is audited; our own failures are not refusals.
fn audit_refusal(ledger: &dyn IssuanceLedger, order: &IssueRequest, e: &CaError) {
    if e.reason().is_caller_error() {
        let _ = ledger.refused(&AuditEntry {
            actor: order.actor.clone(),
            action: "certificate.refused".into(),
            object: format!("profile:{}", order.profile),
            details: serde_json::json!({ "reason": e.reason().as_str(), "message": e.to_string() }),
        });
    }
}

impl Ca {
    /// The signer a `ca_keys` row of `role` names (the OCSP responder, the report signer): its
    /// key found in the token, its certificate issued by our issuing CA (by name and by
    /// signature) and valid now; `when_invalid` ends the message of an expired one.
    pub(crate) fn delegated_signer_from_row(
        &self,
        row: &CaKeyRow,
        role: &str,
        when_invalid: &str,
    ) -> Result<CaSigner, CaError> {
        let key = self
            .hsm
            .find_key(&row.hsm_label, key_alg("algorithm", &row.algorithm)?)?;
        let signer = CaSigner::new(key, row.cert_der.clone())?;
        let cert = Certificate::from_der(&row.cert_der)?;
        let tbs = cert.tbs_certificate();
        let signed_by_issuing = (|| -> Result<bool, openssl::error::ErrorStack> {
            let issuing = openssl::x509::X509::from_der(&self.issuing.id.cert_der)?;
            openssl::x509::X509::from_der(&row.cert_der)?.verify(&*issuing.public_key()?)
        })()
        .unwrap_or(false);
        if tbs.issuer() != &self.issuing.id.subject || !signed_by_issuing {
            return Err(CaError::CaState(format!(
                "the {role} certificate in the store is not issued by our issuing CA"
            )));
        }
        let now = nuc_core::time::now_unix();
        let not_before = tbs.validity().not_before.to_unix_duration().as_secs() as i64;
        if not_before > now || signer.id.not_after <= now {
            return Err(CaError::CaState(format!(
                "the {role} certificate in the store is not valid now{when_invalid}"
            )));
        }
        Ok(signer)
    }
}
