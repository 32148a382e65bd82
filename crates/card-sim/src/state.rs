//! The card's persistent memory: kind, serial, PIN (salted hash) and its counter, the keys and
//! the certificates of both slots.
//!
//! A real card writes its EEPROM atomically per object; here the whole state is one JSON file
//! replaced atomically (temporary file, fsync, rename, fsync of the directory), so a killed
//! emulator leaves either the old state or the new one, never a torn file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::KeyPair;
use crate::profile::{CardKind, Slot};

/// Version of the state file format.
const FORMAT: u32 = 1;
/// PIN tries at personalisation.
pub const PIN_MAX_TRIES: u8 = 3;
/// Shortest and longest PIN the applet accepts.
pub const PIN_LEN: std::ops::RangeInclusive<usize> = 4..=12;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("card state {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("card state {path}: not a card state file: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("card state {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("PIN must be {min} to {max} digits", min = PIN_LEN.start(), max = PIN_LEN.end())]
    BadPin,
    #[error("serial must be 1 to 32 letters, digits or '-'")]
    BadSerial,
    #[error("card state {0} exists already (use --force to personalise it anew)")]
    Exists(PathBuf),
    #[error("cryptography: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// One key slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    /// The private key, SEC1 DER in hex; absent until generated on the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The certificate, DER in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
}

/// Everything the card remembers when it is powered off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardState {
    pub format: u32,
    pub kind: CardKind,
    pub serial: String,
    /// Salt and SHA-256(salt ‖ PIN), hex: the PIN itself is never stored.
    pub pin_salt: String,
    pub pin_hash: String,
    pub pin_max_tries: u8,
    pub pin_tries_left: u8,
    pub auth: SlotState,
    pub sign: SlotState,
}

impl CardState {
    /// A freshly personalised card: no keys, no certificates, the PIN with all its tries.
    pub fn personalise(
        kind: CardKind,
        pin: &[u8],
        serial: Option<&str>,
    ) -> Result<CardState, StateError> {
        if !PIN_LEN.contains(&pin.len()) || !pin.iter().all(u8::is_ascii_digit) {
            return Err(StateError::BadPin);
        }
        let serial = match serial {
            Some(s) => s.to_owned(),
            None => random_serial(kind)?,
        };
        if serial.is_empty()
            || serial.len() > 32
            || !serial
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StateError::BadSerial);
        }
        let mut salt = [0u8; 16];
        openssl::rand::rand_bytes(&mut salt)?;
        Ok(CardState {
            format: FORMAT,
            kind,
            serial,
            pin_salt: hex::encode(salt),
            pin_hash: hex::encode(pin_hash(&salt, pin)),
            pin_max_tries: PIN_MAX_TRIES,
            pin_tries_left: PIN_MAX_TRIES,
            auth: SlotState::default(),
            sign: SlotState::default(),
        })
    }

    /// Reads and checks a state file.
    pub fn load(path: &Path) -> Result<CardState, StateError> {
        let text = fs::read(path).map_err(|source| StateError::Io {
            path: path.into(),
            source,
        })?;
        let state: CardState =
            serde_json::from_slice(&text).map_err(|source| StateError::Json {
                path: path.into(),
                source,
            })?;
        state.check().map_err(|detail| StateError::Invalid {
            path: path.into(),
            detail,
        })?;
        Ok(state)
    }

    /// Refuses a state this applet could not have written: the emulator must not start with a
    /// card it would then mishandle.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this emulator knows {FORMAT})",
                self.format
            ));
        }
        if self.pin_tries_left > self.pin_max_tries || self.pin_max_tries == 0 {
            return Err("PIN counter out of range".into());
        }
        hex::decode(&self.pin_salt).map_err(|e| format!("pin_salt: {e}"))?;
        if hex::decode(&self.pin_hash).map(|h| h.len()) != Ok(32) {
            return Err("pin_hash is not a SHA-256 in hex".into());
        }
        for slot in Slot::ALL {
            let s = self.slot(slot);
            if let Some(key) = &s.key {
                let der = hex::decode(key).map_err(|e| format!("{slot:?} key: {e}"))?;
                KeyPair::from_der(&der).map_err(|e| format!("{slot:?} key: {e}"))?;
            }
            if let Some(cert) = &s.cert {
                hex::decode(cert).map_err(|e| format!("{slot:?} certificate: {e}"))?;
            }
        }
        Ok(())
    }

    pub fn slot(&self, slot: Slot) -> &SlotState {
        match slot {
            Slot::Auth => &self.auth,
            Slot::Sign => &self.sign,
        }
    }

    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotState {
        match slot {
            Slot::Auth => &mut self.auth,
            Slot::Sign => &mut self.sign,
        }
    }

    /// The key pair of a slot, if one was generated.
    pub fn key(&self, slot: Slot) -> Option<KeyPair> {
        let der = hex::decode(self.slot(slot).key.as_ref()?).ok()?;
        KeyPair::from_der(&der).ok()
    }

    /// The certificate of a slot, if one was written.
    pub fn cert(&self, slot: Slot) -> Option<Vec<u8>> {
        hex::decode(self.slot(slot).cert.as_ref()?).ok()
    }

    /// Compares a presented PIN with the stored hash, in constant time.
    pub fn pin_matches(&self, pin: &[u8]) -> bool {
        let (Ok(salt), Ok(stored)) = (hex::decode(&self.pin_salt), hex::decode(&self.pin_hash))
        else {
            return false;
        };
        let presented = pin_hash(&salt, pin);
        stored.len() == presented.len() && openssl::memcmp::eq(&stored, &presented)
    }

    /// What can be shown about the card without giving away a secret (for `card-sim --show`).
    pub fn public_summary(&self) -> String {
        let has = |b: bool| if b { "yes" } else { "no" };
        format!(
            "kind: {}\nserial: {}\nPIN tries left: {} of {}\nAUTH key: {}, certificate: {}\nSIGN key: {}, certificate: {}\n",
            self.kind.name(),
            self.serial,
            self.pin_tries_left,
            self.pin_max_tries,
            has(self.auth.key.is_some()),
            has(self.auth.cert.is_some()),
            has(self.sign.key.is_some()),
            has(self.sign.cert.is_some()),
        )
    }
}

