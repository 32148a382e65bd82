//! The session pool over one logged-in token, and the operations on its keys.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::{BitString, OctetString, UintRef};
use der::{Decode, Encode};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::KeyAlgorithm;
use crate::lane::HsmLane;

/// What went wrong with the HSM. PINs never appear in these messages.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("PKCS#11 module {path}: {source}")]
    Module {
        path: PathBuf,
        source: cryptoki::error::Error,
    },
    #[error("no initialised token labelled {0:?} (run `nuc init`?)")]
    TokenNotFound(String),
    #[error("token {0:?} already exists")]
    TokenExists(String),
    #[error("no key labelled {0:?} in the token")]
    KeyNotFound(String),
    #[error("{count} keys in the token are labelled {label:?}: which one is meant is ambiguous")]
    AmbiguousLabel { label: String, count: usize },
    #[error("key {label:?} is not what the configuration says ({detail})")]
    KeyMismatch { label: String, detail: String },
    #[error("PKCS#11 {op}: {source}")]
    Pkcs11 {
        op: &'static str,
        source: cryptoki::error::Error,
    },
    #[error("the token's session is not logged in (state {0}): the token was reset or removed")]
    NotLoggedIn(String),
    #[error("public key from the token cannot be encoded: {0}")]
    Encoding(#[from] der::Error),
    #[error(
        "the signing lane is saturated: all its {sessions} sessions busy and {queue} callers \
         already waiting"
    )]
    Saturated { sessions: usize, queue: usize },
    #[error("a digest of {len} bytes for key {label:?}, which signs digests of {want}")]
    BadDigest {
        label: String,
        len: usize,
        want: usize,
    },
}

pub(crate) fn p11(op: &'static str) -> impl FnOnce(cryptoki::error::Error) -> HsmError {
    move |source| HsmError::Pkcs11 { op, source }
}

/// A private key in the token, with what is needed to use it and to certify it.
#[derive(Debug, Clone)]
pub struct HsmKey {
    pub label: String,
    pub algorithm: KeyAlgorithm,
    handle: ObjectHandle,
    /// The public half, as it goes into a certificate.
    pub spki: SubjectPublicKeyInfoOwned,
}

/// A logged-in token.
pub struct Hsm {
    pkcs11: Pkcs11,
    slot: Slot,
    sessions: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

fn load(module: &Path) -> Result<Pkcs11, HsmError> {
    let pkcs11 = Pkcs11::new(module).map_err(|source| HsmError::Module {
        path: module.into(),
        source,
    })?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|source| HsmError::Module {
            path: module.into(),
            source,
        })?;
    Ok(pkcs11)
}

