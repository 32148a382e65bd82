//! C2SP signed notes: a text, a blank line, then signature lines
//! `— <key name> <base64(key ID || signature)>\n` (U+2014 em dash, space).
//!
//! Two signature types are implemented, both Ed25519:
//! - 0x01, the plain note signature over the text (the log's checkpoint signature);
//! - 0x04, the witness cosignature `cosignature/v1`: the signed message is
//!   `"cosignature/v1\ntime <unix secs>\n" || text` and the line carries
//!   `key ID || 8-byte big-endian time || signature`.
//!
//! The key ID is the first 4 bytes of SHA-256(key name || 0x0A || type || public key). A note
//! is opened against the keys the reader trusts: signatures from unknown keys are kept but not
//! believed, a signature from a known key that does not verify refuses the whole note, and a
//! note with no verified signature is refused. Signing goes through [`NoteSigner`], so the log
//! key can live in the HSM; [`Ed25519NoteKey`] is the software key for witnesses and tests.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, CheckpointError};

/// Signature type of a plain Ed25519 note signature.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of an Ed25519 witness cosignature (cosignature/v1).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// A note longer than this is refused before it is looked at.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// A note with more signature lines than this is refused.
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";
const COSIGNATURE_HEADER: &str = "cosignature/v1\ntime ";

/// The key ID of a key: SHA-256(name || 0x0A || type || public key)[..4].
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public_key);
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// A key name is non-empty and has no whitespace and no '+' (the vkey separator).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Why a note was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("the note is {0} bytes, more than the 1 MiB allowed")]
    TooLarge(usize),
    #[error("the note is not UTF-8")]
    NotUtf8,
    #[error("the note holds a control character other than newline")]
    ControlCharacter,
    #[error("the note has no blank line before its signatures")]
    NoSignatureBlock,
    #[error("the signature block does not end with a newline")]
    UnterminatedSignatures,
    #[error("signature line {line} is malformed: {reason}")]
    BadSignatureLine { line: usize, reason: &'static str },
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("the signature by {name} does not verify")]
    InvalidSignature { name: String },
    #[error("no signature on the note is from a trusted key")]
    NoVerifiedSignature,
    #[error("the note is not signed by the required key {name}")]
    MissingRequiredSignature { name: String },
    #[error("the note text is not a valid checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// Why a note could not be signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError<E> {
    #[error("the note text is not signable: {0}")]
    InvalidText(&'static str),
    #[error("the key name is not a valid note key name")]
    InvalidKeyName,
    #[error("the signer failed: {0}")]
    Signer(E),
}

/// Why a key (seed or vkey text) was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key name is empty or holds whitespace or '+'")]
    InvalidName,
    #[error("the verifier key is not <name>+<8 hex digits>+<base64 key>")]
    Malformed,
    #[error("the key ID in the verifier key does not match the key")]
    KeyIdMismatch,
    #[error("signature type {0:#04x} is not supported")]
    UnsupportedType(u8),
    #[error("the Ed25519 seed was rejected")]
    BadSeed,
}

/// One signature line: the signature bytes are what follows the key ID (for a cosignature,
/// the timestamp and then the Ed25519 signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line as it appears in a note, final newline included.
    pub fn line(&self) -> String {
        let mut payload = self.key_id.to_vec();
        payload.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(payload))
    }
}

/// A signed note: its text (final newline included) and its signature lines, verified or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parse the note's syntax only; nothing in it is to be believed yet (see [`Note::open`]).
    pub fn parse(msg: &[u8]) -> Result<Self, NoteError> {
        if msg.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge(msg.len()));
        }
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::NotUtf8)?;
        if msg.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::ControlCharacter);
        }
        // Signature lines are never empty, so the last blank line is the separator.
        let split = msg.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let (text, sigs) = (&msg[..=split], &msg[split + 2..]);
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::UnterminatedSignatures);
        };
        let mut signatures = Vec::new();
        for (i, line) in sigs.split('\n').enumerate() {
            if i >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(parse_signature_line(line, i + 1)?);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as sent: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Parse and verify against the trusted `keys`. Unknown signatures are kept unverified; a
    /// known key's signature that fails refuses the note; no verified signature refuses it.
    pub fn open(msg: &[u8], keys: &[VerifierKey]) -> Result<OpenedNote, NoteError> {
        let note = Note::parse(msg)?;
        let mut verified = Vec::new();
        let mut unverified = Vec::new();
        for sig in &note.signatures {
            match keys
                .iter()
                .find(|k| k.name == sig.name && k.key_id == sig.key_id)
            {
                Some(key) => {
                    let time = key.verify(&note.text, &sig.signature).ok_or_else(|| {
                        NoteError::InvalidSignature {
                            name: sig.name.clone(),
                        }
                    })?;
                    verified.push(VerifiedSignature {
                        name: sig.name.clone(),
                        key_id: sig.key_id,
                        sig_type: key.sig_type,
                        time,
                    });
                }
                None => unverified.push(sig.clone()),
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoVerifiedSignature);
        }
        Ok(OpenedNote {
            note,
            verified,
            unverified,
        })
    }
}

fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
    let bad = |reason| NoteError::BadSignatureLine {
        line: number,
        reason,
    };
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(bad("does not start with an em dash and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(bad("no space between key name and signature"))?;
    if !valid_name(name) {
        return Err(bad("invalid key name"));
    }
    let payload = STANDARD
        .decode(b64)
        .map_err(|_| bad("signature is not base64"))?;
    if STANDARD.encode(&payload) != b64 {
        return Err(bad("signature is not canonical base64"));
    }
    if payload.len() < 5 {
        return Err(bad("signature shorter than a key ID"));
    }
    let (id, signature) = payload.split_at(4);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: [id[0], id[1], id[2], id[3]],
        signature: signature.to_vec(),
    })
}

/// A note whose signatures were checked against trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    pub note: Note,
    pub verified: Vec<VerifiedSignature>,
    /// Signatures from keys the reader does not know: kept, never believed.
    pub unverified: Vec<NoteSignature>,
}

/// A signature that verified; `time` is the cosignature's timestamp (None for type 0x01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub name: String,
    pub key_id: [u8; 4],
    pub sig_type: u8,
    pub time: Option<u64>,
}

/// A checkpoint note that verified under the log's key, with the cosignatures that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub opened: OpenedNote,
}

/// Open a checkpoint note: refused unless `log_key` signed it; `witnesses` are checked too.
/// Only then is the text parsed as a checkpoint.
pub fn open_checkpoint(
    msg: &[u8],
    log_key: &VerifierKey,
    witnesses: &[VerifierKey],
) -> Result<SignedCheckpoint, NoteError> {
    let mut keys = Vec::with_capacity(witnesses.len() + 1);
    keys.push(log_key.clone());
    keys.extend_from_slice(witnesses);
    let opened = match Note::open(msg, &keys) {
        Err(NoteError::NoVerifiedSignature) => {
            return Err(NoteError::MissingRequiredSignature {
                name: log_key.name.clone(),
            });
        }
        other => other?,
    };
    let by_log = opened
        .verified
        .iter()
        .any(|v| v.name == log_key.name && v.key_id == log_key.key_id);
    if !by_log {
        return Err(NoteError::MissingRequiredSignature {
            name: log_key.name.clone(),
        });
    }
    let checkpoint = Checkpoint::parse(&opened.note.text)?;
    Ok(SignedCheckpoint { checkpoint, opened })
}

/// A key that signs notes: the HSM-held log key implements this, as does [`Ed25519NoteKey`].
pub trait NoteSigner {
    type Error;
    fn key_name(&self) -> &str;
    fn key_id(&self) -> [u8; 4];
    /// The raw signature over `msg`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Self::Error>;
}

/// The text must be what [`Note::parse`] gives back: non-empty, ending in a newline, no blank
/// line, no control character other than newline.
fn check_text<E>(text: &str) -> Result<(), SignError<E>> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(SignError::InvalidText(
            "must be non-empty and end with a newline",
        ));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(SignError::InvalidText("must not contain a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(SignError::InvalidText(
            "must not contain control characters",
        ));
    }
    if text.len() > MAX_NOTE_BYTES / 2 {
        return Err(SignError::InvalidText("too long"));
    }
    Ok(())
}

/// A plain note signature (type 0x01 for Ed25519) over `text`.
pub fn sign<S: NoteSigner>(text: &str, signer: &S) -> Result<NoteSignature, SignError<S::Error>> {
    check_text(text)?;
    if !valid_name(signer.key_name()) {
        return Err(SignError::InvalidKeyName);
    }
    let signature = signer.sign(text.as_bytes()).map_err(SignError::Signer)?;
    Ok(NoteSignature {
        name: signer.key_name().to_owned(),
        key_id: signer.key_id(),
        signature,
    })
}

