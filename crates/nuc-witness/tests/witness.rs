//! The witness against a tiny log played by an axum server on loopback: a `MemoryTree`, a
//! software log key, and the CA's audit HTTP API.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nuc_tlog::checkpoint::Checkpoint;
use nuc_tlog::note::{self, Ed25519NoteKey, Note, NoteSignature, VerifierKey};
use nuc_tlog::tree::{self, MemoryTree};
use nuc_tlog::{Hash, leaf_hash};
use nuc_witness::{Outcome, Witness, WitnessError, WitnessOptions, round};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ORIGIN: &str = "ca.example/audit";

struct Log {
    key: Ed25519NoteKey,
    tree: MemoryTree,
    /// The checkpoint body served, its log signature and the cosignatures posted for it.
    current: Option<(String, NoteSignature)>,
    cosignatures: Vec<NoteSignature>,
    /// Every POST body received.
    posted: Vec<String>,
    /// Served instead of the note when set.
    raw_checkpoint: Option<Vec<u8>>,
    /// Served instead of the computed proof when set.
    raw_proof: Option<String>,
    /// The status answered to a POST, when not 200.
    post_status: Option<StatusCode>,
}

type Shared = Arc<Mutex<Log>>;

fn log_key(name: &str, byte: u8) -> Ed25519NoteKey {
    Ed25519NoteKey::note_key(name, &[byte; 32]).unwrap()
}

fn leaf(i: u64) -> Hash {
    leaf_hash(format!("record {i}").as_bytes())
}

impl Log {
    fn append(&mut self, n: u64) {
        for _ in 0..n {
            let i = self.tree.size();
            self.tree.append(leaf(i)).unwrap();
        }
    }

    /// Sign and serve a checkpoint of `size` and `root` with `key` and `origin`.
    fn serve(&mut self, key: &Ed25519NoteKey, origin: &str, size: u64, root: Hash) -> String {
        let text = Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: vec![],
        }
        .to_body()
        .unwrap();
        let sig = note::sign(&text, key).unwrap();
        self.current = Some((text.clone(), sig));
        self.cosignatures.clear();
        text
    }

    /// Sign and serve the checkpoint of the whole tree with the log's key.
    fn publish(&mut self) -> String {
        let key = log_key(ORIGIN, 1);
        let (size, root) = (self.tree.size(), self.tree.root());
        self.serve(&key, ORIGIN, size, root)
    }
}

async fn get_checkpoint(State(log): State<Shared>) -> Response {
    let log = log.lock().unwrap();
    if let Some(raw) = &log.raw_checkpoint {
        return (StatusCode::OK, raw.clone()).into_response();
    }
    match &log.current {
        None => (StatusCode::NOT_FOUND, "no checkpoint yet").into_response(),
        Some((text, sig)) => {
            let mut signatures = vec![sig.clone()];
            signatures.extend(log.cosignatures.iter().cloned());
            let note = Note {
                text: text.clone(),
                signatures,
            };
            (StatusCode::OK, note.to_text()).into_response()
        }
    }
}