fn find_token(pkcs11: &Pkcs11, label: &str) -> Result<Option<Slot>, HsmError> {
    for slot in pkcs11
        .get_slots_with_initialized_token()
        .map_err(p11("C_GetSlotList"))?
    {
        let info = pkcs11.get_token_info(slot).map_err(p11("C_GetTokenInfo"))?;
        if info.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

impl Hsm {
    /// Initialises a new token with the given label and PINs in the first free slot.
    pub fn create_token(
        module: &Path,
        label: &str,
        so_pin: &str,
        user_pin: &str,
    ) -> Result<(), HsmError> {
        let pkcs11 = load(module)?;
        if find_token(&pkcs11, label)?.is_some() {
            return Err(HsmError::TokenExists(label.to_owned()));
        }
        let slot = pkcs11
            .get_slots_with_token()
            .map_err(p11("C_GetSlotList"))?
            .into_iter()
            .find(|s| {
                pkcs11
                    .get_token_info(*s)
                    .map(|i| !i.token_initialized())
                    .unwrap_or(false)
            })
            .ok_or_else(|| HsmError::TokenNotFound("(a free slot)".into()))?;
        let so = AuthPin::from(so_pin.to_owned());
        pkcs11
            .init_token(slot, &so, label)
            .map_err(p11("C_InitToken"))?;
        // SoftHSM moves a freshly initialised token to a new slot id: look it up again.
        let slot =
            find_token(&pkcs11, label)?.ok_or_else(|| HsmError::TokenNotFound(label.to_owned()))?;
        let session = pkcs11.open_rw_session(slot).map_err(p11("C_OpenSession"))?;
        session
            .login(UserType::So, Some(&so))
            .map_err(p11("C_Login(SO)"))?;
        session
            .init_pin(&AuthPin::from(user_pin.to_owned()))
            .map_err(p11("C_InitPIN"))?;
        session.logout().map_err(p11("C_Logout"))?;
        Ok(())
    }

    /// Opens the token labelled `label` and logs the user in.
    pub fn open(module: &Path, label: &str, user_pin: &str) -> Result<Self, HsmError> {
        let pkcs11 = load(module)?;
        let slot =
            find_token(&pkcs11, label)?.ok_or_else(|| HsmError::TokenNotFound(label.to_owned()))?;
        let session = pkcs11.open_rw_session(slot).map_err(p11("C_OpenSession"))?;
        session
            .login(UserType::User, Some(&AuthPin::from(user_pin.to_owned())))
            .map_err(p11("C_Login"))?;
        Ok(Self {
            pkcs11,
            slot,
            sessions: Mutex::new(vec![session]),
        })
    }

    /// Runs `f` on a session of its own; sessions are reused, never shared at once.
    pub(crate) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let pooled = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let session = match pooled {
            Some(s) => s,
            // Login state is per token: a new session of a logged-in application is logged in.
            None => self
                .pkcs11
                .open_rw_session(self.slot)
                .map_err(p11("C_OpenSession"))?,
        };
        let out = f(&session);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        out
    }

    /// Generates a key pair inside the token. The private key is sensitive, non-extractable,
    /// and usable only for signing.
    pub fn generate_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<HsmKey, HsmError> {
        self.with_session(|s| {
            if !s
                .find_objects(&[Attribute::Label(label.into())])
                .map_err(p11("C_FindObjects"))?
                .is_empty()
            {
                return Err(HsmError::KeyMismatch {
                    label: label.into(),
                    detail: "a key with this label exists".into(),
                });
            }
            let id = sha2::Sha256::digest(label.as_bytes())[..8].to_vec();
            let mut public = vec![
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::Label(label.into()),
                Attribute::Id(id.clone()),
            ];
            let private = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Derive(false),
                Attribute::Label(label.into()),
                Attribute::Id(id),
            ];
            let mechanism = match algorithm {
                KeyAlgorithm::Rsa { bits } => {
                    public.push(Attribute::ModulusBits((bits as u64).into()));
                    public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                    Mechanism::RsaPkcsKeyPairGen
                }
                ec => {
                    let curve = ec.curve().expect("EC algorithm has a curve");
                    public.push(Attribute::EcParams(curve.to_der()?));
                    Mechanism::EccKeyPairGen
                }
            };
            let (_pub, handle) = s
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(p11("C_GenerateKeyPair"))?;
            let spki = public_key_info(s, label, algorithm)?;
            Ok(HsmKey {
                label: label.into(),
                algorithm,
                handle,
                spki,
            })
        })
    }

    /// Finds a private key by label and checks it is of the expected algorithm.
    pub fn find_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<HsmKey, HsmError> {
        self.with_session(|s| {
            let handle = *s
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(label.into()),
                ])
                .map_err(p11("C_FindObjects"))?
                .first()
                .ok_or_else(|| HsmError::KeyNotFound(label.into()))?;
            let spki = public_key_info(s, label, algorithm)?;
            Ok(HsmKey {
                label: label.into(),
                algorithm,
                handle,
                spki,
            })
        })
    }

    /// Whether a pooled session still works and is logged in: one C_GetSessionInfo, which
    /// neither signs nor touches a key (the readiness check of the service).
    pub fn check_session(&self) -> Result<(), HsmError> {
        self.with_session(|s| {
            let info = s.get_session_info().map_err(p11("C_GetSessionInfo"))?;
            match info.session_state() {
                cryptoki::session::SessionState::RwUser
                | cryptoki::session::SessionState::RoUser => Ok(()),
                other => Err(HsmError::NotLoggedIn(format!("{other:?}"))),
            }
        })
    }

    /// Signs `data` with `key`; returns the signature as it goes into a BIT STRING
    /// (PKCS#1 v1.5 bytes for RSA, a DER Ecdsa-Sig-Value for ECDSA).
    pub fn sign(&self, key: &HsmKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| sign_on(s, key, data))
    }

    /// Signs a digest computed outside the token, for data too large to hand over whole (a CRL
    /// of millions of entries, hashed while it is streamed out). `digest` must be the hash
    /// [`KeyAlgorithm::digest_len`] names for the key (SHA-256 for RSA and P-256, SHA-384 for
    /// P-384). The signature is the one [`Hsm::sign`] gives over the data: for RSA the same
    /// bytes (PKCS#1 v1.5 is deterministic: the token pads the DigestInfo built here).
    pub fn sign_digest(&self, key: &HsmKey, digest: &[u8]) -> Result<Vec<u8>, HsmError> {
        if digest.len() != key.algorithm.digest_len() {
            return Err(HsmError::BadDigest {
                label: key.label.clone(),
                len: digest.len(),
                want: key.algorithm.digest_len(),
            });
        }
        self.with_session(|s| {
            observed(&key.label, || match key.algorithm {
                KeyAlgorithm::Rsa { .. } => {
                    let mut info = SHA256_DIGEST_INFO_PREFIX.to_vec();
                    info.extend_from_slice(digest);
                    s.sign(&Mechanism::RsaPkcs, key.handle, &info)
                        .map_err(p11("C_Sign"))
                }
                KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => ecdsa(s, key, digest),
            })
        })
    }

    /// A lane of `sessions` sessions of its own (opened now, logged in with the token) with at
    /// most `queue` callers waiting for one: signing there never takes a session of this pool,
    /// and a caller finding the lane full is refused at once.
    pub fn lane(&self, sessions: usize, queue: usize) -> Result<HsmLane, HsmError> {
        let opened = (0..sessions)
            .map(|_| {
                self.pkcs11
                    .open_rw_session(self.slot)
                    .map_err(p11("C_OpenSession"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HsmLane::new(opened, queue))
    }

    /// The raw signing operation alone, on a digest or message as the mechanism wants it:
    /// the physical limit that benchmarks compare the whole issuance against.
    pub fn sign_raw(&self, key: &HsmKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| {
            let mechanism = match key.algorithm {
                KeyAlgorithm::Rsa { .. } => Mechanism::Sha256RsaPkcs,
                _ => Mechanism::Ecdsa,
            };
            s.sign(&mechanism, key.handle, data).map_err(p11("C_Sign"))
        })
    }
}

/// A signature by `key` on session `s`, as it goes into a BIT STRING. Timed and counted
/// (`nuc_hsm_sign_duration_seconds`, `nuc_hsm_sign_errors_total`, by key label): the time in
/// the token alone, not the wait for a session.
pub(crate) fn sign_on(s: &Session, key: &HsmKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
    observed(&key.label, || sign_unobserved(s, key, data))
}

/// Runs one signing operation of the token and records its latency or its failure.
pub(crate) fn observed<T>(
    label: &str,
    sign: impl FnOnce() -> Result<T, HsmError>,
) -> Result<T, HsmError> {
    let started = std::time::Instant::now();
    let result = sign();
    match &result {
        Ok(_) => metrics::histogram!("nuc_hsm_sign_duration_seconds", "key" => label.to_owned())
            .record(started.elapsed().as_secs_f64()),
        Err(_) => {
            metrics::counter!("nuc_hsm_sign_errors_total", "key" => label.to_owned()).increment(1)
        }
    }
    result
}

fn sign_unobserved(s: &Session, key: &HsmKey, data: &[u8]) -> Result<Vec<u8>, HsmError> {
    match key.algorithm {
        KeyAlgorithm::Rsa { .. } => s
            .sign(&Mechanism::Sha256RsaPkcs, key.handle, data)
            .map_err(p11("C_Sign")),
        KeyAlgorithm::EcdsaP256 => ecdsa(s, key, &sha2::Sha256::digest(data)),
        KeyAlgorithm::EcdsaP384 => ecdsa(s, key, &sha2::Sha384::digest(data)),
    }
}

/// DigestInfo of a SHA-256 digest (RFC 8017 §9.2, note 1), up to the digest itself: what
/// CKM_RSA_PKCS pads and signs, as CKM_SHA256_RSA_PKCS does after hashing.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

fn ecdsa(s: &Session, key: &HsmKey, digest: &[u8]) -> Result<Vec<u8>, HsmError> {
    // SoftHSM's CKM_ECDSA takes the digest and returns r‖s; X.509 wants the DER SEQUENCE.
    let raw = s
        .sign(&Mechanism::Ecdsa, key.handle, digest)
        .map_err(p11("C_Sign"))?;
    let (r, sv) = raw.split_at(raw.len() / 2);
    Ok(EcdsaSigValue {
        r: UintRef::new(r)?,
        s: UintRef::new(sv)?,
    }
    .to_der()?)
}

fn public_key_info(
    s: &Session,
    label: &str,
    algorithm: KeyAlgorithm,
) -> Result<SubjectPublicKeyInfoOwned, HsmError> {
    let public = *s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.into()),
        ])
        .map_err(p11("C_FindObjects"))?
        .first()
        .ok_or_else(|| HsmError::KeyNotFound(format!("{label} (public half)")))?;
    let mismatch = |detail: String| HsmError::KeyMismatch {
        label: label.into(),
        detail,
    };
    match algorithm {
        KeyAlgorithm::Rsa { bits } => {
            let attrs = s
                .get_attributes(
                    public,
                    &[
                        AttributeType::KeyType,
                        AttributeType::Modulus,
                        AttributeType::PublicExponent,
                    ],
                )
                .map_err(p11("C_GetAttributeValue"))?;
            let (mut n, mut e, mut kt) = (None, None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    Attribute::KeyType(t) => kt = Some(t),
                    _ => {}
                }
            }
            if kt != Some(KeyType::RSA) {
                return Err(mismatch(format!("expected an RSA key, token says {kt:?}")));
            }
            let (n, e) = n
                .zip(e)
                .ok_or_else(|| mismatch("modulus or exponent missing".into()))?;
            let got_bits = (n.len() * 8) as u32 - n.first().map_or(8, |b| b.leading_zeros());
            if got_bits != bits {
                return Err(mismatch(format!(
                    "expected {bits} bits, token has {got_bits}"
                )));
            }
            let key = RsaPublicKey {
                modulus: UintRef::new(&n)?,
                public_exponent: UintRef::new(&e)?,
            }
            .to_der()?;
            Ok(SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
                    parameters: Some(der::asn1::AnyRef::from(der::asn1::Null).into()),
                },
                subject_public_key: BitString::from_bytes(&key)?,
            })
        }
        ec => {
            let curve = ec.curve().expect("EC algorithm has a curve");
            let attrs = s
                .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
                .map_err(p11("C_GetAttributeValue"))?;
            let (mut params, mut point) = (None, None);
            for a in attrs {
                match a {
                    Attribute::EcParams(v) => params = Some(v),
                    Attribute::EcPoint(v) => point = Some(v),
                    _ => {}
                }
            }
            if params.as_deref() != Some(curve.to_der()?.as_slice()) {
                return Err(mismatch(format!("expected curve {curve}")));
            }
            // CKA_EC_POINT is the point wrapped in a DER OCTET STRING.
            let point =
                OctetString::from_der(&point.ok_or_else(|| mismatch("EC point missing".into()))?)?;
            Ok(SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(der::Any::encode_from(&curve)?),
                },
                subject_public_key: BitString::from_bytes(point.as_bytes())?,
            })
        }
    }
}
