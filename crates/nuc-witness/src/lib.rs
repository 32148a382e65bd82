//! A witness of the CA's audit log: a small independent process that another organisation
//! (e.g. the e-government operator) runs. Each round it fetches the log's latest checkpoint
//! over HTTP, verifies the log's signature on it, checks that it extends the last checkpoint
//! this witness cosigned (an RFC 9162 consistency proof), cosigns it with its own Ed25519 key
//! (C2SP tlog-cosignature, `cosignature/v1`) and posts the cosignature back to the log.
//!
//! This crate owns a witness's state and its decisions: its key, the log key pinned on the
//! first run, the last checkpoint it cosigned, and whether a new checkpoint is cosigned,
//! unchanged or refused (fork, rollback, bad signature, wrong origin, malformed proof). The
//! Merkle and signed-note cryptography is nuc-tlog's; this crate only applies it.
//!
//! It must never:
//! - cosign a checkpoint that is not proven consistent with the last one it cosigned (the
//!   first checkpoint it ever sees is the only one accepted on trust);
//! - move its state backwards: the stored checkpoint only ever grows, or is replaced by another
//!   text of the same tree (same size, same root);
//! - trust anything the log sends: a checkpoint counts only once it verifies under the pinned
//!   log key, a proof only once it verifies, and every response is bounded in time and size
//!   and parsed without panicking.
//!
//! State directory (created 0700, files 0600, written atomically; see [`state`]):
//! `witness.seed` (32 random bytes), `witness.vkey` (this witness's verifier key text, to give
//! to the CA operator), `log.vkey` (the pinned log key), `checkpoint` (the body of the last
//! checkpoint cosigned) and `lock` (flocked while a witness runs on the directory).
//!
//! The state is written before the cosignature is posted: a witness that has cosigned a
//! checkpoint is committed to it even if the post failed. The next round sees the same tree,
//! notices that the log's note does not carry a valid cosignature of ours, and posts again.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nuc_tlog::Hash;
use nuc_tlog::checkpoint::Checkpoint;
use nuc_tlog::note::{self, Ed25519NoteKey, Note, NoteError, NoteSignature, VerifierKey};

mod http;
pub mod state;

use http::LogClient;
pub use http::{CONNECT_TIMEOUT, MAX_BODY, REQUEST_TIMEOUT, client_config, system_roots};
use state::{CHECKPOINT_FILE, LOG_VKEY_FILE, SEED_FILE, StateDir, VKEY_FILE};

/// How a witness is started.
#[derive(Debug, Clone)]
pub struct WitnessOptions {
    /// The log's base URL (`http://` or `https://`); the API lives under `{log_url}/audit/`.
    pub log_url: String,
    /// The state directory (created 0700 if missing).
    pub state_dir: PathBuf,
    /// The log's verifier key text (`name+id+key`, type 0x01). Required on the first run, where
    /// it is pinned; later runs may omit it, and a different one is refused.
    pub log_key: Option<String>,
    /// This witness's key name; required on the first run, where the key is created.
    pub name: Option<String>,
    /// Run one round and return instead of looping.
    pub once: bool,
    /// The pause between rounds when looping.
    pub interval: Duration,
}

/// What a round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The log has no checkpoint yet (404).
    NoCheckpoint,
    /// A new checkpoint was verified (first one, or proven consistent), cosigned, stored and
    /// posted.
    Cosigned { size: u64 },
    /// The log still shows the tree last cosigned but without a valid cosignature of ours, so
    /// it was cosigned and posted again.
    Recosigned { size: u64 },
    /// The log still shows the tree last cosigned, with our cosignature: nothing to do.
    Unchanged { size: u64 },
}

fn hex_root(root: &Hash) -> String {
    hex::encode(root)
}