async fn get_consistency(State(log): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let q: HashMap<&str, u64> = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    let log = log.lock().unwrap();
    if let Some(raw) = &log.raw_proof {
        return (StatusCode::OK, raw.clone()).into_response();
    }
    let (from, to) = (q["from"], q["to"]);
    match tree::consistency_proof(from, to, &log.tree) {
        Ok(proof) => {
            let proof: Vec<String> = proof.iter().map(hex::encode).collect();
            axum::Json(serde_json::json!({ "from": from, "to": to, "proof": proof }))
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn post_cosignature(State(log): State<Shared>, body: String) -> Response {
    let mut log = log.lock().unwrap();
    log.posted.push(body.clone());
    if let Some(status) = log.post_status {
        return (status, "refused by the test").into_response();
    }
    let Ok(note) = Note::parse(body.as_bytes()) else {
        return (StatusCode::BAD_REQUEST, "malformed").into_response();
    };
    match &log.current {
        Some((text, _)) if *text == note.text => {
            log.cosignatures.extend(note.signatures);
            StatusCode::OK.into_response()
        }
        _ => (StatusCode::CONFLICT, "another checkpoint").into_response(),
    }
}

async fn start_log() -> (String, Shared) {
    let log = Arc::new(Mutex::new(Log {
        key: log_key(ORIGIN, 1),
        tree: MemoryTree::new(),
        current: None,
        cosignatures: vec![],
        posted: vec![],
        raw_checkpoint: None,
        raw_proof: None,
        post_status: None,
    }));
    let app = Router::new()
        .route("/audit/checkpoint", get(get_checkpoint))
        .route("/audit/proof/consistency", get(get_consistency))
        .route("/audit/cosignature", post(post_cosignature))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn log_vkey() -> String {
    log_key(ORIGIN, 1).verifier().to_vkey()
}

fn opts(url: &str, dir: &Path, log_key: Option<String>, name: Option<&str>) -> WitnessOptions {
    WitnessOptions {
        log_url: url.to_owned(),
        state_dir: dir.to_path_buf(),
        log_key,
        name: name.map(str::to_owned),
        once: true,
        interval: Duration::from_secs(1),
    }
}

fn first_witness(url: &str, dir: &Path) -> Witness {
    Witness::open(opts(url, dir, Some(log_vkey()), Some("witness.example"))).unwrap()
}

fn stored_checkpoint(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("checkpoint")).unwrap()
}

/// The last POST opens under the witness's vkey alone and carries `text`.
fn assert_posted_cosignature(log: &Shared, witness: &Witness, state: &Path, text: &str) {
    let log = log.lock().unwrap();
    let body = log.posted.last().expect("a POST");
    let vkey = std::fs::read_to_string(state.join("witness.vkey")).unwrap();
    let wkey = VerifierKey::parse(vkey.trim()).unwrap();
    assert_eq!(&wkey, witness.verifier_key());
    let opened = Note::open(body.as_bytes(), std::slice::from_ref(&wkey)).unwrap();
    assert_eq!(opened.note.text, text);
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.verified[0].sig_type, note::TYPE_COSIGNATURE_V1);
    assert!(opened.verified[0].time.is_some());
    // And as a checkpoint: the log's signature and ours, together, open too.
    let (_, log_sig) = log.current.clone().unwrap();
    let mut both = opened.note.clone();
    both.signatures.insert(0, log_sig);
    let signed =
        note::open_checkpoint(both.to_text().as_bytes(), log.key.verifier(), &[wkey]).unwrap();
    assert_eq!(signed.opened.verified.len(), 2);
}

#[tokio::test]
async fn cosigns_first_then_consistent_extensions() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut w = first_witness(&url, &state);
    assert!(w.key_created());

    // No checkpoint yet.
    assert_eq!(round(&mut w).await.unwrap(), Outcome::NoCheckpoint);

    // The first checkpoint is accepted on trust and cosigned.
    let text = {
        let mut l = log.lock().unwrap();
        l.append(5);
        l.publish()
    };
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size: 5 });
    assert_posted_cosignature(&log, &w, &state, &text);
    assert_eq!(stored_checkpoint(&state), text);
    assert_eq!(w.last_cosigned().unwrap().size, 5);

    // The log now shows our cosignature: nothing to do, nothing posted.
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Unchanged { size: 5 });
    assert_eq!(log.lock().unwrap().posted.len(), 1);

    // Appended records, a new checkpoint: consistency verified, cosigned.
    let text = {
        let mut l = log.lock().unwrap();
        l.append(8);
        l.publish()
    };
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size: 13 });
    assert_posted_cosignature(&log, &w, &state, &text);
    assert_eq!(stored_checkpoint(&state), text);

    // The log lost our cosignature: the same checkpoint is cosigned and posted again.
    log.lock().unwrap().cosignatures.clear();
    assert_eq!(
        round(&mut w).await.unwrap(),
        Outcome::Recosigned { size: 13 }
    );
    assert_eq!(log.lock().unwrap().posted.len(), 3);
    assert_posted_cosignature(&log, &w, &state, &text);

    // A power-of-two old size (the proof has no seed hash) and a one-leaf step.
    let text = {
        let mut l = log.lock().unwrap();
        l.append(3);
        l.publish()
    };
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size: 16 });
    assert_posted_cosignature(&log, &w, &state, &text);
    let text = {
        let mut l = log.lock().unwrap();
        l.append(1);
        l.publish()
    };
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size: 17 });
    assert_eq!(stored_checkpoint(&state), text);

    // State files and modes.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("witness.seed")), 0o600);
    assert_eq!(std::fs::read(state.join("witness.seed")).unwrap().len(), 32);
    assert_eq!(
        std::fs::read_to_string(state.join("log.vkey"))
            .unwrap()
            .trim(),
        log_vkey()
    );
    assert!(
        std::fs::read_dir(&state).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
}