/// A witness cosignature (cosignature/v1) over the checkpoint `text` at `time` (Unix seconds).
/// The signer must be a cosignature key (type 0x04 key ID).
pub fn cosign_v1<S: NoteSigner>(
    text: &str,
    time: u64,
    signer: &S,
) -> Result<NoteSignature, SignError<S::Error>> {
    check_text(text)?;
    if !valid_name(signer.key_name()) {
        return Err(SignError::InvalidKeyName);
    }
    let raw = signer
        .sign(&cosignature_message(text, time))
        .map_err(SignError::Signer)?;
    let mut signature = time.to_be_bytes().to_vec();
    signature.extend_from_slice(&raw);
    Ok(NoteSignature {
        name: signer.key_name().to_owned(),
        key_id: signer.key_id(),
        signature,
    })
}

fn cosignature_message(text: &str, time: u64) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}{time}\n{text}").into_bytes()
}

/// A trusted Ed25519 public key, for plain signatures (0x01) or cosignatures (0x04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub key_id: [u8; 4],
    pub sig_type: u8,
    pub public_key: [u8; 32],
}

impl VerifierKey {
    pub fn new(name: &str, sig_type: u8, public_key: [u8; 32]) -> Result<Self, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        if sig_type != TYPE_ED25519 && sig_type != TYPE_COSIGNATURE_V1 {
            return Err(KeyError::UnsupportedType(sig_type));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, sig_type, &public_key),
            sig_type,
            public_key,
        })
    }

    /// Parse the verifier key text `<name>+<hex key ID>+<base64(type || public key)>` (the form
    /// of Go's golang.org/x/mod/sumdb/note); the key ID must match the key.
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Malformed);
        };
        if !valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(KeyError::Malformed);
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| KeyError::Malformed)?
            .to_be_bytes();
        let raw = STANDARD.decode(b64).map_err(|_| KeyError::Malformed)?;
        if STANDARD.encode(&raw) != b64 {
            return Err(KeyError::Malformed);
        }
        let (&sig_type, key) = raw.split_first().ok_or(KeyError::Malformed)?;
        let public_key: [u8; 32] = key.try_into().map_err(|_| KeyError::Malformed)?;
        let parsed = VerifierKey::new(name, sig_type, public_key)?;
        if parsed.key_id != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(parsed)
    }

    /// The verifier key text, parseable by [`VerifierKey::parse`].
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.sig_type];
        raw.extend_from_slice(&self.public_key);
        format!(
            "{}+{:08x}+{}",
            self.name,
            u32::from_be_bytes(self.key_id),
            STANDARD.encode(raw)
        )
    }

    /// Verify one signature's bytes over `text`; `Some(time)` for a valid cosignature,
    /// `Some(None)` for a valid plain signature, `None` if it does not verify.
    fn verify(&self, text: &str, signature: &[u8]) -> Option<Option<u64>> {
        let key = UnparsedPublicKey::new(&ED25519, self.public_key);
        match self.sig_type {
            TYPE_ED25519 => key.verify(text.as_bytes(), signature).ok().map(|()| None),
            TYPE_COSIGNATURE_V1 => {
                if signature.len() != 8 + 64 {
                    return None;
                }
                let (t, sig) = signature.split_at(8);
                let time = u64::from_be_bytes(t.try_into().ok()?);
                key.verify(&cosignature_message(text, time), sig)
                    .ok()
                    .map(|()| Some(time))
            }
            _ => None,
        }
    }
}

/// A software Ed25519 note key, from a 32-byte seed: for witnesses and tests. The log's own
/// key belongs in the HSM.
pub struct Ed25519NoteKey {
    verifier: VerifierKey,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Ed25519NoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("Ed25519NoteKey")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Ed25519NoteKey {
    /// A key for plain note signatures (type 0x01).
    pub fn note_key(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        Self::with_type(name, TYPE_ED25519, seed)
    }

    /// A witness key for cosignature/v1 (type 0x04).
    pub fn cosignature_key(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        Self::with_type(name, TYPE_COSIGNATURE_V1, seed)
    }

    fn with_type(name: &str, sig_type: u8, seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::BadSeed)?;
        let public_key: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| KeyError::BadSeed)?;
        let verifier = VerifierKey::new(name, sig_type, public_key)?;
        Ok(Ed25519NoteKey { verifier, pair })
    }

    /// The public side, to hand to readers (e.g. as [`VerifierKey::to_vkey`] text).
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }
}

impl NoteSigner for Ed25519NoteKey {
    type Error = std::convert::Infallible;
    fn key_name(&self) -> &str {
        &self.verifier.name
    }
    fn key_id(&self) -> [u8; 4] {
        self.verifier.key_id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.pair.sign(msg).as_ref().to_vec())
    }
}
