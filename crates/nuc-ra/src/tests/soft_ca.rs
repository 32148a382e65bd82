//! A CA in software for the RA's unit tests: real X.509 certificates (subject, serialNumber
//! "IIN…", EKU with the profile's OIDs, role and identification method) signed by an EC key
//! in memory, under a root of its own, with the profile's keyUsage. It issues through the ledger it is given, in the CA's
//! order (reserve, sign, record), so what the RA composes with each commit is exercised; it
//! can be told to fail its next signing, as an HSM that went away.

use std::sync::atomic::{AtomicBool, Ordering};

use const_oid::ObjectIdentifier;
use nuc_ca::policy::{DEFAULT_PROFILES, Policy};
use nuc_ca::{CaError, IssueRequest, Issued, Issuer};
use nuc_store::{AuditEntry, IssuanceLedger, Reservation};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509NameBuilder, X509Req};
use x509_cert::ext::pkix::KeyUsages;

pub struct SoftCa {
    policy: Policy,
    issuing: (X509, PKey<Private>),
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    fail_next_signing: AtomicBool,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn serial() -> [u8; 20] {
    let mut s = [0u8; 20];
    getrandom::fill(&mut s).unwrap();
    s[0] = (s[0] & 0x7f).max(1);
    s
}

fn certificate(
    subject: &[(Nid, &str)],
    public: &PKey<Public>,
    issuer: Option<(&X509, &PKey<Private>)>,
    self_key: Option<&PKey<Private>>,
    serial: &[u8],
    days: u32,
    (eku, ku): (&[ObjectIdentifier], &[KeyUsages]),
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    for (nid, value) in subject {
        name.append_entry_by_nid(*nid, value).unwrap();
    }
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_slice(serial).unwrap()).unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    let now = nuc_core::time::now_unix();
    b.set_not_before(&Asn1Time::from_unix(now - 60).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + i64::from(days) * 86_400).unwrap())
        .unwrap();
    b.set_pubkey(public).unwrap();
    if !ku.is_empty() {
        let mut k = KeyUsage::new();
        k.critical();
        for u in ku {
            match u {
                KeyUsages::DigitalSignature => k.digital_signature(),
                KeyUsages::NonRepudiation => k.non_repudiation(),
                KeyUsages::KeyEncipherment => k.key_encipherment(),
                KeyUsages::DataEncipherment => k.data_encipherment(),
                KeyUsages::KeyAgreement => k.key_agreement(),
                KeyUsages::KeyCertSign => k.key_cert_sign(),
                KeyUsages::CRLSign => k.crl_sign(),
                KeyUsages::EncipherOnly => k.encipher_only(),
                KeyUsages::DecipherOnly => k.decipher_only(),
            };
        }
        b.append_extension(k.build().unwrap()).unwrap();
    }
    if !eku.is_empty() {
        let mut e = ExtendedKeyUsage::new();
        for oid in eku {
            e.other(&oid.to_string());
        }
        b.append_extension(e.build().unwrap()).unwrap();
    }
    match (issuer, self_key) {
        (Some((cert, key)), _) => {
            b.set_issuer_name(cert.subject_name()).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        (None, Some(key)) => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        (None, None) => unreachable!("a certificate needs a signer"),
    }
    b.build()
}

fn public(key: &PKey<Private>) -> PKey<Public> {
    PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap()
}

impl SoftCa {
    pub fn new() -> Self {
        let root_key = ec_key();
        let root = certificate(
            &[(Nid::COMMONNAME, "TEST ROOT"), (Nid::COUNTRYNAME, "KZ")],
            &public(&root_key),
            None,
            Some(&root_key),
            &serial(),
            3650,
            (&[], &[]),
        );
        let issuing_key = ec_key();
        let mut issuing = certificate(
            &[(Nid::COMMONNAME, "TEST ISSUING"), (Nid::COUNTRYNAME, "KZ")],
            &public(&issuing_key),
            Some((&root, &root_key)),
            None,
            &serial(),
            3650,
            (&[], &[]),
        );
        // A CA certificate: mark it so (signed by the root above).
        issuing = {
            let mut b = X509::builder().unwrap();
            b.set_version(2).unwrap();
            b.set_serial_number(issuing.serial_number()).unwrap();
            b.set_subject_name(issuing.subject_name()).unwrap();
            b.set_issuer_name(root.subject_name()).unwrap();
            b.set_not_before(issuing.not_before()).unwrap();
            b.set_not_after(issuing.not_after()).unwrap();
            b.set_pubkey(&public(&issuing_key)).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.sign(&root_key, MessageDigest::sha256()).unwrap();
            b.build()
        };
        Self {
            policy: Policy::from_toml(DEFAULT_PROFILES).unwrap(),
            root_der: root.to_der().unwrap(),
            issuing_der: issuing.to_der().unwrap(),
            issuing: (issuing, issuing_key),
            fail_next_signing: AtomicBool::new(false),
        }
    }

    /// The next issuance fails after its reservation, as an HSM that went away.
    pub fn fail_next_signing(&self) {
        self.fail_next_signing.store(true, Ordering::SeqCst);
    }

    /// A certificate of another CA (same names), for a signer the NUC never issued.
    pub fn foreign_certificate(&self, iin: &str) -> (Vec<u8>, PKey<Private>) {
        let other = SoftCa::new();
        let key = ec_key();
        let cert = certificate(
            &[
                (Nid::COMMONNAME, "FOREIGN"),
                (Nid::SERIALNUMBER, &format!("IIN{iin}")),
            ],
            &public(&key),
            Some((&other.issuing.0, &other.issuing.1)),
            None,
            &serial(),
            365,
            (&[], &[]),
        );
        (cert.to_der().unwrap(), key)
    }