/// Cosign a first checkpoint of `size` leaves; returns the witness and its stored text.
async fn witness_at(url: &str, log: &Shared, state: &Path, size: u64) -> (Witness, String) {
    let mut w = first_witness(url, state);
    {
        let mut l = log.lock().unwrap();
        l.append(size);
        l.publish();
    }
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size });
    let text = stored_checkpoint(state);
    (w, text)
}

#[tokio::test]
async fn fork_is_refused_without_cosigning_or_moving_state() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut w, stored) = witness_at(&url, &log, dir.path(), 6).await;
    let posts = log.lock().unwrap().posted.len();

    // The log rebuilds its tree with an earlier leaf changed and signs it, larger.
    {
        let mut l = log.lock().unwrap();
        let mut forked = MemoryTree::new();
        forked.append(leaf_hash(b"rewritten history")).unwrap();
        for i in 1..10 {
            forked.append(leaf(i)).unwrap();
        }
        l.tree = forked;
        l.publish();
    }
    let err = round(&mut w).await.unwrap_err();
    match &err {
        WitnessError::Fork {
            cosigned_size,
            new_size,
            cosigned_root,
            ..
        } => {
            assert_eq!((*cosigned_size, *new_size), (6, 10));
            assert!(err.to_string().contains(&hex::encode(cosigned_root)));
        }
        other => panic!("expected a fork, got {other}"),
    }
    assert_eq!(err.exit_code(), 1);
    assert_eq!(stored_checkpoint(dir.path()), stored);
    assert_eq!(w.last_cosigned().unwrap().size, 6);
    assert_eq!(log.lock().unwrap().posted.len(), posts);

    // Same size, different root: a fork as well.
    {
        let mut l = log.lock().unwrap();
        let key = log_key(ORIGIN, 1);
        let root = tree::root(6, &l.tree).unwrap();
        l.serve(&key, ORIGIN, 6, root);
    }
    let err = round(&mut w).await.unwrap_err();
    assert!(
        matches!(err, WitnessError::Fork { new_size: 6, .. }),
        "{err}"
    );
    assert_eq!(stored_checkpoint(dir.path()), stored);
    assert_eq!(log.lock().unwrap().posted.len(), posts);

    // A reopened witness still refuses: the state did not move.
    drop(w);
    let mut w = Witness::open(opts(&url, dir.path(), None, None)).unwrap();
    assert!(!w.key_created());
    assert!(matches!(
        round(&mut w).await.unwrap_err(),
        WitnessError::Fork { .. }
    ));
}