/// Why a witness refused, or could not do, its work.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    // --- Refusals: the log's data is wrong (exit code 1). ---
    /// The log's checkpoint and the one this witness cosigned cannot both be honest.
    #[error(
        "FORK: the log's checkpoint of size {new_size} (root {}) does not extend the checkpoint \
         of size {cosigned_size} (root {}) this witness cosigned: {reason}",
        hex_root(.new_root), hex_root(.cosigned_root)
    )]
    Fork {
        cosigned_size: u64,
        cosigned_root: Hash,
        new_size: u64,
        new_root: Hash,
        reason: String,
    },
    /// The log shows a smaller tree than one this witness already cosigned.
    #[error(
        "ROLLBACK: the log's checkpoint has size {new_size} (root {}), smaller than the size \
         {cosigned_size} (root {}) this witness already cosigned",
        hex_root(.new_root), hex_root(.cosigned_root)
    )]
    Rollback {
        cosigned_size: u64,
        cosigned_root: Hash,
        new_size: u64,
        new_root: Hash,
    },
    /// The checkpoint note does not verify under the pinned log key, or is not a checkpoint.
    #[error("the checkpoint from {url} is refused: {source}")]
    BadCheckpoint { url: String, source: NoteError },
    /// The checkpoint's origin is not the log key's name.
    #[error("the checkpoint's origin {got:?} is not the log key's name {expected:?}")]
    WrongOrigin { expected: String, got: String },
    /// The consistency proof the log sent is malformed (not a verification failure: that is a
    /// [`WitnessError::Fork`]).
    #[error("the consistency proof from size {from} to {to} is malformed: {reason}")]
    BadProof { from: u64, to: u64, reason: String },
    /// The verified checkpoint text could not be cosigned (e.g. longer than a note allows).
    #[error("the checkpoint of size {size} cannot be cosigned: {reason}")]
    Uncosignable { size: u64, reason: String },

    // --- Operational errors: network, the log's HTTP answers, state, configuration (exit 2). ---
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}: {reason}")]
    HttpStatus {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("the response from {url} is larger than {limit} bytes")]
    BodyTooLarge { url: String, limit: usize },
    /// The log did not store the cosignature: 403 means the CA has not configured this
    /// witness's key, 409 that it holds another text for this checkpoint.
    #[error("the log refused the cosignature at {url} with HTTP {status}: {reason}")]
    CosignatureRefused {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("TLS: {reason}")]
    Tls { reason: String },
    #[error("the log URL {url:?} is refused: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the state file {path} could not be read or written: {source}")]
    StateIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is corrupt: {reason}")]
    StateCorrupt { path: PathBuf, reason: String },
    #[error("another witness holds the state directory {path}")]
    Locked { path: PathBuf },
    #[error("no witness key in {path}: give the witness's name on the first run to create one")]
    NoSeed { path: PathBuf },
    #[error("the witness key is named {stored:?}, not {given:?}")]
    WitnessNameMismatch { stored: String, given: String },
    #[error("the witness name {name:?} is refused: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no log key pinned in {path}: give the log's verifier key on the first run")]
    NoLogKey { path: PathBuf },
    #[error("the log key {given:?} is refused: {reason}")]
    InvalidLogKey { given: String, reason: String },
    #[error("the log key given ({given}) is not the one pinned on the first run ({pinned})")]
    LogKeyMismatch { pinned: String, given: String },
    #[error("the option {option} is refused: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: &'static str,
    },
}

impl WitnessError {
    /// The process exit code: 1 when the log's data was refused (fork, rollback, bad signature,
    /// wrong origin, malformed proof: look at the log), 2 for operational errors (network,
    /// HTTP answers, state I/O, configuration: look at the witness or the connection).
    pub fn exit_code(&self) -> i32 {
        if self.is_refusal() { 1 } else { 2 }
    }

    /// The log's data was refused: the loop stops, as retrying cannot make it right.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            WitnessError::Fork { .. }
                | WitnessError::Rollback { .. }
                | WitnessError::BadCheckpoint { .. }
                | WitnessError::WrongOrigin { .. }
                | WitnessError::BadProof { .. }
                | WitnessError::Uncosignable { .. }
        )
    }
}

/// A witness on its locked state directory, ready to run rounds.
#[derive(Debug)]
pub struct Witness {
    state: StateDir,
    client: LogClient,
    key: Ed25519NoteKey,
    log_key: VerifierKey,
    /// The last checkpoint this witness cosigned.
    last: Option<Checkpoint>,
    key_created: bool,
    interval: Duration,
    once: bool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// Open (or on the first run create) the state and the client; https trusts the system's
    /// CA bundle ([`system_roots`]).
    pub fn open(opts: WitnessOptions) -> Result<Witness, WitnessError> {
        Self::open_with_tls(opts, None)
    }

