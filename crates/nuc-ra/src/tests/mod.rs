//! Unit tests of the RA, flow by flow, with no HSM, no database and no network: the storage is
//! [`nuc_store::memory::MemoryStore`] (every trait in memory, all-or-nothing like SQLite), the
//! CA is [`SoftCa`] (real X.509 certificates signed by a software key, written through the
//! same issuance ledger), the registry is the built-in fixture of nuc-registry, and time is an
//! [`OffsetClock`] the tests move. Signed payloads are real CMS, made with nuc-cms by keys the
//! tests hold; the RA checks them exactly as in production.

mod decision;
mod download;
mod employer;
mod fuzz;
mod intake;
mod operators;
mod renewal;
mod report;
mod revocation;
mod soft_ca;

use std::sync::Arc;

use nuc_core::{OperatorStatus, ReasonCode, RequestState};
use nuc_payloads::{
    Decision, OPERATOR_DECISION, OperatorDecision, RENEWAL_APPLICATION, REVOCATION_ORDER,
    RenewalApplication, RevocationOrder,
};
use nuc_registry::FixtureRegistry;
use nuc_store::memory::MemoryStore;
use nuc_store::{AuditLog, RequestRow};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509ReqBuilder;
use prost::Message;

use crate::{Application, Clock, OffsetClock, Ra, RaConfig, RaError};
pub(crate) use soft_ca::SoftCa;

/// Individuals of the built-in registry fixture.
pub const ABAI: &str = "860908363012";
pub const KANYSH: &str = "921002310220";
pub const MUKHTAR: &str = "900726302864";
/// An operator of a CON, as the registry knows them.
pub const SHOKAN: &str = "750909384771";
pub const YBYRAI: &str = "800511322521";
/// A legal entity of the fixture: ABAI is its first head, KANYSH its signer.
pub const DALA: &str = "120340240006";
/// A valid IIN (check digit) that the registry does not know.
pub const NOBODY: &str = "000000000000";
pub const EMAIL: &str = "applicant@mail.example.kz";
/// ABAI's e-mail in the registry fixture: his address on record.
pub const ABAI_REGISTRY_EMAIL: &str = "person1@mail.example.kz";
pub const WORKSTATION: &str = "workstation:0a";
pub const PORTAL: &str = "portal:0b";
pub const ADMIN: &str = "admin:0c";

/// A key pair the test keeps, and the PKCS#10 request made with it.
pub struct Key {
    pub pkey: PKey<Private>,
    pub csr: Vec<u8>,
}

pub fn key() -> Key {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let pkey = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_pubkey(&pkey).unwrap();
    req.sign(&pkey, MessageDigest::sha256()).unwrap();
    let csr = req.build().to_der().unwrap();
    Key { pkey, csr }
}

/// An RA over memory, a software CA, the fixture registry and a movable clock.
pub struct Rig {
    pub ra: Ra,
    pub store: Arc<MemoryStore>,
    pub ca: Arc<SoftCa>,
    pub clock: Arc<OffsetClock>,
}

/// An operator with their certificate and key, registered and active.
pub struct Operator {
    pub serial: String,
    pub cert: Vec<u8>,
    pub key: PKey<Private>,
    /// The workstation signs at the RA's time (tests move it).
    pub clock: Arc<OffsetClock>,
}

/// A holder of issued certificates (AUTH and SIGN) and their keys.
pub struct Holder {
    pub request: RequestRow,
    pub auth: (String, Vec<u8>, PKey<Private>),
    pub sign: (String, Vec<u8>, PKey<Private>),
    /// The holder signs at the RA's time (tests move it).
    pub clock: Arc<OffsetClock>,
}

impl Rig {
    pub fn new() -> Self {
        Self::with_registry(FixtureRegistry::builtin())
    }

    pub fn with_registry(registry: FixtureRegistry) -> Self {
        Self::with(registry, RaConfig::default())
    }

    /// An RA with settings other than the defaults.
    pub fn with_config(config: RaConfig) -> Self {
        Self::with(FixtureRegistry::builtin(), config)
    }