#[tokio::test]
async fn smaller_checkpoint_is_a_rollback() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = witness_at(&url, &log, dir.path(), 4).await;
    {
        let mut l = log.lock().unwrap();
        l.append(5);
        l.publish();
    }
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size: 9 });
    let stored = stored_checkpoint(dir.path());
    let posts = log.lock().unwrap().posted.len();
    {
        let mut l = log.lock().unwrap();
        let key = log_key(ORIGIN, 1);
        let root = tree::root(4, &l.tree).unwrap();
        l.serve(&key, ORIGIN, 4, root);
    }
    let err = round(&mut w).await.unwrap_err();
    assert!(
        matches!(
            err,
            WitnessError::Rollback {
                cosigned_size: 9,
                new_size: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    assert_eq!(stored_checkpoint(dir.path()), stored);
    assert_eq!(log.lock().unwrap().posted.len(), posts);
}

#[tokio::test]
async fn wrong_log_key_bad_signature_and_wrong_origin_are_refused() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut w, stored) = witness_at(&url, &log, dir.path(), 3).await;
    let posts = log.lock().unwrap().posted.len();

    // Signed by another key under the same name.
    {
        let mut l = log.lock().unwrap();
        l.append(2);
        let (size, root) = (l.tree.size(), l.tree.root());
        l.serve(&log_key(ORIGIN, 2), ORIGIN, size, root);
    }
    let err = round(&mut w).await.unwrap_err();
    assert!(
        matches!(
            &err,
            WitnessError::BadCheckpoint {
                source: note::NoteError::MissingRequiredSignature { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);

    // The log's key, but the text was changed after signing.
    {
        let mut l = log.lock().unwrap();
        let text = l.publish();
        let (_, sig) = l.current.clone().unwrap();
        let tampered = text.replace("\n5\n", "\n6\n");
        assert_ne!(tampered, text);
        l.current = Some((tampered, sig));
    }
    let err = round(&mut w).await.unwrap_err();
    assert!(
        matches!(
            &err,
            WitnessError::BadCheckpoint {
                source: note::NoteError::InvalidSignature { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);

    // Signed by the log's key, but for another origin.
    {
        let mut l = log.lock().unwrap();
        let (size, root) = (l.tree.size(), l.tree.root());
        l.serve(&log_key(ORIGIN, 1), "other.example/audit", size, root);
    }
    let err = round(&mut w).await.unwrap_err();
    assert!(matches!(err, WitnessError::WrongOrigin { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);

    // Not a note at all.
    log.lock().unwrap().raw_checkpoint = Some(b"hello".to_vec());
    let err = round(&mut w).await.unwrap_err();
    assert!(matches!(err, WitnessError::BadCheckpoint { .. }), "{err}");

    assert_eq!(stored_checkpoint(dir.path()), stored);
    assert_eq!(log.lock().unwrap().posted.len(), posts);
}

#[tokio::test]
async fn malformed_proofs_are_refused() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut w, stored) = witness_at(&url, &log, dir.path(), 3).await;
    {
        let mut l = log.lock().unwrap();
        l.append(4);
        l.publish();
    }
    for (raw, fork) in [
        (r#"{"from":3,"to":7,"proof":["zz"]}"#.to_owned(), false),
        (r#"{"from":3,"to":7,"proof":["00ff"]}"#.to_owned(), false),
        (r#"{"from":1,"to":7,"proof":[]}"#.to_owned(), false),
        ("not json".to_owned(), false),
        (
            format!(r#"{{"from":3,"to":7,"proof":["{}"]}}"#, "ab".repeat(32)),
            true,
        ),
        (r#"{"from":3,"to":7,"proof":[]}"#.to_owned(), true),
    ] {
        log.lock().unwrap().raw_proof = Some(raw.clone());
        let err = round(&mut w).await.unwrap_err();
        if fork {
            assert!(matches!(err, WitnessError::Fork { .. }), "{raw}: {err}");
        } else {
            assert!(matches!(err, WitnessError::BadProof { .. }), "{raw}: {err}");
        }
        assert_eq!(err.exit_code(), 1);
        assert_eq!(stored_checkpoint(dir.path()), stored);
    }
    // The honest proof is accepted.
    log.lock().unwrap().raw_proof = None;
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Cosigned { size: 7 });
}

#[tokio::test]
async fn oversized_bodies_are_errors() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = first_witness(&url, dir.path());
    log.lock().unwrap().raw_checkpoint = Some(vec![b'a'; 2 << 20]);
    let err = round(&mut w).await.unwrap_err();
    assert!(matches!(err, WitnessError::BodyTooLarge { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
    assert!(!dir.path().join("checkpoint").exists());
}

/// A raw server that answers one request with an endless chunked body (no Content-Length).
#[tokio::test]
async fn oversized_chunked_body_is_cut_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let _ = sock
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
        for _ in 0..64 {
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
    });
    let dir = tempfile::tempdir().unwrap();
    let mut w = first_witness(&url, dir.path());
    let err = round(&mut w).await.unwrap_err();
    assert!(matches!(err, WitnessError::BodyTooLarge { .. }), "{err}");
}

#[tokio::test]
async fn failed_post_is_retried_next_round() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = first_witness(&url, dir.path());
    let text = {
        let mut l = log.lock().unwrap();
        l.append(2);
        l.post_status = Some(StatusCode::FORBIDDEN);
        l.publish()
    };
    let err = round(&mut w).await.unwrap_err();
    assert!(
        matches!(err, WitnessError::CosignatureRefused { status: 403, .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    // Committed to what it cosigned, even though the post failed.
    assert_eq!(stored_checkpoint(dir.path()), text);
    log.lock().unwrap().post_status = None;
    assert_eq!(
        round(&mut w).await.unwrap(),
        Outcome::Recosigned { size: 2 }
    );
    assert_eq!(round(&mut w).await.unwrap(), Outcome::Unchanged { size: 2 });
}

#[tokio::test]
async fn state_and_options_are_checked() {
    let (url, _log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();

    // No seed and no name: refused, nothing created but the directory and its lock.
    let err = Witness::open(opts(&url, state, Some(log_vkey()), None)).unwrap_err();
    assert!(matches!(err, WitnessError::NoSeed { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);

    // No log key on the first run: refused.
    let err = Witness::open(opts(&url, state, None, Some("w"))).unwrap_err();
    assert!(matches!(err, WitnessError::NoLogKey { .. }), "{err}");
    assert!(!state.join("witness.seed").exists());

    // A cosignature key or garbage as the log key: refused.
    let cosig = Ed25519NoteKey::cosignature_key(ORIGIN, &[1; 32]).unwrap();
    for bad in [cosig.verifier().to_vkey(), "nonsense".to_owned()] {
        let err = Witness::open(opts(&url, state, Some(bad), Some("w"))).unwrap_err();
        assert!(matches!(err, WitnessError::InvalidLogKey { .. }), "{err}");
    }

    let w = Witness::open(opts(&url, state, Some(log_vkey()), Some("w"))).unwrap();
    let vkey = w.verifier_key().to_vkey();
    assert!(w.key_created());
    assert_eq!(
        std::fs::read_to_string(state.join("witness.vkey"))
            .unwrap()
            .trim(),
        vkey
    );

    // Held by one witness: a second is refused.
    let err = Witness::open(opts(&url, state, None, None)).unwrap_err();
    assert!(matches!(err, WitnessError::Locked { .. }), "{err}");
    drop(w);

    // Another log key on a later run: refused; none, or the same, is fine.
    let other = log_key(ORIGIN, 9).verifier().to_vkey();
    let err = Witness::open(opts(&url, state, Some(other), None)).unwrap_err();
    assert!(matches!(err, WitnessError::LogKeyMismatch { .. }), "{err}");
    let w = Witness::open(opts(&url, state, None, None)).unwrap();
    assert!(!w.key_created());
    assert_eq!(w.verifier_key().to_vkey(), vkey);
    assert_eq!(w.log_key().to_vkey(), log_vkey());
    drop(w);
    drop(Witness::open(opts(&url, state, Some(log_vkey()), Some("w"))).unwrap());

    // Another witness name for the existing key: refused.
    let err = Witness::open(opts(&url, state, None, Some("other"))).unwrap_err();
    assert!(
        matches!(err, WitnessError::WitnessNameMismatch { .. }),
        "{err}"
    );

    // URLs: only http and https, no query.
    for bad in ["ftp://127.0.0.1/", "http://127.0.0.1/?x=1", "not a url"] {
        let err = Witness::open(opts(bad, state, None, None)).unwrap_err();
        assert!(
            matches!(err, WitnessError::InvalidUrl { .. }),
            "{bad}: {err}"
        );
    }

    // A looping witness needs a pause between rounds.
    let mut o = opts(&url, state, None, None);
    o.once = false;
    o.interval = Duration::ZERO;
    assert!(matches!(
        Witness::open(o).unwrap_err(),
        WitnessError::InvalidOption { .. }
    ));

    // A corrupt seed is refused, not replaced.
    std::fs::write(state.join("witness.seed"), b"short").unwrap();
    let err = Witness::open(opts(&url, state, None, None)).unwrap_err();
    assert!(matches!(err, WitnessError::StateCorrupt { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_log_is_an_operational_error() {
    // Bind then drop, so the port is very likely closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let mut w = first_witness(&url, dir.path());
    let err = round(&mut w).await.unwrap_err();
    assert!(matches!(err, WitnessError::Http { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn run_once_cosigns() {
    let (url, log) = start_log().await;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut l = log.lock().unwrap();
        l.append(3);
        l.publish();
    }
    nuc_witness::run(opts(
        &url,
        dir.path(),
        Some(log_vkey()),
        Some("witness.example"),
    ))
    .await
    .unwrap();
    assert_eq!(log.lock().unwrap().cosignatures.len(), 1);
    // A second run, without the first run's options, finds the same tree cosigned.
    nuc_witness::run(opts(&url, dir.path(), None, None))
        .await
        .unwrap();
    assert_eq!(log.lock().unwrap().posted.len(), 1);
}

#[tokio::test]
async fn https_uses_the_given_roots() {
    // A plain http server behind an https URL, with no trusted root: the handshake fails and
    // that is an operational error; the ring configuration needs no process-wide provider.
    let (url, _log) = start_log().await;
    let url = url.replace("http://", "https://");
    let dir = tempfile::tempdir().unwrap();
    let tls = nuc_witness::client_config(rustls::RootCertStore::empty()).unwrap();
    let mut w = Witness::open_with_tls(
        opts(&url, dir.path(), Some(log_vkey()), Some("w")),
        Some(tls),
    )
    .unwrap();
    let err = round(&mut w).await.unwrap_err();
    assert!(matches!(err, WitnessError::Http { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}