    /// As [`Witness::open`], with the rustls configuration for https given (see
    /// [`client_config`]); ignored for http.
    pub fn open_with_tls(
        opts: WitnessOptions,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Witness, WitnessError> {
        if !opts.once && opts.interval.is_zero() {
            return Err(WitnessError::InvalidOption {
                option: "interval",
                reason: "must be more than zero when looping",
            });
        }
        let client = LogClient::new(&opts.log_url, tls)?;
        let state = StateDir::open(&opts.state_dir)?;
        // Everything is checked before anything is written, so a refused first run leaves no
        // half-made state behind.
        let (log_key, pin) = resolve_log_key(&state, opts.log_key.as_deref())?;
        let last = load_last(&state, &log_key)?;
        let (key, key_created) = load_or_create_key(&state, opts.name.as_deref())?;
        if pin {
            state.write(LOG_VKEY_FILE, format!("{}\n", log_key.to_vkey()).as_bytes())?;
            tracing::info!(log_key = %log_key.to_vkey(), "log key pinned");
        }
        Ok(Witness {
            state,
            client,
            key,
            log_key,
            last,
            key_created,
            interval: opts.interval,
            once: opts.once,
        })
    }

    /// This witness's verifier key (type 0x04), for the CA operator.
    pub fn verifier_key(&self) -> &VerifierKey {
        self.key.verifier()
    }

    /// The pinned log key.
    pub fn log_key(&self) -> &VerifierKey {
        &self.log_key
    }

    /// Whether this open created the witness key (the first run).
    pub fn key_created(&self) -> bool {
        self.key_created
    }

    /// The last checkpoint this witness cosigned.
    pub fn last_cosigned(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    /// Whether `msg` carries a cosignature of ours over `text` that verifies. Only our lines
    /// are checked, so a forged line under our name makes this false, never an error.
    fn carries_our_cosignature(&self, text: &str, signatures: &[NoteSignature]) -> bool {
        let ours = self.key.verifier();
        let lines: Vec<NoteSignature> = signatures
            .iter()
            .filter(|s| s.name == ours.name && s.key_id == ours.key_id)
            .cloned()
            .collect();
        if lines.is_empty() {
            return false;
        }
        let only_ours = Note {
            text: text.to_owned(),
            signatures: lines,
        };
        Note::open(only_ours.to_text().as_bytes(), std::slice::from_ref(ours)).is_ok()
    }

    /// Cosign `text` now, store it as the last cosigned, then post the cosignature.
    async fn cosign_store_post(
        &mut self,
        text: String,
        checkpoint: Checkpoint,
    ) -> Result<(), WitnessError> {
        let size = checkpoint.size;
        let signature = note::cosign_v1(&text, now_secs(), &self.key).map_err(|e| {
            WitnessError::Uncosignable {
                size,
                reason: e.to_string(),
            }
        })?;
        self.state.write(CHECKPOINT_FILE, text.as_bytes())?;
        let body = Note {
            text,
            signatures: vec![signature],
        }
        .to_text();
        self.last = Some(checkpoint);
        self.client.post_cosignature(body).await
    }

    async fn round_inner(&mut self) -> Result<Outcome, WitnessError> {
        let Some(msg) = self.client.latest_checkpoint().await? else {
            return Ok(Outcome::NoCheckpoint);
        };
        let opened = note::open_checkpoint(&msg, &self.log_key, &[]).map_err(|source| {
            WitnessError::BadCheckpoint {
                url: self.client.url(http::CHECKPOINT_PATH),
                source,
            }
        })?;
        let new = opened.checkpoint;
        if new.origin != self.log_key.name {
            return Err(WitnessError::WrongOrigin {
                expected: self.log_key.name.clone(),
                got: new.origin,
            });
        }
        let text = opened.opened.note.text;
        let Some(last) = self.last.clone() else {
            tracing::info!(
                size = new.size,
                root = %hex_root(&new.root),
                "first checkpoint: accepted on trust"
            );
            let size = new.size;
            self.cosign_store_post(text, new).await?;
            return Ok(Outcome::Cosigned { size });
        };
        let old = &last;
        let fork = |reason: String| WitnessError::Fork {
            cosigned_size: old.size,
            cosigned_root: old.root,
            new_size: new.size,
            new_root: new.root,
            reason,
        };
        if new.size < old.size {
            return Err(WitnessError::Rollback {
                cosigned_size: old.size,
                cosigned_root: old.root,
                new_size: new.size,
                new_root: new.root,
            });
        }
        if new.size == old.size {
            if new.root != old.root {
                return Err(fork("same size, different root".to_owned()));
            }
            if self.carries_our_cosignature(&text, &opened.opened.note.signatures) {
                return Ok(Outcome::Unchanged { size: new.size });
            }
            // Same tree (perhaps another text of it): not a step backwards, so it may replace
            // the stored text.
            let size = new.size;
            self.cosign_store_post(text, new).await?;
            return Ok(Outcome::Recosigned { size });
        }
        let proof = self.client.consistency_proof(old.size, new.size).await?;
        if let Err(e) =
            nuc_tlog::tree::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        {
            return Err(fork(format!("the consistency proof does not verify: {e}")));
        }
        let size = new.size;
        self.cosign_store_post(text, new).await?;
        Ok(Outcome::Cosigned { size })
    }
}

fn load_or_create_key(
    state: &StateDir,
    name: Option<&str>,
) -> Result<(Ed25519NoteKey, bool), WitnessError> {
    let seed_path = state.path(SEED_FILE);
    let vkey_path = state.path(VKEY_FILE);
    let invalid_name = |name: &str, e: note::KeyError| WitnessError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    };
    let Some(seed) = state.read(SEED_FILE)? else {
        let Some(name) = name else {
            return Err(WitnessError::NoSeed { path: seed_path });
        };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| WitnessError::StateIo {
            path: seed_path.clone(),
            source: std::io::Error::other(format!("no system randomness: {e}")),
        })?;
        let key =
            Ed25519NoteKey::cosignature_key(name, &seed).map_err(|e| invalid_name(name, e))?;
        state.write(SEED_FILE, &seed)?;
        state.write(
            VKEY_FILE,
            format!("{}\n", key.verifier().to_vkey()).as_bytes(),
        )?;
        return Ok((key, true));
    };
    let corrupt = |path: &std::path::Path, reason: String| WitnessError::StateCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(&seed_path, format!("{} bytes, not 32", seed.len())))?;
    let stored = match state.read_text(VKEY_FILE)? {
        Some(text) => Some(
            VerifierKey::parse(text.trim_end_matches('\n'))
                .map_err(|e| corrupt(&vkey_path, e.to_string()))?,
        ),
        None => None,
    };
    let key_name = match (&stored, name) {
        (Some(stored), Some(given)) if stored.name != given => {
            return Err(WitnessError::WitnessNameMismatch {
                stored: stored.name.clone(),
                given: given.to_owned(),
            });
        }
        (Some(stored), _) => stored.name.clone(),
        (None, Some(given)) => given.to_owned(),
        (None, None) => {
            return Err(corrupt(
                &vkey_path,
                "missing; give the witness's name to write it again".to_owned(),
            ));
        }
    };
    let key = Ed25519NoteKey::cosignature_key(&key_name, &seed)
        .map_err(|e| invalid_name(&key_name, e))?;
    match stored {
        Some(stored) if &stored != key.verifier() => {
            return Err(corrupt(
                &vkey_path,
                "does not match the key of witness.seed".to_owned(),
            ));
        }
        Some(_) => {}
        None => state.write(
            VKEY_FILE,
            format!("{}\n", key.verifier().to_vkey()).as_bytes(),
        )?,
    }
    Ok((key, false))
}

