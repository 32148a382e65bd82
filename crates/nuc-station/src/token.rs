//! The applicant's USB token at the counter (F4 onto a token): Kaztoken, JaCarta, eToken PRO,
//! AKey — any PKCS#11 device, reached through its vendor's module (SoftHSM2 in the tests,
//! through the very same code).
//!
//! This module owns the workstation's side of such a token: finding it in the module by label
//! ([`CitizenToken::find`]), the applicant's login with the token's own PIN
//! ([`CitizenToken::login`]), the AUTH and SIGN key pairs generated *on the token* as sensitive
//! and never extractable and checked to be so ([`CitizenToken::generate`]), the two PKCS#10
//! requests signed *by the token* (built by `nuc_card::csr`, the same builder the card uses),
//! and the issued certificates written back as certificate objects whose `CKA_ID` is that of
//! their key pair, read back byte for byte ([`CitizenToken::write_certificate`]). The F4 flow
//! around it is [`enroll_token`]; [`write_token_issued`] finishes one whose write failed.
//!
//! It must never export or read a private key (only public keys and signatures come out of the
//! token), never print, log or keep the PIN (it lives in an [`AuthPin`], wiped when dropped,
//! and no error message carries it), never touch the operator's own token, and never write a
//! certificate that does not carry the public key of a key pair on this token.
//!
//! The order keeps every failure recoverable, as on a card: the registry is asked before the
//! token is opened; the PIN is checked before anything is generated; key pairs made by an
//! enrollment that stops before the operator's confirmation is sent are destroyed again; once
//! the NUC has issued, the certificates are on record and `nuc-station write --request NUMBER
//! --token-module PATH` writes them onto the token again.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
pub use cryptoki::types::AuthPin;
use der::asn1::{BitString, ObjectIdentifier, OctetString, UintRef};
use der::{Decode, Encode};
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::{IssuedCertificate, KeyStorage, RegisterAtCounterRequest};
use nuc_card::{CardError, KeySlot, WriteOutcome};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use tonic::transport::Channel;
use x509_cert::Certificate;
use x509_cert::name::Name;