    fn with(registry: FixtureRegistry, config: RaConfig) -> Self {
        let store = Arc::new(MemoryStore::new());
        let ca = Arc::new(SoftCa::new());
        let clock = Arc::new(OffsetClock::default());
        let ra = Ra::new(
            store.clone(),
            ca.clone(),
            Arc::new(registry),
            clock.clone(),
            config,
        );
        Self {
            ra,
            store,
            ca,
            clock,
        }
    }

    /// Audit actions recorded so far.
    pub fn audit(&self) -> Vec<String> {
        self.store.audit_actions()
    }

    pub fn audit_count(&self) -> usize {
        self.store.audit_records().unwrap().len()
    }

    /// An application of `iin` with two fresh keys.
    pub fn application(&self, iin: &str) -> (Application, Key, Key) {
        let (auth, sign) = (key(), key());
        (
            Application {
                iin: iin.into(),
                email: EMAIL.into(),
                auth_csr: auth.csr.clone(),
                sign_csr: sign.csr.clone(),
                ..Default::default()
            },
            auth,
            sign,
        )
    }

    /// F1 steps 1–3 for `iin`: the request, registered.
    pub async fn registered(&self, iin: &str) -> (RequestRow, Key, Key) {
        let (app, auth, sign) = self.application(iin);
        let row = self.ra.submit_application(PORTAL, app).await.unwrap();
        assert_eq!(row.state, RequestState::Registered);
        (row, auth, sign)
    }

    /// An operator certificate for `iin`, through F6, and the operator active.
    pub async fn operator(&self, iin: &str) -> Operator {
        let k = key();
        let issued = self
            .ra
            .issue_operator(ADMIN, iin, "operator", "ЦОН Алматы №1", k.csr)
            .await
            .unwrap();
        assert_eq!(
            self.ra.store.operator(iin).unwrap().unwrap().status,
            OperatorStatus::Active
        );
        Operator {
            serial: issued.serial_hex,
            cert: issued.der,
            key: k.pkey,
            clock: self.clock.clone(),
        }
    }

    /// `op`'s decision on request `number`, signed by `op` and sent from the workstation of
    /// `op`'s session.
    pub async fn decide(
        &self,
        op: &Operator,
        number: &str,
        decision: Decision,
        refusal_reason: &str,
    ) -> Result<(RequestRow, Vec<nuc_ca::Issued>), RaError> {
        self.ra
            .decide(
                WORKSTATION,
                number,
                &op.serial,
                &op.decision(number, decision, refusal_reason),
            )
            .await
    }

    /// A holder of `iin`: registered, confirmed by an operator, issued.
    pub async fn holder(&self, iin: &str, op: &Operator) -> Holder {
        let (request, auth, sign) = self.registered(iin).await;
        let (row, issued) = self
            .ra
            .decide(
                WORKSTATION,
                &request.number,
                &op.serial,
                &op.decision(&request.number, Decision::Confirm, ""),
            )
            .await
            .unwrap();
        assert_eq!(row.state, RequestState::Issued);
        assert_eq!(issued.len(), 2);
        Holder {
            request: row,
            auth: (
                issued[0].serial_hex.clone(),
                issued[0].der.clone(),
                auth.pkey,
            ),
            sign: (
                issued[1].serial_hex.clone(),
                issued[1].der.clone(),
                sign.pkey,
            ),
            clock: self.clock.clone(),
        }
    }
}

fn nonce() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// A CMS SignedData over `content` by `cert`/`key`, signed now (wall clock).
pub fn cms(content: &[u8], cert: &[u8], key: &PKey<Private>) -> Vec<u8> {
    nuc_cms::sign(content, cert, key, false).unwrap()
}

/// A CMS SignedData over `content` by `cert`/`key` (EC), with signingTime `at`.
pub fn cms_at(content: &[u8], cert: &[u8], key: &PKey<Private>, at: i64) -> Vec<u8> {
    let key = key.clone();
    nuc_cms::sign_at(
        content,
        cert,
        &move |attrs: &[u8]| {
            let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
            s.update(attrs).unwrap();
            Ok(s.sign_to_vec().unwrap())
        },
        nuc_cms::SignatureAlgorithm::EcdsaSha256,
        false,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at as u64),
    )
    .unwrap()
}