fn parse_log_key(text: &str) -> Result<VerifierKey, String> {
    let key = VerifierKey::parse(text.trim()).map_err(|e| e.to_string())?;
    if key.sig_type != note::TYPE_ED25519 {
        return Err(format!(
            "signature type {:#04x} is not the log's plain Ed25519 note signature (0x01)",
            key.sig_type
        ));
    }
    Ok(key)
}

/// The log key to use, and whether it must be pinned (the first run).
fn resolve_log_key(
    state: &StateDir,
    given: Option<&str>,
) -> Result<(VerifierKey, bool), WitnessError> {
    let path = state.path(LOG_VKEY_FILE);
    let given = given
        .map(|text| {
            parse_log_key(text).map_err(|reason| WitnessError::InvalidLogKey {
                given: text.trim().to_owned(),
                reason,
            })
        })
        .transpose()?;
    let pinned = state
        .read_text(LOG_VKEY_FILE)?
        .map(|text| {
            parse_log_key(&text).map_err(|reason| WitnessError::StateCorrupt {
                path: path.clone(),
                reason,
            })
        })
        .transpose()?;
    match (pinned, given) {
        (Some(pinned), Some(given)) if pinned != given => Err(WitnessError::LogKeyMismatch {
            pinned: pinned.to_vkey(),
            given: given.to_vkey(),
        }),
        (Some(pinned), _) => Ok((pinned, false)),
        (None, Some(given)) => Ok((given, true)),
        (None, None) => Err(WitnessError::NoLogKey { path }),
    }
}

