//! The service's own TLS identity for the gRPC API: a key made here and a `system` certificate
//! issued by our own CA. This key is the service's transport key, not a CA key: it lives in
//! a file readable by the service only (0600), as a web server's key does.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use nuc_ca::{Ca, Home, IssueRequest};
use nuc_core::SubjectInfo;
use nuc_store::Issuance;
use nuc_store::ServiceStore;

use crate::config::GrpcConfig;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509ReqBuilder;

/// Makes `tls/server.key` and `tls/server.pem` (certificate + issuing CA) for `localhost`.
pub fn create_server_identity(
    home: &Home,
    cfg: &GrpcConfig,
    ca: &Ca,
    store: &dyn ServiceStore,
) -> anyhow::Result<()> {
    let (key_path, cert_path) = (home.dir.join(&cfg.tls_key), home.dir.join(&cfg.tls_cert));
    if key_path.exists() || cert_path.exists() {
        anyhow::bail!(
            "{} or {} exists already",
            key_path.display(),
            cert_path.display()
        );
    }
    let identity = new_server_identity(ca, store, "cli:init", None)?;
    if let Some(dir) = key_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)?;
    f.write_all(&identity.key_pem)?;
    std::fs::write(&cert_path, &identity.chain_pem)?;
    Ok(())
}

/// A new TLS identity of the service, in PEM: its key (PKCS#8) and its certificate followed
/// by the issuing CA's.
pub struct ServerIdentity {
    pub key_pem: Vec<u8>,
    pub chain_pem: String,
    /// Serial (lowercase hex) of the new certificate.
    pub serial: String,
}

/// A new key (P-256) and a `system` certificate for `localhost`, valid the profile's
/// validity or `max_days`, whichever is shorter; issued (and audited) as by `actor`.
pub fn new_server_identity(
    ca: &Ca,
    store: &dyn ServiceStore,
    actor: &str,
    max_days: Option<u32>,
) -> anyhow::Result<ServerIdentity> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut req = X509ReqBuilder::new()?;
    req.set_pubkey(&key)?;
    req.sign(&key, MessageDigest::sha256())?;
    let order = IssueRequest {
        profile: "system".into(),
        csr: req.build().to_der()?,
        subject: SubjectInfo {
            iin: None,
            surname: None,
            name: None,
            patronymic: None,
            organization: None,
            email: None,
            common_name: Some("nuc-server".into()),
        },
        role: None,
        identification: None,
        dns_names: vec!["localhost".into()],
        actor: actor.into(),
        request_number: None,
        key_storage: Default::default(),
    };
    let issued = ca
        .issue_for_days(
            std::slice::from_ref(&order),
            &Issuance::alone(store),
            max_days,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.reason()))?
        .remove(0);
    let issuing = der::pem::encode_string(
        "CERTIFICATE",
        der::pem::LineEnding::LF,
        &ca.issuing().cert_der,
    )?;
    Ok(ServerIdentity {
        key_pem: key.private_key_to_pem_pkcs8()?,
        chain_pem: format!("{}{issuing}", issued.pem()),
        serial: issued.serial_hex,
    })
}