use crate::StationError;
use crate::enroll::{self, Applicant, Confirmer};
use crate::progress::Progress;

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 (RFC 5480): the curve of the keys made on the token, as on the card.
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// What went wrong with the applicant's token. No message carries the PIN.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("PKCS#11 module {path}: {source}")]
    Module { path: PathBuf, source: P11Error },
    #[error("no token labelled {label:?} in {module}: is the applicant's USB token plugged in?")]
    NotFound { label: String, module: PathBuf },
    #[error("no token in {module}: plug the applicant's USB token in")]
    NoToken { module: PathBuf },
    #[error("{count} tokens in {module} ({labels}): name the applicant's with --token-label")]
    Several {
        count: usize,
        labels: String,
        module: PathBuf,
    },
    #[error("token {0:?} is the operator's own token, not the applicant's")]
    OperatorsToken(String),
    #[error("token {0:?} has no user PIN yet: it must be initialised before issuance")]
    NoUserPin(String),
    #[error("the token PIN is empty")]
    EmptyPin,
    #[error("wrong PIN for token {label:?}{hint}")]
    WrongPin { label: String, hint: &'static str },
    #[error("the token {0:?} does not take a PIN of that length")]
    BadPinLength(String),
    #[error(
        "the PIN of token {0:?} is locked: the token cannot be used until its PIN is unblocked"
    )]
    PinLocked(String),
    #[error("PKCS#11 {op}: {source}")]
    Pkcs11 { op: &'static str, source: P11Error },
    #[error("the token did not keep the {slot} private key {what}: it is not used")]
    Unprotected { slot: KeySlot, what: &'static str },
    #[error("{slot} public key from the token: {detail}")]
    PublicKey { slot: KeySlot, detail: String },
    #[error("certificate for {slot}: {detail}")]
    Certificate { slot: KeySlot, detail: String },
    #[error("the token's ECDSA signature has {0} bytes, not the 64 of r‖s on P-256")]
    BadSignature(usize),
    #[error("certification request: {0}")]
    Request(#[from] CardError),
    #[error("DER: {0}")]
    Der(#[from] der::Error),
}

impl TokenError {
    /// Whether the input or the token's state refused (wrong PIN, no such token or module):
    /// exit 2.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            TokenError::Module { .. }
                | TokenError::NotFound { .. }
                | TokenError::NoToken { .. }
                | TokenError::Several { .. }
                | TokenError::OperatorsToken(_)
                | TokenError::NoUserPin(_)
                | TokenError::EmptyPin
                | TokenError::WrongPin { .. }
                | TokenError::BadPinLength(_)
                | TokenError::PinLocked(_)
        )
    }
}

fn p11(op: &'static str) -> impl FnOnce(P11Error) -> TokenError {
    move |source| TokenError::Pkcs11 { op, source }
}

/// The applicant's PIN for the token, checked not to be empty. Kept in an [`AuthPin`], which
/// wipes it when dropped.
pub fn token_pin(pin: String) -> Result<AuthPin, TokenError> {
    if pin.is_empty() {
        return Err(TokenError::EmptyPin);
    }
    Ok(AuthPin::from(pin))
}

/// Where the applicant's token is.
#[derive(Debug, Clone)]
pub struct TokenPlace {
    /// The token vendor's PKCS#11 module.
    pub module: PathBuf,
    /// The token's label; `None`: the only token of the module (the operator's excepted).
    pub label: Option<String>,
    /// The operator's own token when it comes through the same module, never to be taken for
    /// the applicant's.
    pub operator_label: Option<String>,
}

/// A key pair generated on the token for one slot.
#[derive(Debug, Clone)]
pub struct TokenKey {
    pub slot: KeySlot,
    /// `CKA_ID` of the pair, and of its certificate once written.
    pub id: Vec<u8>,
    private: ObjectHandle,
    public: ObjectHandle,
    /// The public half, as it goes into the certificate.
    pub spki: SubjectPublicKeyInfoOwned,
}

/// The applicant's token, with a read-write session (logged in after [`CitizenToken::login`]).
pub struct CitizenToken {
    /// Keeps the module loaded while the session lives.
    pkcs11: Pkcs11,
    session: Session,
    pub label: String,
    pub model: String,
    pub manufacturer: String,
    /// The token's serial, reduced to what a request's `card_serial` takes.
    pub serial: String,
}

impl std::fmt::Debug for CitizenToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitizenToken")
            .field("label", &self.label)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Loads the module. A module the operator's token already initialised in this process (one
/// vendor for both tokens) is fine: PKCS#11 is initialised once per process, not per user.
fn load(module: &Path) -> Result<Pkcs11, TokenError> {
    let err = |source| TokenError::Module {
        path: module.into(),
        source,
    };
    let pkcs11 = Pkcs11::new(module).map_err(err)?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(pkcs11),
        Err(e) => Err(err(e)),
    }
}

/// At most 64 letters, digits or dashes: what the NUC records as the device's serial.
fn serial_word(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect()
}

impl CitizenToken {
    /// Finds the applicant's token in `place.module` and opens a read-write session on it; the
    /// PIN is not asked yet.
    pub fn find(place: &TokenPlace) -> Result<Self, TokenError> {
        let pkcs11 = load(&place.module)?;
        let mut found = Vec::new();
        for slot in pkcs11
            .get_slots_with_initialized_token()
            .map_err(p11("C_GetSlotList"))?
        {
            let info = pkcs11.get_token_info(slot).map_err(p11("C_GetTokenInfo"))?;
            found.push((slot, info));
        }
        let label_of = |i: &cryptoki::slot::TokenInfo| i.label().trim_end().to_owned();
        let operator = place.operator_label.as_deref();
        let (slot, info) = match &place.label {
            Some(want) => {
                if Some(want.as_str()) == operator {
                    return Err(TokenError::OperatorsToken(want.clone()));
                }
                found
                    .into_iter()
                    .find(|(_, i)| label_of(i) == *want)
                    .ok_or_else(|| TokenError::NotFound {
                        label: want.clone(),
                        module: place.module.clone(),
                    })?
            }
            None => {
                let mut left: Vec<_> = found
                    .into_iter()
                    .filter(|(_, i)| Some(label_of(i).as_str()) != operator)
                    .collect();
                match left.len() {
                    0 => {
                        return Err(TokenError::NoToken {
                            module: place.module.clone(),
                        });
                    }
                    1 => left.remove(0),
                    count => {
                        return Err(TokenError::Several {
                            count,
                            labels: left
                                .iter()
                                .map(|(_, i)| format!("{:?}", label_of(i)))
                                .collect::<Vec<_>>()
                                .join(", "),
                            module: place.module.clone(),
                        });
                    }
                }
            }
        };
        let label = label_of(&info);
        if !info.user_pin_initialized() {
            return Err(TokenError::NoUserPin(label));
        }
        let session = pkcs11.open_rw_session(slot).map_err(p11("C_OpenSession"))?;
        Ok(Self {
            pkcs11,
            session,
            model: info.model().trim_end().to_owned(),
            manufacturer: info.manufacturer_id().trim_end().to_owned(),
            serial: serial_word(info.serial_number()),
            label,
        })
    }