impl Operator {
    /// A decision on `number`, signed by this operator.
    pub fn decision(&self, number: &str, decision: Decision, reason: &str) -> Vec<u8> {
        self.sign_decision(OperatorDecision {
            request_number: number.into(),
            decision: decision as i32,
            refusal_reason: reason.into(),
            operator_serial_hex: self.serial.clone(),
            signed_at: self.clock.now(),
            nonce: nonce(),
            payload_type: OPERATOR_DECISION.into(),
        })
    }

    /// `d` signed with this operator's key, its CMS signingTime = `d.signed_at`.
    pub fn sign_decision(&self, d: OperatorDecision) -> Vec<u8> {
        cms_at(&d.encode_to_vec(), &self.cert, &self.key, d.signed_at)
    }

    /// A revocation order at the counter for `serial` of `iin`, signed by this operator.
    pub fn order(&self, serial: &str, iin: &str, reason: i32) -> Vec<u8> {
        let o = RevocationOrder {
            serial_hex: serial.into(),
            reason,
            iin: iin.into(),
            operator_serial_hex: self.serial.clone(),
            signed_at: self.clock.now(),
            nonce: nonce(),
            all: false,
            spare_signer: false,
            payload_type: REVOCATION_ORDER.into(),
        };
        cms_at(&o.encode_to_vec(), &self.cert, &self.key, o.signed_at)
    }
}

impl Holder {
    pub fn iin(&self) -> &str {
        &self.request.iin
    }

    /// A revocation order for `serial`, signed online by this holder's SIGN certificate.
    pub fn order(&self, serial: &str, reason: i32) -> Vec<u8> {
        self.order_with(|o| {
            o.serial_hex = serial.into();
            o.reason = reason;
        })
    }

    /// An order for all of this holder's certificates (`spare_signer`: but the SIGN
    /// certificate that signs it), signed online by this holder's SIGN certificate.
    pub fn order_all(&self, reason: i32, spare_signer: bool) -> Vec<u8> {
        self.order_with(|o| {
            o.reason = reason;
            o.all = true;
            o.spare_signer = spare_signer;
        })
    }

    /// A revocation order of this holder, as `edit` leaves it, signed by the SIGN certificate.
    pub fn order_with(&self, edit: impl FnOnce(&mut RevocationOrder)) -> Vec<u8> {
        let mut o = RevocationOrder {
            serial_hex: String::new(),
            reason: 0,
            iin: self.iin().into(),
            operator_serial_hex: String::new(),
            signed_at: self.clock.now(),
            nonce: nonce(),
            all: false,
            spare_signer: false,
            payload_type: REVOCATION_ORDER.into(),
        };
        edit(&mut o);
        cms_at(&o.encode_to_vec(), &self.sign.1, &self.sign.2, o.signed_at)
    }

    /// A renewal application with two new keys, signed by this holder's SIGN certificate.
    pub fn renewal(&self, edit: impl FnOnce(&mut RenewalApplication)) -> Vec<u8> {
        self.renewal_by(&self.sign, edit)
    }

    /// A renewal application with two new keys, signed by `(_, cert, key)` (e.g. the AUTH pair).
    pub fn renewal_by(
        &self,
        signer: &(String, Vec<u8>, PKey<Private>),
        edit: impl FnOnce(&mut RenewalApplication),
    ) -> Vec<u8> {
        let mut r = RenewalApplication {
            iin: self.iin().into(),
            bin: String::new(),
            email: EMAIL.into(),
            auth_csr: key().csr,
            sign_csr: key().csr,
            signed_at: self.clock.now(),
            nonce: nonce(),
            payload_type: RENEWAL_APPLICATION.into(),
        };
        edit(&mut r);
        cms_at(&r.encode_to_vec(), &signer.1, &signer.2, r.signed_at)
    }
}

/// The refusal's reason code, and that its message mentions `words`.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(r: Result<T, RaError>, reason: ReasonCode, words: &str) {
    match r {
        Ok(v) => panic!("expected {reason}, got {v:?}"),
        Err(e) => {
            assert_eq!(e.reason, reason, "{}", e.message);
            assert!(
                e.message.contains(words),
                "{reason}: {:?} does not mention {words:?}",
                e.message
            );
        }
    }
}