fn pin_hash(salt: &[u8], pin: &[u8]) -> [u8; 32] {
    let mut h = openssl::sha::Sha256::new();
    h.update(salt);
    h.update(pin);
    h.finish()
}

/// A serial in the style of each kind: 9 digits for an ID card, a 19-digit ICCID (89, country
/// code 7, …) for a SIM.
fn random_serial(kind: CardKind) -> Result<String, StateError> {
    let mut bytes = [0u8; 19];
    openssl::rand::rand_bytes(&mut bytes)?;
    let digits: String = bytes.iter().map(|b| char::from(b'0' + b % 10)).collect();
    Ok(match kind {
        CardKind::IdCard => format!("0{}", &digits[..8]),
        CardKind::Sim => format!("897{}", &digits[..16]),
    })
}

/// Where the applet keeps its state between commands.
pub trait Store {
    /// Makes `state` durable; when this fails the state before stays the one in force.
    fn save(&mut self, state: &CardState) -> io::Result<()>;
}

/// The state file of the `card-sim` binary.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// Writes a state that does not exist yet (personalisation); refuses to overwrite unless
    /// `force`.
    pub fn create(&mut self, state: &CardState, force: bool) -> Result<(), StateError> {
        if !force && self.path.exists() {
            return Err(StateError::Exists(self.path.clone()));
        }
        self.save(state).map_err(|source| StateError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Store for FileStore {
    fn save(&mut self, state: &CardState) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        write_atomically(&self.path, &json)
    }
}

/// Temporary file beside the target, fsync, rename over it, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("state path has no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A state kept in memory, for unit tests; it can be told to fail, like a worn-out EEPROM.
#[derive(Default)]
pub struct MemoryStore {
    pub saved: Option<CardState>,
    pub fail: bool,
}

impl Store for MemoryStore {
    fn save(&mut self, state: &CardState) -> io::Result<()> {
        if self.fail {
            return Err(io::Error::other("memory failure"));
        }
        self.saved = Some(state.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personalise_save_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let state = CardState::personalise(CardKind::Sim, b"1234", None).unwrap();
        assert!(state.serial.starts_with("897") && state.serial.len() == 19);
        let mut store = FileStore::new(&path);
        store.create(&state, false).unwrap();
        assert!(matches!(
            store.create(&state, false),
            Err(StateError::Exists(_))
        ));
        let back = CardState::load(&path).unwrap();
        assert_eq!(back, state);
        assert!(back.pin_matches(b"1234"));
        assert!(!back.pin_matches(b"1235"));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // The PIN itself is not in the file.
        assert!(!fs::read_to_string(&path).unwrap().contains("1234\""));
    }

    #[test]
    fn bad_pins_and_serials_are_refused() {
        for pin in [&b"123"[..], b"1234567890123", b"12a4"] {
            assert!(matches!(
                CardState::personalise(CardKind::IdCard, pin, None),
                Err(StateError::BadPin)
            ));
        }
        assert!(matches!(
            CardState::personalise(CardKind::IdCard, b"1234", Some("a b")),
            Err(StateError::BadSerial)
        ));
    }

    #[test]
    fn a_corrupt_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let mut state = CardState::personalise(CardKind::IdCard, b"1234", None).unwrap();
        state.pin_tries_left = 9;
        fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
        assert!(matches!(
            CardState::load(&path),
            Err(StateError::Invalid { .. })
        ));
        fs::write(&path, b"{\"format\":1").unwrap();
        assert!(matches!(
            CardState::load(&path),
            Err(StateError::Json { .. })
        ));
    }
}