    /// Logs the applicant in with the token's PIN. A wrong PIN says how close the token is to
    /// locking it, when the token tells.
    pub fn login(&self, pin: &AuthPin) -> Result<(), TokenError> {
        match self.session.login(UserType::User, Some(pin)) {
            Ok(()) => Ok(()),
            Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => {
                let info = self
                    .session
                    .get_session_info()
                    .ok()
                    .and_then(|s| self.pkcs11.get_token_info(s.slot_id()).ok());
                let hint = match info {
                    Some(i) if i.user_pin_locked() => {
                        return Err(TokenError::PinLocked(self.label.clone()));
                    }
                    Some(i) if i.user_pin_final_try() => " (one try left before it locks)",
                    Some(i) if i.user_pin_count_low() => " (few tries left before it locks)",
                    _ => "",
                };
                Err(TokenError::WrongPin {
                    label: self.label.clone(),
                    hint,
                })
            }
            Err(P11Error::Pkcs11(RvError::PinLocked, _)) => {
                Err(TokenError::PinLocked(self.label.clone()))
            }
            Err(P11Error::Pkcs11(RvError::PinLenRange, _)) => {
                Err(TokenError::BadPinLength(self.label.clone()))
            }
            Err(e) => Err(p11("C_Login")(e)),
        }
    }

