//! The witness's state directory: its key, the pinned log key and the last checkpoint it
//! cosigned. Every write is atomic (temporary file, fsync, rename, fsync of the directory), so
//! a crash leaves either the old file or the new one, never a mix. The directory is locked
//! (flock on `lock`) for as long as a [`crate::Witness`] holds it: two witness processes on one
//! state could each cosign a different extension of the same checkpoint.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::WitnessError;

/// The witness's Ed25519 seed: 32 raw bytes, mode 0600.
pub const SEED_FILE: &str = "witness.seed";
/// The witness's verifier key text (`name+id+key`, type 0x04), for the CA operator.
pub const VKEY_FILE: &str = "witness.vkey";
/// The log's verifier key text, pinned on the first run.
pub const LOG_VKEY_FILE: &str = "log.vkey";
/// The body of the last checkpoint this witness cosigned.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Held with an exclusive flock while a witness runs on the directory.
pub const LOCK_FILE: &str = "lock";

/// No state file is larger than a note; anything larger is not ours.
const MAX_STATE_FILE: u64 = nuc_tlog::note::MAX_NOTE_BYTES as u64;

pub(crate) fn io_error(path: &Path, source: io::Error) -> WitnessError {
    WitnessError::StateIo {
        path: path.to_path_buf(),
        source,
    }
}

/// The locked state directory.
#[derive(Debug)]
pub(crate) struct StateDir {
    dir: PathBuf,
    // Holds the flock until the witness is dropped.
    _lock: File,
}

impl StateDir {
    /// Create the directory (0700) if needed and lock it.
    pub(crate) fn open(dir: &Path) -> Result<StateDir, WitnessError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(WitnessError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io_error(&lock_path, e.into())),
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The file's bytes, or None if it does not exist; refuses one larger than a note.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Vec<u8>>, WitnessError> {
        let path = self.path(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let mut buf = Vec::new();
        file.take(MAX_STATE_FILE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io_error(&path, e))?;
        if buf.len() as u64 > MAX_STATE_FILE {
            return Err(WitnessError::StateCorrupt {
                path,
                reason: format!("larger than {MAX_STATE_FILE} bytes"),
            });
        }
        Ok(Some(buf))
    }

    /// The file as UTF-8 text, or None if it does not exist.
    pub(crate) fn read_text(&self, name: &str) -> Result<Option<String>, WitnessError> {
        match self.read(name)? {
            None => Ok(None),
            Some(bytes) => {
                String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| WitnessError::StateCorrupt {
                        path: self.path(name),
                        reason: "not UTF-8".to_owned(),
                    })
            }
        }
    }

    /// Replace the file atomically with `data` (mode 0600).
    pub(crate) fn write(&self, name: &str, data: &[u8]) -> Result<(), WitnessError> {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        // A temporary file left by a crash is discarded, so the new one is created with our mode.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&tmp, e)),
        }
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&tmp, e));
        }
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }
}