    fn sign(&self, order: &IssueRequest, serial: &[u8]) -> Result<Vec<u8>, CaError> {
        let profile = self
            .policy
            .end_entity(&order.profile)
            .ok_or_else(|| CaError::invalid("profile", "unknown"))?;
        let mut eku: Vec<ObjectIdentifier> = profile.extended_key_usage.clone();
        if let Some(role) = &order.role {
            eku.push(
                *profile
                    .roles
                    .get(role)
                    .ok_or_else(|| CaError::invalid("role", format!("unknown role {role:?}")))?,
            );
        }
        if profile.identification {
            let m = order
                .identification
                .unwrap_or(nuc_core::Identification::InPerson);
            eku.push(self.policy.identification[m.as_str()]);
        }
        let s = &order.subject;
        let iin = s.iin.as_ref().map(|i| format!("IIN{i}"));
        let cn = format!(
            "{} {}",
            s.surname.as_deref().unwrap_or(""),
            s.name.as_deref().unwrap_or("")
        );
        let mut subject = vec![(Nid::COMMONNAME, cn.as_str())];
        if let Some(iin) = &iin {
            subject.push((Nid::SERIALNUMBER, iin.as_str()));
        }
        let bin = s.organization.as_ref().map(|o| format!("BIN{}", o.bin));
        if let (Some(o), Some(bin)) = (&s.organization, &bin) {
            subject.push((Nid::ORGANIZATIONNAME, o.name.as_str()));
            subject.push((Nid::ORGANIZATIONALUNITNAME, bin.as_str()));
        }
        let req =
            X509Req::from_der(&order.csr).map_err(|e| CaError::CsrMalformed(e.to_string()))?;
        let key = req
            .public_key()
            .map_err(|e| CaError::CsrMalformed(e.to_string()))?;
        let cert = certificate(
            &subject,
            &key,
            Some((&self.issuing.0, &self.issuing.1)),
            None,
            serial,
            profile.validity_days,
            (
                &eku,
                // The test keys are EC.
                profile.key_usage_ec.as_ref().unwrap_or(&profile.key_usage),
            ),
        );
        Ok(cert.to_der().unwrap())
    }
}

impl Issuer for SoftCa {
    fn check_key(&self, profile: &str, csr_der: &[u8]) -> Result<nuc_ca::csr::CheckedCsr, CaError> {
        let p = self
            .policy
            .end_entity(profile)
            .ok_or_else(|| CaError::CaState(format!("policy has no profile {profile}")))?;
        nuc_ca::csr::check(csr_der, p)
    }

    fn issue(
        &self,
        orders: &[IssueRequest],
        ledger: &dyn IssuanceLedger,
    ) -> Result<Vec<Issued>, CaError> {
        let mut reserved = Vec::new();
        for o in orders {
            let checked = match self.check_key(&o.profile, &o.csr) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ledger.refused(&AuditEntry {
                        actor: o.actor.clone(),
                        action: "certificate.refused".into(),
                        object: format!("profile:{}", o.profile),
                        details: serde_json::json!({ "message": e.to_string() }),
                    });
                    return Err(e);
                }
            };
            let serial = serial();
            let serial_hex = hex::encode(serial);
            reserved.push((
                serial,
                Reservation {
                    serial: serial_hex.clone(),
                    profile: o.profile.clone(),
                    subject: format!("{:?}", o.subject.surname),
                    iin: o.subject.iin.as_ref().map(|i| i.to_string()),
                    bin: o.subject.organization.as_ref().map(|x| x.bin.to_string()),
                    spki_sha256: checked.spki_sha256,
                    not_before: 0,
                    not_after: 0,
                    request_number: o.request_number.clone(),
                },
                AuditEntry {
                    actor: o.actor.clone(),
                    action: "certificate.reserved".into(),
                    object: format!("serial:{serial_hex}"),
                    details: serde_json::json!({}),
                },
            ));
        }
        let items: Vec<_> = reserved
            .iter()
            .map(|(_, r, a)| (r.clone(), a.clone()))
            .collect();
        ledger.reserve(&items)?;
        if self.fail_next_signing.swap(false, Ordering::SeqCst) {
            for (_, r, _) in &reserved {
                ledger.abandon(
                    &r.serial,
                    &AuditEntry {
                        actor: "test".into(),
                        action: "certificate.abandoned".into(),
                        object: format!("serial:{}", r.serial),
                        details: serde_json::json!({}),
                    },
                )?;
            }
            return Err(CaError::Hsm(nuc_hsm_error()));
        }
        let mut issued = Vec::new();
        let mut records = Vec::new();
        for ((serial, r, _), o) in reserved.iter().zip(orders) {
            let der = self.sign(o, serial)?;
            records.push((
                r.serial.clone(),
                der.clone(),
                AuditEntry {
                    actor: o.actor.clone(),
                    action: "certificate.issued".into(),
                    object: format!("serial:{}", r.serial),
                    details: serde_json::json!({}),
                },
            ));
            issued.push(Issued {
                serial_hex: r.serial.clone(),
                der,
                subject: r.subject.clone(),
                profile: r.profile.clone(),
            });
        }
        ledger.record(&records)?;
        Ok(issued)
    }

    fn issuing_certificate(&self) -> &[u8] {
        &self.issuing_der
    }

    fn root_certificate(&self) -> &[u8] {
        &self.root_der
    }

    fn staff_roles(&self) -> Vec<ObjectIdentifier> {
        self.policy.profiles["operator"]
            .roles
            .values()
            .copied()
            .collect()
    }
}

/// What the HSM says when it is gone.
fn nuc_hsm_error() -> nuc_ca::HsmError {
    nuc_ca::HsmError::KeyNotFound("nuc-issuing (the token went away)".into())
}
