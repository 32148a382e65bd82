//! End-to-end tests of the tamper-evident audit log (issue 12): the Merkle tree over the
//! records, the checkpoints signed in the HSM, the witness, and the proofs, through the real
//! binary on either engine (`NUC_TEST_STORE`).
//!
//! Each test plays an insider who can write the database (and recompute the hash chain, which
//! is all the old `nuc audit verify` checked) and shows what is still caught: a removed tail
//! against a kept checkpoint, a rewritten record against a signed root, a rewritten history
//! against a witness, a restored backup against a newer checkpoint. The proofs are judged by an
//! implementation of RFC 9162 of our own (`tests/audit_judge.py`), not by the project's code.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nuc_e2e::api::Proc;
use nuc_e2e::*;
use openssl::nid::Nid;

const PERSON: &[&str] = &[
    "--iin",
    "860908363012",
    "--surname",
    "ҚҰНАНБАЙ",
    "--name",
    "АБАЙ",
    "--patronymic",
    "ҚҰНАНБАЙҰЛЫ",
    "--email",
    "person1@mail.example.kz",
];

/// The witness's key name in these tests.
const WITNESS: &str = "witness.test.kz";

// --- Records and the audit commands ---------------------------------------------------------

/// Issues `n` certificates through the CLI: each writes audit records.
fn issue_certs(h: &TestHome, n: usize) {
    for _ in 0..n {
        let tag = nuc_e2e::api::rand_suffix();
        let csr = h.path(&format!("{tag}.csr"));
        write_csr(&csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
        let r = h.issue(
            "individual-auth",
            &csr,
            &h.path(&format!("{tag}.pem")),
            PERSON,
        );
        assert_eq!(r.code, Some(0), "issue: {}{}", r.stdout, r.stderr);
    }
}

/// `nuc audit SUB --home H ARGS…`.
fn audit(h: &TestHome, sub: &str, args: &[&str]) -> Run {
    let home = h.home_str();
    let mut all = vec!["audit", sub, "--home", home.as_str()];
    all.extend_from_slice(args);
    nuc(&all)
}

/// The log's verifier key, as `nuc audit key` prints it.
fn log_key(h: &TestHome) -> String {
    let r = audit(h, "key", &[]);
    assert_eq!(r.code, Some(0), "audit key: {}", r.stderr);
    let key = r.stdout.trim().to_owned();
    assert_eq!(key.splitn(3, '+').count(), 3, "not name+id+key: {key}");
    key
}

/// The tree size a checkpoint note names (its second line).
fn note_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no size on the second line of the checkpoint:\n{note}"))
}

/// `nuc audit checkpoint --out FILE`: the size it signed (or found signed), which must be every
/// record of the log, and the file holds what it printed.
fn checkpoint(h: &TestHome, name: &str) -> (PathBuf, u64) {
    let out = h.path(name);
    let r = audit(h, "checkpoint", &["--out", out.to_str().unwrap()]);
    assert_eq!(
        r.code,
        Some(0),
        "audit checkpoint: {}{}",
        r.stdout,
        r.stderr
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written, r.stdout, "--out holds what was printed");
    let size = note_size(&written);
    assert_eq!(
        size,
        records(h),
        "the checkpoint covers every record:\n{written}"
    );
    (out, size)
}

/// How many records the log holds (its last seq; the chain keeps them 1..=n).
fn records(h: &TestHome) -> u64 {
    h.count("SELECT COUNT(*) FROM audit_log") as u64
}

/// `nuc audit verify`, against kept checkpoints.
fn verify(h: &TestHome, kept: &[&Path]) -> Run {
    let mut args = Vec::new();
    for k in kept {
        args.extend(["--checkpoint", k.to_str().unwrap()]);
    }
    audit(h, "verify", &args)
}

fn assert_intact(r: &Run, records: u64) {
    assert_eq!(r.code, Some(0), "verify: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("audit log intact: {records} records")),
        "{}",
        r.stdout
    );
}