fn load_last(state: &StateDir, log_key: &VerifierKey) -> Result<Option<Checkpoint>, WitnessError> {
    let Some(text) = state.read_text(CHECKPOINT_FILE)? else {
        return Ok(None);
    };
    let corrupt = |reason: String| WitnessError::StateCorrupt {
        path: state.path(CHECKPOINT_FILE),
        reason,
    };
    let checkpoint = Checkpoint::parse(&text).map_err(|e| corrupt(e.to_string()))?;
    if checkpoint.origin != log_key.name {
        return Err(corrupt(format!(
            "origin {:?} is not the pinned log's {:?}",
            checkpoint.origin, log_key.name
        )));
    }
    Ok(Some(checkpoint))
}

/// One round: fetch the latest checkpoint, verify, cosign or refuse. Logged at info with the
/// size and time taken; a fork is logged at error.
pub async fn round(witness: &mut Witness) -> Result<Outcome, WitnessError> {
    let started = Instant::now();
    let result = witness.round_inner().await;
    let ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(Outcome::NoCheckpoint) => tracing::info!(ms, "round: the log has no checkpoint yet"),
        Ok(Outcome::Cosigned { size }) => tracing::info!(size, ms, "round: cosigned"),
        Ok(Outcome::Recosigned { size }) => {
            tracing::info!(size, ms, "round: cosigned again (the log lacked ours)")
        }
        Ok(Outcome::Unchanged { size }) => tracing::info!(size, ms, "round: unchanged"),
        Err(e @ (WitnessError::Fork { .. } | WitnessError::Rollback { .. })) => {
            tracing::error!(ms, "round: {e}")
        }
        Err(e) if e.is_refusal() => tracing::error!(ms, "round: refused: {e}"),
        Err(e) => tracing::warn!(ms, "round failed: {e}"),
    }
    result
}

/// Ctrl-C, or SIGTERM on unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Open the witness and run rounds: one if `once`, else every `interval` until Ctrl-C or
/// SIGTERM. On the first run the new witness key's verifier text is printed on stdout, for the
/// CA operator to configure. A refusal ends the loop (the operator must look at the log);
/// operational errors are logged and retried at the next round.
pub async fn run(opts: WitnessOptions) -> Result<(), WitnessError> {
    let mut witness = Witness::open(opts)?;
    let vkey = witness.verifier_key().to_vkey();
    if witness.key_created() {
        tracing::info!(witness_key = %vkey, "witness key created; configure it at the CA");
        println!("{vkey}");
    } else {
        tracing::info!(witness_key = %vkey, "witness started");
    }
    if witness.once {
        return round(&mut witness).await.map(|_| ());
    }
    let interval = witness.interval;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            result = round(&mut witness) => match result {
                Err(e) if e.is_refusal() => return Err(e),
                _ => {}
            },
            () = &mut shutdown => break,
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("witness stopped");
    Ok(())
}
