//! `nuc audit …`: what an auditor runs against a home (verify, prove, consistency, checkpoint,
//! key) and the witness another organisation runs against the public endpoint.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use nuc_ca::{Ca, CaError, Home, RootKey};
use nuc_core::ReasonCode;
use nuc_tlog::checkpoint::Checkpoint;
use nuc_tlog::note::VerifierKey;

use crate::audit::{self, AuditError, proofs, verify};
use crate::cli::{Failure, invalid, open_ca};
use crate::config::Config;
use crate::instance::open_store;

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Check the hash chain, the tree recomputed from every record against every signed
    /// checkpoint, and the cosignatures; with --checkpoint, against checkpoints kept elsewhere.
    Verify {
        #[arg(long)]
        home: PathBuf,
        /// A checkpoint kept elsewhere (a file as `/audit/checkpoint` serves it); repeatable.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// The log key to verify with (`name+id+base64`), instead of the HSM's: then the HSM is
        /// not opened, and a copy of the database is enough.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// The inclusion proof of a record in the tree of a kept checkpoint (JSON on stdout).
    Prove {
        #[arg(long)]
        home: PathBuf,
        /// The record's sequence number (from 1).
        #[arg(long)]
        record: u64,
        #[arg(long)]
        checkpoint: PathBuf,
        /// The log key to verify the checkpoint with (`name+id+base64`), instead of the HSM's:
        /// then the HSM is not opened.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// The consistency proof between two kept checkpoints (JSON on stdout).
    Consistency {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        to: PathBuf,
        /// As for `prove`.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// Grow the tree to the last record, sign a checkpoint if a record is not under one, and
    /// print the latest checkpoint (with its cosignatures).
    Checkpoint {
        #[arg(long)]
        home: PathBuf,
        /// Also write it to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the log's verifier key (`name+id+base64`), which auditors and witnesses pin.
    Key {
        #[arg(long)]
        home: PathBuf,
    },
    /// Run a witness: fetch each new checkpoint of the log at URL, check it extends the last
    /// one cosigned, cosign it and post the cosignature; refuse a fork.
    Witness {
        /// The log's public HTTP base, e.g. http://127.0.0.1:8080.
        #[arg(long = "log")]
        log_url: String,
        /// This witness's own directory: its key and the last checkpoint it cosigned.
        #[arg(long)]
        state: PathBuf,
        /// The log's key (`name+id+base64`, from `nuc audit key`); needed on the first run.
        #[arg(long)]
        log_key: Option<String>,
        /// This witness's key name; needed on the first run, when its key is made.
        #[arg(long)]
        name: Option<String>,
        /// One round, then exit: 0 when cosigned or nothing new; otherwise the refusal (a fork,
        /// a rollback, a bad signature: SIGNATURE_INVALID) or the failure (UNAVAILABLE).
        #[arg(long)]
        once: bool,
        /// Seconds between rounds.
        #[arg(long, default_value_t = 10)]
        interval: u64,
    },
}

impl AuditCommand {
    /// The home a command opens (the witness has none).
    pub(crate) fn home(&self) -> Option<&PathBuf> {
        match self {
            Self::Verify { home, .. }
            | Self::Prove { home, .. }
            | Self::Consistency { home, .. }
            | Self::Checkpoint { home, .. }
            | Self::Key { home } => Some(home),
            Self::Witness { .. } => None,
        }
    }
}

impl From<AuditError> for Failure {
    fn from(e: AuditError) -> Self {
        let code = match &e {
            AuditError::Ca(c) => c.reason(),
            AuditError::Setting { .. } | AuditError::OutOfRange(_) => ReasonCode::InvalidArgument,
            AuditError::Store(_) => ReasonCode::StorageFailure,
            AuditError::Checkpoint(nuc_publisher::checkpoint::CheckpointError::LogCut(_)) => {
                ReasonCode::StorageFailure
            }
            AuditError::Checkpoint(_) => ReasonCode::HsmFailure,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn read_note(path: &Path) -> Result<Vec<u8>, Failure> {
    let meta = std::fs::metadata(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if meta.len() > nuc_tlog::note::MAX_NOTE_BYTES as u64 {
        return Err(invalid(format!(
            "{}: larger than a checkpoint can be",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// A kept checkpoint file, opened under the log key; a refusal names the file.
fn kept(path: &Path, key: &VerifierKey) -> Result<Checkpoint, Failure> {
    verify::open_kept(&read_note(path)?, key)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure {
        code: ReasonCode::Internal,
        message: e.to_string(),
    })?;
    println!("{text}");
    Ok(())
}

pub(crate) fn run(command: AuditCommand) -> Result<(), Failure> {
    if let AuditCommand::Witness {
        log_url,
        state,
        log_key,
        name,
        once,
        interval,
    } = command
    {
        return witness(log_url, state, log_key, name, once, interval);
    }
    let home_dir = command.home().cloned().unwrap_or_default();
    let config = Config::open(&home_dir).map_err(CaError::from)?;
    let settings = config.audit.clone();
    let home = Home::open(&home_dir).map_err(CaError::from)?;
    let store = open_store(&home)?;
    // The log key: the one the auditor gives (then the HSM is not needed), or the HSM's.
    let log_key = |given: Option<String>| -> Result<VerifierKey, Failure> {
        match given {
            Some(text) => {
                VerifierKey::parse(text.trim()).map_err(|e| invalid(format!("--log-key: {e}")))
            }
            None => {
                let ca = Ca::open_with(&home, store.as_ref(), RootKey::Offline)?;
                Ok(ca.checkpoint_signer(&settings.origin)?.verifier().clone())
            }
        }
    };
    match command {
        AuditCommand::Verify {
            checkpoints,
            log_key: given,
            ..
        } => {
            let key = log_key(given)?;
            let witnesses = audit::witness_keys(&settings)?;
            let kept_checkpoints = checkpoints
                .iter()
                .map(|p| kept(p, &key))
                .collect::<Result<Vec<_>, _>>()?;
            match verify::verify_log(store.as_ref(), &key, &witnesses, &kept_checkpoints)? {
                Ok(v) => {
                    println!(
                        "audit log intact: {} records, chain and tree verified; {} checkpoints signed by {} verified, {} witness cosignatures; root {}{}",
                        v.records,
                        v.checkpoints,
                        key.name,
                        v.cosignatures,
                        hex::encode(v.root),
                        if v.kept.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; extends the kept checkpoint(s) of size {}",
                                v.kept
                                    .iter()
                                    .map(u64::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    );
                    Ok(())
                }
                Err(failure) => Err(Failure {
                    code: ReasonCode::StorageFailure,
                    message: format!("audit log does not verify: {failure}"),
                }),
            }
        }
        AuditCommand::Prove {
            record,
            checkpoint,
            log_key: given,
            ..
        } => {
            let cp = kept(&checkpoint, &log_key(given)?)?;
            let proof = proofs::inclusion(store.as_ref(), record, cp.size)?;
            let leaf_hash = nuc_tlog::leaf_hash(
                &base64_decode(proof.leaf.as_deref().unwrap_or_default())
                    .map_err(|e| invalid(format!("leaf: {e}")))?,
            );
            let path = proofs::hashes(&proof.proof).map_err(invalid)?;
            nuc_tlog::tree::verify_inclusion(&leaf_hash, proof.leaf_index, cp.size, &path, &cp.root)
                .map_err(|e| Failure {
                    code: ReasonCode::StorageFailure,
                    message: format!(
                        "record {record} is not in the tree of the checkpoint of size {}: {e} (the record or the tree was changed after that checkpoint)",
                        cp.size
                    ),
                })?;
            print_json(&proof)?;
            eprintln!(
                "record {record} is leaf {} of the checkpoint of size {}: proof verified",
                proof.leaf_index, cp.size
            );
            Ok(())
        }
        AuditCommand::Consistency {
            from,
            to,
            log_key: given,
            ..
        } => {
            let key = log_key(given)?;
            let (old, new) = (kept(&from, &key)?, kept(&to, &key)?);
            let proof = proofs::consistency(store.as_ref(), old.size, new.size)?;
            let path = proofs::hashes(&proof.proof).map_err(invalid)?;
            nuc_tlog::tree::verify_consistency(old.size, new.size, &old.root, &new.root, &path)
                .map_err(|e| Failure {
                    code: ReasonCode::StorageFailure,
                    message: format!(
                        "the checkpoint of size {} does not extend the one of size {}: {e}",
                        new.size, old.size
                    ),
                })?;
            print_json(&proof)?;
            eprintln!(
                "the checkpoint of size {} extends the one of size {}: proof verified",
                new.size, old.size
            );
            Ok(())
        }
        AuditCommand::Checkpoint { out, .. } => {
            let (_home, store, ca) = open_ca(&home_dir, RootKey::Offline)?;
            let Some(latest) =
                nuc_publisher::checkpoint::checkpoint_now(store.as_ref(), &ca, &settings.origin)
                    .map_err(AuditError::from)?
            else {
                return Err(Failure {
                    code: ReasonCode::CaState,
                    message: "the audit log is empty: no checkpoint to sign".into(),
                });
            };
            let note = audit::served_note(&latest, &store.cosignatures(latest.size)?);
            if let Some(path) = out {
                std::fs::write(&path, &note)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            }
            print!("{note}");
            Ok(())
        }
        AuditCommand::Key { .. } => {
            println!("{}", log_key(None)?.to_vkey());
            Ok(())
        }
        AuditCommand::Witness { .. } => Ok(()),
    }
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())
}

fn witness(
    log_url: String,
    state: PathBuf,
    log_key: Option<String>,
    name: Option<String>,
    once: bool,
    interval: u64,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: ReasonCode::Internal,
            message: e.to_string(),
        })?;
    let options = nuc_witness::WitnessOptions {
        log_url,
        state_dir: state,
        log_key,
        name,
        once,
        interval: std::time::Duration::from_secs(interval.max(1)),
    };
    match runtime.block_on(nuc_witness::run(options)) {
        Ok(()) => Ok(()),
        Err(e) => {
            // The witness's own exit codes (1: the log refused, 2: the witness failed) are
            // what its operators script against; they differ from the CLI's caller/service
            // split, so they are kept.
            let what = if e.exit_code() == 1 {
                "REFUSED"
            } else {
                "FAILED"
            };
            eprintln!("error: WITNESS_{what}: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