/// A refused verification: the single error line, which must be a STORAGE_FAILURE about the log.
fn refusal(r: &Run) -> String {
    assert_eq!(r.code, Some(1), "verify passed: {}{}", r.stdout, r.stderr);
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let prefix = "error: STORAGE_FAILURE: audit log does not verify: ";
    assert!(lines[0].starts_with(prefix), "{}", r.stderr);
    lines[0][prefix.len()..].to_owned()
}

// --- The insider's tools --------------------------------------------------------------------

/// A record's chain hash as the stores compute it: SHA-256 of the compact JSON array
/// `[seq, at, actor, action, object, details, prev_hash]`.
fn record_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    object: &str,
    details: &str,
    prev: &str,
) -> String {
    let json = serde_json::to_vec(&(seq, at, actor, action, object, details, prev)).unwrap();
    hex::encode(openssl::sha::sha256(&json))
}

/// Recomputes `prev_hash` and `hash` of record `from` and of every later one, as an insider
/// hiding an edit from the hash chain would.
fn rechain(db: &mut Db, from: i64) {
    let mut prev: String = if from == 1 {
        "0".repeat(64)
    } else {
        db.row("SELECT hash FROM audit_log WHERE seq = ?1", &[&(from - 1)])
    };
    let rows: Vec<(i64, i64, String, String, String)> = db.rows(
        "SELECT seq, at, actor, action, object FROM audit_log WHERE seq >= ?1 ORDER BY seq",
        &[&from],
    );
    for (seq, at, actor, action, object) in rows {
        let details: String = db.row("SELECT details FROM audit_log WHERE seq = ?1", &[&seq]);
        let hash = record_hash(seq, at, &actor, &action, &object, &details, &prev);
        let n = db.execute(
            "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            &[&prev, &hash, &seq],
        );
        assert_eq!(n, 1);
        prev = hash;
    }
}

/// Edits record `seq`'s details (a field added, still JSON), then recomputes the chain.
fn rewrite_record(db: &mut Db, seq: i64) {
    let details: String = db.row("SELECT details FROM audit_log WHERE seq = ?1", &[&seq]);
    let mut value: serde_json::Value = serde_json::from_str(&details).unwrap();
    match value.as_object_mut() {
        Some(map) => {
            map.insert("rewritten".into(), serde_json::json!("by an insider"));
        }
        None => value = serde_json::json!({ "was": value, "rewritten": "by an insider" }),
    }
    let n = db.execute(
        "UPDATE audit_log SET details = ?1 WHERE seq = ?2",
        &[&value.to_string(), &seq],
    );
    assert_eq!(n, 1);
    rechain(db, seq);
}

/// Removes the stored tree, checkpoints and cosignatures: an insider covering tracks, so that
/// the service (or `nuc audit checkpoint`) grows the tree again from the records as they are
/// now and signs that.
fn forget_tree(db: &mut Db) {
    for table in ["audit_cosignatures", "audit_checkpoints", "audit_tree"] {
        db.execute(&format!("DELETE FROM {table}"), &[]);
    }
}

// --- The service and HTTP -------------------------------------------------------------------

/// A running `nuc serve` on a home: stopped by SIGTERM in [`Serving::stop`], killed if dropped.
struct Serving {
    proc: Option<Proc>,
    http: String,
    log: PathBuf,
}