    /// Generates the key pair of `slot` on the token (P-256; the private key sensitive, never
    /// extractable, for signing only: no decrypt, unwrap or derive) and checks that the token
    /// kept it sensitive and never extractable.
    pub fn generate(&self, slot: KeySlot) -> Result<TokenKey, TokenError> {
        let mut id = [0u8; 16];
        openssl::rand::rand_bytes(&mut id).map_err(|e| TokenError::PublicKey {
            slot,
            detail: format!("no random CKA_ID: {e}"),
        })?;
        let id = id.to_vec();
        let label = slot.to_string();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(SECP256R1.to_der()?),
            Attribute::Label(label.clone().into()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label.into()),
            Attribute::Id(id.clone()),
        ];
        let (public, private) = self
            .session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(p11("C_GenerateKeyPair"))?;
        let checked = self
            .check_private(slot, private)
            .and_then(|()| self.public_key_info(slot, public));
        match checked {
            Ok(spki) => Ok(TokenKey {
                slot,
                id,
                private,
                public,
                spki,
            }),
            Err(e) => {
                let _ = self.session.destroy_object(private);
                let _ = self.session.destroy_object(public);
                Err(e)
            }
        }
    }

    /// The private key must be as asked: sensitive and never extractable.
    fn check_private(&self, slot: KeySlot, private: ObjectHandle) -> Result<(), TokenError> {
        let attrs = self
            .session
            .get_attributes(
                private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(p11("C_GetAttributeValue"))?;
        let (mut sensitive, mut extractable, mut never) = (false, true, false);
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => sensitive = v,
                Attribute::Extractable(v) => extractable = v,
                Attribute::NeverExtractable(v) => never = v,
                _ => {}
            }
        }
        let what = if !sensitive {
            "sensitive"
        } else if extractable || !never {
            "never extractable"
        } else {
            return Ok(());
        };
        Err(TokenError::Unprotected { slot, what })
    }

    /// The P-256 public key of a public key object, as it goes into a certificate.
    fn public_key_info(
        &self,
        slot: KeySlot,
        public: ObjectHandle,
    ) -> Result<SubjectPublicKeyInfoOwned, TokenError> {
        let bad = |detail: String| TokenError::PublicKey { slot, detail };
        let attrs = self
            .session
            .get_attributes(
                public,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                ],
            )
            .map_err(p11("C_GetAttributeValue"))?;
        let (mut kt, mut params, mut point) = (None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => kt = Some(t),
                Attribute::EcParams(v) => params = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        if kt != Some(KeyType::EC) {
            return Err(bad(format!("not an EC key ({kt:?})")));
        }
        if params.as_deref() != Some(SECP256R1.to_der()?.as_slice()) {
            return Err(bad("not on the curve P-256".into()));
        }
        let point = point.ok_or_else(|| bad("CKA_EC_POINT missing".into()))?;
        let point = uncompressed_point(&point).ok_or_else(|| {
            bad(format!(
                "CKA_EC_POINT of {} bytes is not an uncompressed P-256 point",
                point.len()
            ))
        })?;
        Ok(SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ID_EC_PUBLIC_KEY,
                parameters: Some(der::Any::encode_from(&SECP256R1)?),
            },
            subject_public_key: BitString::from_bytes(&point)?,
        })
    }

    /// The PKCS#10 request for `key` under `subject`, signed by the token.
    pub fn certification_request(
        &self,
        key: &TokenKey,
        subject: &Name,
    ) -> Result<Vec<u8>, TokenError> {
        nuc_card::csr::build(subject, key.spki.clone(), |hash| {
            self.sign_hash(key.private, hash)
        })
    }

    /// ECDSA over a SHA-256 hash with a private key of the token; a DER ECDSA-Sig-Value.
    fn sign_hash(&self, private: ObjectHandle, hash: &[u8]) -> Result<Vec<u8>, TokenError> {
        let raw = self
            .session
            .sign(&Mechanism::Ecdsa, private, hash)
            .map_err(p11("C_Sign"))?;
        if raw.len() != 64 {
            return Err(TokenError::BadSignature(raw.len()));
        }
        let (r, s) = raw.split_at(32);
        Ok(EcdsaSigValue {
            r: UintRef::new(r)?,
            s: UintRef::new(s)?,
        }
        .to_der()?)
    }

    /// Destroys a key pair this enrollment made (it stopped before the operator confirmed).
    pub fn destroy(&self, key: &TokenKey) -> Result<(), TokenError> {
        self.session
            .destroy_object(key.private)
            .map_err(p11("C_DestroyObject"))?;
        self.session
            .destroy_object(key.public)
            .map_err(p11("C_DestroyObject"))
    }

    /// The `CKA_ID` of the key pair on this token whose public key `cert` carries.
    fn key_id_for(&self, slot: KeySlot, cert: &Certificate) -> Result<Vec<u8>, TokenError> {
        let wanted = cert.tbs_certificate().subject_public_key_info();
        for public in self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
            ])
            .map_err(p11("C_FindObjects"))?
        {
            if self.public_key_info(slot, public).ok().as_ref() != Some(wanted) {
                continue;
            }
            let id = self
                .session
                .get_attributes(public, &[AttributeType::Id])
                .map_err(p11("C_GetAttributeValue"))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Id(id) => Some(id),
                    _ => None,
                })
                .unwrap_or_default();
            let private = self
                .session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id.clone()),
                ])
                .map_err(p11("C_FindObjects"))?;
            if !id.is_empty() && private.len() == 1 {
                return Ok(id);
            }
        }
        Err(TokenError::Certificate {
            slot,
            detail: "it does not carry the public key of a key pair on this token".into(),
        })
    }

    /// The DER value of each certificate object whose `CKA_ID` is `id`.
    fn certificates_with_id(&self, id: &[u8]) -> Result<Vec<Vec<u8>>, TokenError> {
        let mut out = Vec::new();
        for h in self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(id.to_vec()),
            ])
            .map_err(p11("C_FindObjects"))?
        {
            for a in self
                .session
                .get_attributes(h, &[AttributeType::Value])
                .map_err(p11("C_GetAttributeValue"))?
            {
                if let Attribute::Value(v) = a {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Writes the certificate of `slot` as a certificate object beside its key pair (same
    /// `CKA_ID`, label AUTH or SIGN) and reads it back. The very certificate already there is
    /// left alone.
    pub fn write_certificate(
        &self,
        slot: KeySlot,
        cert_der: &[u8],
    ) -> Result<WriteOutcome, TokenError> {
        let bad = |detail: String| TokenError::Certificate { slot, detail };
        let cert = Certificate::from_der(cert_der)
            .map_err(|e| bad(format!("not a DER X.509 certificate: {e}")))?;
        let id = self.key_id_for(slot, &cert)?;
        let there = self.certificates_with_id(&id)?;
        if there.iter().any(|v| v == cert_der) {
            return Ok(WriteOutcome::AlreadyThere);
        }
        if !there.is_empty() {
            return Err(bad(
                "another certificate is already stored for this key pair".into(),
            ));
        }
        let tbs = cert.tbs_certificate();
        self.session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(slot.to_string().into()),
                Attribute::Id(id.clone()),
                Attribute::Subject(tbs.subject().to_der()?),
                Attribute::Issuer(tbs.issuer().to_der()?),
                Attribute::SerialNumber(tbs.serial_number().to_der()?),
                Attribute::Value(cert_der.to_vec()),
            ])
            .map_err(p11("C_CreateObject"))?;
        if self.certificates_with_id(&id)? != [cert_der.to_vec()] {
            return Err(bad("the certificate reads back differently".into()));
        }
        Ok(WriteOutcome::Written)
    }
}

#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// The 65-byte uncompressed point of `CKA_EC_POINT`: raw, or (as PKCS#11 says and SoftHSM2
/// does) wrapped in a DER OCTET STRING.
fn uncompressed_point(v: &[u8]) -> Option<Vec<u8>> {
    let raw = if v.len() == 65 {
        v.to_vec()
    } else {
        OctetString::from_der(v).ok()?.as_bytes().to_vec()
    };
    (raw.len() == 65 && raw[0] == 0x04).then_some(raw)
}

/// What an enrollment onto a token produced.
#[derive(Debug, Clone)]
pub struct TokenEnrolled {
    pub request_number: String,
    pub token_label: String,
    pub token_serial: String,
    /// (profile, serial hex, DER) of the certificates now on the token.
    pub certificates: Vec<(String, String, Vec<u8>)>,
}

fn token_err(step: &'static str) -> impl FnOnce(TokenError) -> StationError {
    move |source| StationError::CitizenToken {
        step,
        source: Box::new(source),
    }
}

/// F4 onto the applicant's USB token: the same steps as onto a card (`registry`, `token`,
/// `pin`, `keys`, `register`, `sign`, `issue`, `write`; see the module documentation for the
/// order and what each failure leaves).
#[allow(clippy::too_many_arguments)]
pub async fn enroll_token(
    nuc: &mut OperatorServiceClient<Channel>,
    confirmer: &dyn Confirmer,
    place: &TokenPlace,
    applicant: &Applicant,
    pin: &AuthPin,
    idempotency_key: &str,
    progress: &mut Progress,
) -> Result<TokenEnrolled, StationError> {
    enroll::lookup(nuc, applicant, progress).await?;

    progress.start("token", "token: looking for the applicant's USB token");
    let token = CitizenToken::find(place).map_err(token_err("USB token"))?;
    progress.done(&format!(
        "token: {:?} ({} {}, serial {})",
        token.label, token.manufacturer, token.model, token.serial
    ));

    progress.start("pin", "PIN: the applicant enters the token's PIN");
    token.login(pin).map_err(token_err("PIN verification"))?;
    progress.done("PIN: accepted");

    progress.start("keys", "keys: generating AUTH and SIGN on the token");
    let mut keys = Vec::new();
    let made = make_keys(&token, &mut keys);
    let forget = |keys: &[TokenKey]| {
        for k in keys {
            let _ = token.destroy(k);
        }
    };
    let csrs = match made {
        Ok(c) => c,
        Err(e) => {
            forget(&keys);
            return Err(token_err("key generation on the token")(e));
        }
    };
    progress.done("keys: AUTH and SIGN generated on the token, requests signed by the token");

    progress.start("register", "NUC: registering the request");
    let registered = nuc
        .register_at_counter(RegisterAtCounterRequest {
            idempotency_key: idempotency_key.into(),
            iin: applicant.iin.clone(),
            bin: applicant.bin.clone().unwrap_or_default(),
            email: applicant.email.clone(),
            auth_csr: csrs[0].clone(),
            sign_csr: csrs[1].clone(),
            key_storage: KeyStorage::Token as i32,
            card_serial: token.serial.clone(),
        })
        .await
        .map_err(|s| StationError::from_status("registration", s));
    let number = match registered {
        Ok(r) => r.into_inner().request_number,
        Err(e) => {
            forget(&keys);
            return Err(e);
        }
    };
    progress.done(&format!("NUC: request {number} registered"));

    progress.start(
        "sign",
        "operator: signing the confirmation with the operator's token",
    );
    let (signed, operator_serial_hex) = match confirmer.confirmation(&number) {
        Ok(c) => c,
        Err(e) => {
            // Not confirmed: the request expires at the NUC, the keys are of no use.
            forget(&keys);
            return Err(e);
        }
    };
    progress.done("operator: confirmation signed");

    // From here on the NUC may issue for these keys: they stay on the token whatever happens.
    let certificates =
        enroll::confirm_and_issue(nuc, &number, signed, operator_serial_hex, progress).await?;

    progress.start("write", "token: writing the certificates");
    let written = write_to_token(&token, &number, &certificates).map_err(|e| match e {
        StationError::CitizenToken { step, source } => StationError::TokenWriteInterrupted {
            step,
            request: number.clone(),
            module: place.module.clone(),
            source,
        },
        other => other,
    })?;
    progress.done("token: certificates written and read back");
    Ok(TokenEnrolled {
        request_number: number,
        token_label: token.label.clone(),
        token_serial: token.serial.clone(),
        certificates: written,
    })
}

/// Both key pairs and their requests; the pairs made so far are in `keys` whatever happens.
fn make_keys(token: &CitizenToken, keys: &mut Vec<TokenKey>) -> Result<Vec<Vec<u8>>, TokenError> {
    let subject = nuc_card::csr::minimal_subject(&format!("NUC USB token {}", token.serial))?;
    let mut csrs = Vec::new();
    for slot in KeySlot::ALL {
        keys.push(token.generate(slot)?);
        if let Some(key) = keys.last() {
            csrs.push(token.certification_request(key, &subject)?);
        }
    }
    Ok(csrs)
}

fn write_to_token(
    token: &CitizenToken,
    number: &str,
    certs: &[IssuedCertificate],
) -> Result<Vec<(String, String, Vec<u8>)>, StationError> {
    const STEP: &str = "writing the certificates";
    enroll::check_pair(number, certs)?;
    let mut out = Vec::new();
    for c in certs {
        let slot = enroll::slot_of(&c.profile).ok_or_else(|| StationError::Check {
            step: STEP,
            detail: format!("certificate {} has profile {}", c.serial_hex, c.profile),
        })?;
        let outcome = token
            .write_certificate(slot, &c.der)
            .map_err(token_err(STEP))?;
        if outcome == WriteOutcome::AlreadyThere {
            eprintln!("      {slot}: already on the token");
        }
        out.push((c.profile.clone(), c.serial_hex.clone(), c.der.clone()));
    }
    Ok(out)
}

/// Writes the certificates of an issued request onto the applicant's token: the end of an
/// enrollment whose write failed. The token must hold the key pairs they certify.
pub async fn write_token_issued(
    nuc: &mut OperatorServiceClient<Channel>,
    place: &TokenPlace,
    request_number: &str,
    pin: &AuthPin,
    progress: &mut Progress,
) -> Result<TokenEnrolled, StationError> {
    let issued = enroll::fetch_issued(nuc, request_number, progress).await?;
    progress.start("token", "token: the applicant's USB token and PIN");
    let token = CitizenToken::find(place).map_err(token_err("USB token"))?;
    token.login(pin).map_err(token_err("PIN verification"))?;
    progress.done(&format!("token: {:?} {}", token.label, token.serial));
    progress.start("write", "token: writing the certificates");
    let written = write_to_token(&token, request_number, &issued.certificates)?;
    progress.done("token: certificates written and read back");
    Ok(TokenEnrolled {
        request_number: issued.request_number,
        token_label: token.label.clone(),
        token_serial: token.serial.clone(),
        certificates: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_raw_or_wrapped() {
        let mut raw = vec![0x04];
        raw.extend([0x11; 64]);
        assert_eq!(uncompressed_point(&raw).as_deref(), Some(raw.as_slice()));
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&raw);
        assert_eq!(
            uncompressed_point(&wrapped).as_deref(),
            Some(raw.as_slice())
        );
        assert_eq!(uncompressed_point(&[0x04, 0x01, 0x02]), None);
        assert_eq!(uncompressed_point(&[]), None);
    }

    #[test]
    fn serials_become_words_the_nuc_takes() {
        assert_eq!(serial_word(" 4a1b:9c 00 "), "4a1b9c00");
        assert_eq!(serial_word(&"7".repeat(100)).len(), 64);
    }

    #[test]
    fn refusals_are_told_apart_from_failures() {
        assert!(
            TokenError::WrongPin {
                label: "t".into(),
                hint: ""
            }
            .is_refusal()
        );
        assert!(TokenError::EmptyPin.is_refusal());
        assert!(
            !TokenError::Unprotected {
                slot: KeySlot::Auth,
                what: "sensitive"
            }
            .is_refusal()
        );
        assert!(token_pin(String::new()).is_err());
    }
}