fn serve(h: &TestHome) -> Serving {
    let log = h.path("serve.log");
    let child = nuc_command()
        .args(["serve", "--home", &h.home_str()])
        .env(
            "RUST_LOG",
            std::env::var("NUC_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .expect("nuc serve");
    let mut s = Serving {
        proc: Some(Proc(child)),
        http: h.http.clone(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http_get(&s.http, "/healthz") {
            break;
        }
        let exited = s.proc.as_mut().unwrap().0.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "nuc serve is not answering on {} ({exited:?}); its log:\n{}",
            s.http,
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

impl Serving {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and a clean exit within 30 s (the shutdown checkpoint included).
    fn stop(mut self) {
        let mut proc = self.proc.take().unwrap();
        let kill = outside("kill", &["-TERM", &proc.0.id().to_string()]);
        assert_eq!(kill.code, Some(0));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = proc.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "nuc serve still running 30 s after SIGTERM; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "nuc serve exited {status:?}:\n{}",
            self.log()
        );
    }

    /// GET of a path that must answer 200: its body.
    fn get(&self, path: &str) -> String {
        match http_get(&self.http, path) {
            Some((200, body)) => body,
            other => panic!("GET {path}: {other:?}; the service's log:\n{}", self.log()),
        }
    }

    /// The latest checkpoint served, once one of more than `size` records is (within 20 s).
    fn checkpoint_beyond(&self, size: Option<u64>) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((200, note)) = http_get(&self.http, "/audit/checkpoint")
                && size.is_none_or(|s| note_size(&note) > s)
            {
                return note;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint beyond {size:?} served within 20 s; the service's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A plain HTTP/1.1 GET: status and body (None when nothing answers).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Some((
        status,
        if chunked {
            unchunk(body)?
        } else {
            body.to_owned()
        },
    ))
}

fn unchunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

/// Appends an `[audit]` section to the home's nuc.toml.
fn configure_audit(h: &TestHome, lines: &str) {
    let path = h.home().join("nuc.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("[audit]"), "{text}");
    text.push_str(&format!("\n[audit]\n{lines}\n"));
    std::fs::write(&path, text).unwrap();
}

// --- The witness ------------------------------------------------------------------------------

fn witness(state: &Path, log_url: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "audit",
        "witness",
        "--log",
        log_url,
        "--state",
        state.to_str().unwrap(),
        "--once",
    ];
    args.extend_from_slice(extra);
    nuc(&args)
}

/// The size of the checkpoint the witness last cosigned (its state file).
fn witness_state_size(state: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(state.join("checkpoint")).unwrap();
    (note_size(&text), text)
}

// --- The judge --------------------------------------------------------------------------------

fn judge(args: &[&str]) -> Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("audit_judge.py");
    Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("the judge's python (make deps)")
        .into()
}

fn assert_judged(r: &Run, what: &str) {
    assert_eq!(
        r.code,
        Some(0),
        "the judge refused {what}: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.starts_with("OK: "), "{what}: {}", r.stdout);
}

fn assert_rejected(r: &Run, what: &str, reason: &str) {
    assert_eq!(
        r.code,
        Some(1),
        "the judge accepted {what}: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.starts_with("REJECT: ") && r.stderr.contains(reason),
        "{what}: expected a rejection naming {reason:?}: {}",
        r.stderr
    );
}

/// The stored fields of record `seq`, as the judge reads them: a JSON object written to `path`.
fn write_record_json(h: &TestHome, seq: u64, path: &Path) {
    let (at, actor, action, object, details): (i64, String, String, String, String) = h.db().row(
        "SELECT at, actor, action, object, details FROM audit_log WHERE seq = ?1",
        &[&(seq as i64)],
    );
    let json = serde_json::json!({
        "seq": seq, "at": at, "actor": actor, "action": action, "object": object,
        "details": details,
    });
    std::fs::write(path, json.to_string()).unwrap();
}

/// `proof` (a JSON file) with one byte of its first proof hash flipped, written to `to`.
fn flip_first_proof_byte(proof: &Path, to: &Path) {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(proof).unwrap()).unwrap();
    let first = json["proof"][0].as_str().expect("a proof hash").to_owned();
    let mut bytes = hex::decode(&first).unwrap();
    bytes[7] ^= 0x01;
    json["proof"][0] = serde_json::Value::String(hex::encode(bytes));
    std::fs::write(to, json.to_string()).unwrap();
}

// --- The tests ----------------------------------------------------------------------------------

/// An insider removes the last records and covers the tracks (the stored tree, checkpoints and
/// cosignatures too), and has the HSM sign the shorter log: the log verifies on its own, but
/// not against a checkpoint kept outside before, which names the truncation.
#[test]
fn deleting_the_last_records_is_detected_against_a_kept_checkpoint() {
    let h = TestHome::init();
    issue_certs(&h, 3);
    let (kept, n) = checkpoint(&h, "kept.txt");
    assert!(n >= 6, "{n} records");
    let ok = verify(&h, &[&kept]);
    assert_intact(&ok, n);
    assert!(
        ok.stdout
            .contains(&format!("extends the kept checkpoint(s) of size {n}")),
        "{}",
        ok.stdout
    );

    // The last 3 records go; first without touching the tree: the log's own signed checkpoint
    // already shows it.
    let mut db = h.db();
    let cut = n as i64 - 3;
    assert_eq!(
        db.execute("DELETE FROM audit_log WHERE seq > ?1", &[&cut]),
        3
    );
    let own = refusal(&verify(&h, &[]));
    assert!(
        own.starts_with(&format!(
            "log truncated: the log signed a checkpoint of {n} records but holds only {cut}"
        )),
        "{own}"
    );

    // Then the tracks: no tree, no checkpoint, and a new one signed over the shorter log.
    forget_tree(&mut db);
    drop(db);
    let (_, resigned) = checkpoint(&h, "resigned.txt");
    assert_eq!(resigned, cut as u64);
    // On its own the log is whole again: a chain, a tree and a signed checkpoint that agree.
    // This is what a checkpoint kept outside the CA is for.
    assert_intact(&verify(&h, &[]), cut as u64);

    let reason = refusal(&verify(&h, &[&kept]));
    assert!(
        reason.starts_with(&format!(
            "log truncated against the kept checkpoint: it covers {n} records, the log holds {cut} (records {} to {n} were removed",
            cut + 1
        )),
        "{reason}"
    );
}

/// An insider edits a record in the middle and recomputes the whole hash chain after it (the
/// chain check passes): the tree recomputed from the records no longer has the signed root,
/// and the stored tree still holds the record's old leaf, which names it.
#[test]
fn editing_a_middle_record_is_detected_even_with_the_chain_recomputed() {
    let h = TestHome::init();
    issue_certs(&h, 3);
    let (cp, n) = checkpoint(&h, "cp.txt");
    assert_intact(&verify(&h, &[]), n);

    let k = (n / 2) as i64;
    rewrite_record(&mut h.db(), k);

    let reason = refusal(&verify(&h, &[]));
    // Not the chain: it was recomputed, so only the tree can see the edit.
    assert!(!reason.contains("hash chain broken"), "{reason}");
    assert!(
        reason.starts_with(&format!(
            "records rewritten: the first {n} records no longer hash to the root the log signed at size {n}"
        )),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("; record {k} differs from the stored tree")),
        "{reason}"
    );

    // Against the checkpoint kept outside: also refused.
    let kept = refusal(&verify(&h, &[&cp]));
    assert!(
        kept.starts_with("records rewritten")
            || kept.starts_with(&format!("the log's first {n} records")),
        "{kept}"
    );

    // And no inclusion proof of the edited record verifies under that checkpoint.
    let prove = audit(
        &h,
        "prove",
        &[
            "--record",
            &k.to_string(),
            "--checkpoint",
            cp.to_str().unwrap(),
        ],
    );
    assert_eq!(prove.code, Some(1), "{}{}", prove.stdout, prove.stderr);
    assert!(
        prove.stderr.contains(&format!(
            "record {k} is not in the tree of the checkpoint of size {n}"
        )),
        "{}",
        prove.stderr
    );
}

/// A witness cosigns the log's checkpoint; the insider then rewrites history before it,
/// covers the tracks and lets the service sign the new history: the witness refuses to cosign
/// it (a fork), keeps the checkpoint it cosigned, and the log gets no cosignature from it.
#[test]
fn a_witness_refuses_a_fork() {
    let h = TestHome::init();
    issue_certs(&h, 2);
    let key = log_key(&h);

    // The witness's first run makes its key and pins the log's; no log answers where it
    // looks, so it cosigns nothing yet.
    let state = h.path("witness");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let first = witness(&state, &nowhere, &["--log-key", &key, "--name", WITNESS]);
    assert_eq!(first.code, Some(2), "{}{}", first.stdout, first.stderr);
    assert!(
        first.stderr.contains("error: WITNESS_FAILED: "),
        "{}",
        first.stderr
    );
    let witness_key = std::fs::read_to_string(state.join("witness.vkey"))
        .expect("the witness wrote its verifier key")
        .trim()
        .to_owned();
    assert!(
        witness_key.starts_with(&format!("{WITNESS}+")),
        "{witness_key}"
    );
    assert!(first.stdout.contains(&witness_key), "{}", first.stdout);
    assert!(!state.join("checkpoint").exists());

    // The CA knows the witness, and checkpoints every second.
    configure_audit(
        &h,
        &format!("checkpoint_every_secs = 1\nwitnesses = [\"{witness_key}\"]"),
    );
    let log_url = format!("http://{}", h.http);
    let svc = serve(&h);
    assert_eq!(svc.get("/audit/key").trim(), key);
    svc.checkpoint_beyond(None);

    let cosigned = witness(&state, &log_url, &[]);
    assert_eq!(
        cosigned.code,
        Some(0),
        "the witness refused an honest log: {}{}",
        cosigned.stdout,
        cosigned.stderr
    );
    let (n, cosigned_text) = witness_state_size(&state);
    let served = svc.get(&format!("/audit/checkpoint/{n}"));
    assert!(
        served
            .lines()
            .any(|l| l.starts_with(&format!("\u{2014} {WITNESS} "))),
        "the served checkpoint of size {n} carries no cosignature of the witness:\n{served}"
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM audit_cosignatures"), 1);
    let witnessed = h.path("witnessed.txt");
    std::fs::write(&witnessed, &served).unwrap();
    svc.stop();
    // Whole, cosignature included.
    let ok = verify(&h, &[&witnessed]);
    assert_intact(&ok, records(&h));
    assert!(
        ok.stdout.contains("1 witness cosignatures"),
        "{}",
        ok.stdout
    );

    // The insider rewrites a record under the cosigned checkpoint, recomputes the chain, and
    // removes the tree, checkpoints and cosignatures, so that the service signs the new history.
    let mut db = h.db();
    rewrite_record(&mut db, 2);
    forget_tree(&mut db);
    drop(db);
    let svc = serve(&h);
    issue_certs(&h, 1);
    let forked = svc.checkpoint_beyond(Some(n));

    let refused = witness(&state, &log_url, &[]);
    // A refusal of the log's data (WITNESS_REFUSED, exit 1), not an operational failure
    // (WITNESS_FAILED, exit 2).
    assert_eq!(
        refused.code,
        Some(1),
        "the witness did not refuse the fork: {}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.error_lines().iter().any(|l| l
            .starts_with("error: WITNESS_REFUSED: FORK: the log's checkpoint of size")
            && l.contains(&format!("does not extend the checkpoint of size {n}"))),
        "{}",
        refused.stderr
    );
    // The witness is still committed to what it cosigned, and the log has nothing from it.
    assert_eq!(witness_state_size(&state), (n, cosigned_text));
    assert_eq!(h.count("SELECT COUNT(*) FROM audit_cosignatures"), 0);
    let latest = svc.get("/audit/checkpoint");
    assert!(
        !latest.contains(WITNESS),
        "a cosignature of the fork is served:\n{latest}\n(forked: {forked})"
    );
    svc.stop();

    // The new history verifies on its own; the checkpoint the witness cosigned exposes it.
    assert_intact(&verify(&h, &[]), records(&h));
    let reason = refusal(&verify(&h, &[&witnessed]));
    assert!(
        reason.starts_with(&format!(
            "the log's first {n} records are not those the kept checkpoint covers"
        )),
        "{reason}"
    );
}

/// A database backup of the engine: SQLite's file (`VACUUM INTO`), or a PostgreSQL database
/// copied as a template. Every process on the home must be stopped.
enum Backup {
    Sqlite(PathBuf),
    Postgres { db: String, copy: String },
}

fn pg_database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap();
    path.split('?').next().unwrap().to_owned()
}

/// Runs an SQL statement as the test cluster's superuser, retried while the database is still
/// held by a connection that is going away (a just-ended `nuc` command's).
fn pg_admin(h: &TestHome, sql: &str) {
    let cluster = h.cluster.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match cluster.psql("postgres", sql) {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline && e.to_string().contains("other users") => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

fn backup(h: &TestHome) -> Backup {
    match h.engine() {
        Engine::Sqlite => {
            let to = h.path("backup.db");
            h.db()
                .batch(&format!("VACUUM INTO '{}'", to.to_str().unwrap()));
            Backup::Sqlite(to)
        }
        Engine::Postgres => {
            let db = pg_database_name(h.store_url.as_ref().unwrap());
            let copy = format!("{db}_backup");
            pg_admin(h, &format!("CREATE DATABASE {copy} TEMPLATE {db}"));
            Backup::Postgres { db, copy }
        }
    }
}

fn restore(h: &TestHome, backup: &Backup) {
    match backup {
        Backup::Sqlite(from) => {
            let db = h.home().join("nuc.db");
            std::fs::copy(from, &db).unwrap();
            for side in ["nuc.db-wal", "nuc.db-shm"] {
                let _ = std::fs::remove_file(h.home().join(side));
            }
        }
        Backup::Postgres { db, copy } => {
            pg_admin(h, &format!("DROP DATABASE {db} WITH (FORCE)"));
            pg_admin(h, &format!("CREATE DATABASE {db} TEMPLATE {copy}"));
        }
    }
}

/// The database is restored from a backup older than a checkpoint kept outside: the restored
/// log is whole on its own, but the kept checkpoint covers records it lacks; and once the CA
/// goes on from the restore, its new history is not the one the kept checkpoint covers.
#[test]
fn a_database_restored_from_an_older_backup_is_detected_against_a_newer_checkpoint() {
    let h = TestHome::init();
    issue_certs(&h, 2);
    let (_, old) = checkpoint(&h, "old.txt");
    let saved = backup(&h);
    issue_certs(&h, 2);
    let (newer, n) = checkpoint(&h, "newer.txt");
    assert!(n > old);
    assert_intact(&verify(&h, &[&newer]), n);

    restore(&h, &saved);
    assert_eq!(records(&h), old);
    assert_intact(&verify(&h, &[]), old);
    let reason = refusal(&verify(&h, &[&newer]));
    assert!(
        reason.starts_with(&format!(
            "log truncated against the kept checkpoint: it covers {n} records, the log holds {old}"
        )) && reason.contains("restored from an older backup"),
        "{reason}"
    );

    // The CA goes on from the backup: new records, a new checkpoint. The kept one is still
    // not covered: a fork at its size, or another history under it.
    issue_certs(&h, 2);
    let (_, now) = checkpoint(&h, "after-restore.txt");
    assert!(now >= n, "{now} < {n}");
    let reason = refusal(&verify(&h, &[&newer]));
    let expected = if now == n {
        format!("fork: the log signed two different trees of {n} records")
    } else {
        format!("the log's first {n} records are not those the kept checkpoint covers")
    };
    assert!(reason.starts_with(&expected), "{reason}");
}

/// Inclusion and consistency proofs, from the CLI and from the service, judged by an RFC 9162
/// implementation of our own (tests/audit_judge.py), which must also refuse damaged ones.
#[test]
fn inclusion_and_consistency_proofs_verify_in_an_independent_implementation() {
    let h = TestHome::init();
    let selftest = judge(&["selftest"]);
    assert_judged(&selftest, "its own RFC 9162 self-test");

    issue_certs(&h, 2);
    let (a, na) = checkpoint(&h, "a.txt");
    issue_certs(&h, 2);
    let (b, nb) = checkpoint(&h, "b.txt");
    assert!(na < nb);
    let key = log_key(&h);
    for cp in [&a, &b] {
        assert_judged(
            &judge(&["checkpoint", "--log-key", &key, cp.to_str().unwrap()]),
            "a checkpoint of the CLI",
        );
    }

    // The CLI's proofs: the first record, the last under A (a certificate's issuance, with
    // Cyrillic in its details), the last under B.
    let last_issued: i64 = h.db().row(
        "SELECT MAX(seq) FROM audit_log WHERE action = 'certificate.issued' AND seq <= ?1",
        &[&(na as i64)],
    );
    let picks = [1, last_issued as u64, na, nb];
    let mut cli_proofs = Vec::new();
    for k in picks {
        let r = audit(
            &h,
            "prove",
            &[
                "--record",
                &k.to_string(),
                "--checkpoint",
                b.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, Some(0), "prove {k}: {}", r.stderr);
        let file = h.path(&format!("inclusion-{k}.json"));
        std::fs::write(&file, &r.stdout).unwrap();
        cli_proofs.push((k, file));
    }
    let r = audit(
        &h,
        "consistency",
        &["--from", a.to_str().unwrap(), "--to", b.to_str().unwrap()],
    );
    assert_eq!(r.code, Some(0), "consistency: {}", r.stderr);
    let consistency = h.path("consistency.json");
    std::fs::write(&consistency, &r.stdout).unwrap();

    // The same from the service's endpoints, which must serve the same checkpoints and proofs.
    let svc = serve(&h);
    assert_eq!(svc.get("/audit/key").trim(), key);
    for (size, file) in [(na, &a), (nb, &b)] {
        assert_eq!(
            svc.get(&format!("/audit/checkpoint/{size}")),
            std::fs::read_to_string(file).unwrap(),
            "the served checkpoint of size {size} is not the kept one"
        );
    }
    let k = last_issued as u64;
    let http_inclusion = h.path("http-inclusion.json");
    std::fs::write(
        &http_inclusion,
        svc.get(&format!("/audit/proof/inclusion?record={k}&size={nb}")),
    )
    .unwrap();
    let http_consistency = h.path("http-consistency.json");
    std::fs::write(
        &http_consistency,
        svc.get(&format!("/audit/proof/consistency?from={na}&to={nb}")),
    )
    .unwrap();
    // A record written while serving, under no checkpoint yet (the interval is the default
    // 60 s): the service signs one at shutdown.
    issue_certs(&h, 1);
    let serving = records(&h);
    assert!(serving > nb);
    svc.stop();
    let latest: i64 = h.db().row("SELECT MAX(size) FROM audit_checkpoints", &[]);
    assert_eq!(
        latest as u64, serving,
        "no checkpoint of every record at shutdown"
    );
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let cli_k = &cli_proofs.iter().find(|(s, _)| *s == k).unwrap().1;
    // The same proof; the CLI adds the record's bytes, which the public endpoint never serves.
    let served = json(&http_inclusion);
    assert!(
        served.get("leaf").is_none(),
        "the endpoint serves a record: {served}"
    );
    let mut from_cli = json(cli_k);
    assert!(from_cli["leaf"].is_string(), "{from_cli}");
    from_cli.as_object_mut().unwrap().remove("leaf");
    assert_eq!(served, from_cli);
    assert_eq!(json(&http_consistency), json(&consistency));

    // The judge: every leaf recomputed from the record as stored (read by the judge itself from
    // the SQLite file; from a JSON of the row on PostgreSQL), every proof against the signed
    // roots.
    let sqlite = h.home().join("nuc.db");
    let inclusion_with = |proof: &Path, cp: &Path, k: u64| -> Run {
        let record = h.path(&format!("record-{k}.json"));
        write_record_json(&h, k, &record);
        let mut args = vec![
            "inclusion",
            "--log-key",
            &key,
            "--checkpoint",
            cp.to_str().unwrap(),
            "--proof",
            proof.to_str().unwrap(),
            "--record",
            record.to_str().unwrap(),
        ];
        let first = judge(&args);
        if h.engine() == Engine::Sqlite && first.code == Some(0) {
            args.truncate(args.len() - 2);
            args.extend(["--sqlite", sqlite.to_str().unwrap()]);
            return judge(&args);
        }
        first
    };
    for (k, proof) in cli_proofs
        .iter()
        .chain([(k, http_inclusion.clone())].iter())
    {
        assert_judged(
            &inclusion_with(proof, &b, *k),
            &format!("the inclusion of record {k}"),
        );
    }
    for proof in [&consistency, &http_consistency] {
        assert_judged(
            &judge(&[
                "consistency",
                "--log-key",
                &key,
                "--from",
                a.to_str().unwrap(),
                "--to",
                b.to_str().unwrap(),
                "--proof",
                proof.to_str().unwrap(),
            ]),
            "the consistency proof",
        );
    }

    // The judge can fail: one flipped byte in a proof, a checkpoint whose size was edited, a
    // record that is not the one proved.
    let bad_inclusion = h.path("bad-inclusion.json");
    flip_first_proof_byte(cli_k, &bad_inclusion);
    assert_rejected(
        &inclusion_with(&bad_inclusion, &b, k),
        "an inclusion proof with a flipped byte",
        "inclusion: the path gives root",
    );
    let bad_consistency = h.path("bad-consistency.json");
    flip_first_proof_byte(&consistency, &bad_consistency);
    assert_rejected(
        &judge(&[
            "consistency",
            "--log-key",
            &key,
            "--from",
            a.to_str().unwrap(),
            "--to",
            b.to_str().unwrap(),
            "--proof",
            bad_consistency.to_str().unwrap(),
        ]),
        "a consistency proof with a flipped byte",
        "consistency: the proof gives",
    );
    let edited = h.path("b-edited.txt");
    let text = std::fs::read_to_string(&b).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let bigger = (nb + 1).to_string();
    lines[1] = &bigger;
    std::fs::write(&edited, lines.join("\n")).unwrap();
    assert_rejected(
        &judge(&["checkpoint", "--log-key", &key, edited.to_str().unwrap()]),
        "a checkpoint with an edited size",
        "signature does not verify",
    );
    assert_rejected(
        &inclusion_with(cli_k, &edited, k),
        "an inclusion proof against a checkpoint with an edited size",
        "signature does not verify",
    );
    // The record as stored, changed after the proof was made: its leaf is not the proved one.
    let other = h.path("other-record.json");
    write_record_json(&h, k, &other);
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    rec["actor"] = serde_json::json!("cli:nobody");
    std::fs::write(&other, rec.to_string()).unwrap();
    for (proof, reason) in [
        (cli_k, "the leaf bytes are not record"),
        (&http_inclusion, "the leaf hash is not record"),
    ] {
        assert_rejected(
            &judge(&[
                "inclusion",
                "--log-key",
                &key,
                "--checkpoint",
                b.to_str().unwrap(),
                "--proof",
                proof.to_str().unwrap(),
                "--record",
                other.to_str().unwrap(),
            ]),
            "a proof of another record",
            reason,
        );
    }
}
