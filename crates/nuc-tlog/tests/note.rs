//! Checkpoints and signed notes: byte-exact round trips, known Go vectors, refused forgeries
//! and hostile texts.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use nuc_tlog::checkpoint::{Checkpoint, CheckpointError};
use nuc_tlog::note::{
    Ed25519NoteKey, KeyError, Note, NoteError, NoteSigner, TYPE_COSIGNATURE_V1, TYPE_ED25519,
    VerifierKey, cosign_v1, open_checkpoint, sign,
};
use sha2::{Digest, Sha256};

/// The example key and note of Go's golang.org/x/mod/sumdb/note (example_test.go, ExampleSign
/// and ExampleOpen). The private key text is "PRIVATE+KEY+PeterNeumann+c74f20a3+" followed by
/// base64(0x01 || seed).
const PETER_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn peter() -> Ed25519NoteKey {
    let raw = STANDARD.decode(PETER_SKEY_B64).unwrap();
    assert_eq!(raw[0], 0x01);
    Ed25519NoteKey::note_key("PeterNeumann", &raw[1..].try_into().unwrap()).unwrap()
}

fn log_key() -> Ed25519NoteKey {
    Ed25519NoteKey::note_key("audit.pki.example.kz/log", &[1; 32]).unwrap()
}

fn witness() -> Ed25519NoteKey {
    Ed25519NoteKey::cosignature_key("witness.example.org/w1", &[2; 32]).unwrap()
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "audit.pki.example.kz/log".into(),
        size: 20_852_163,
        root: [0xa5; 32],
        extensions: vec!["time 1764579600".into()],
    }
}

fn signed(body: &str, keys: &[&Ed25519NoteKey]) -> String {
    let signatures = keys.iter().map(|k| sign(body, *k).unwrap()).collect();
    Note {
        text: body.into(),
        signatures,
    }
    .to_text()
}

#[test]
fn go_sumdb_note_vector_signs_and_opens_byte_for_byte() {
    let key = peter();
    assert_eq!(key.verifier().to_vkey(), PETER_VKEY);
    assert_eq!(VerifierKey::parse(PETER_VKEY).unwrap(), *key.verifier());
    assert_eq!(signed(PETER_TEXT, &[&key]), PETER_NOTE);
    let opened = Note::open(
        PETER_NOTE.as_bytes(),
        &[VerifierKey::parse(PETER_VKEY).unwrap()],
    )
    .unwrap();
    assert_eq!(opened.note.text, PETER_TEXT);
    assert_eq!(opened.verified[0].key_id, [0xc7, 0x4f, 0x20, 0xa3]);
}

#[test]
fn key_id_is_the_specified_hash() {
    let key = witness();
    let mut h = Sha256::new();
    h.update(b"witness.example.org/w1\n\x04");
    h.update(key.verifier().public_key);
    assert_eq!(key.key_id(), h.finalize()[..4]);
    let key = log_key();
    let mut h = Sha256::new();
    h.update(b"audit.pki.example.kz/log\n\x01");
    h.update(key.verifier().public_key);
    assert_eq!(key.key_id(), h.finalize()[..4]);
}

#[test]
fn checkpoint_body_round_trips_byte_for_byte() {
    let body = checkpoint().to_body().unwrap();
    let root_b64 = STANDARD.encode([0xa5; 32]);
    assert_eq!(
        body,
        format!("audit.pki.example.kz/log\n20852163\n{root_b64}\ntime 1764579600\n")
    );
    assert_eq!(Checkpoint::parse(&body).unwrap(), checkpoint());
    let bare = Checkpoint {
        extensions: vec![],
        ..checkpoint()
    };
    assert_eq!(Checkpoint::parse(&bare.to_body().unwrap()).unwrap(), bare);
}

#[test]
fn hostile_checkpoints_are_refused() {
    let root = STANDARD.encode([0xa5; 32]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (
            format!("o\n1\n{root}"),
            CheckpointError::MissingFinalNewline,
        ),
        (
            format!("o\r\n1\n{root}\n"),
            CheckpointError::ControlCharacter(1),
        ),
        (
            format!("o\n1\r\n{root}\n"),
            CheckpointError::ControlCharacter(2),
        ),
        (
            format!("o\n01\n{root}\n"),
            CheckpointError::SizeNotCanonical,
        ),
        (
            format!("o\n+1\n{root}\n"),
            CheckpointError::SizeNotCanonical,
        ),
        (
            format!("o\n-1\n{root}\n"),
            CheckpointError::SizeNotCanonical,
        ),
        (
            format!("o\n 1\n{root}\n"),
            CheckpointError::SizeNotCanonical,
        ),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::SizeOverflow,
        ),
        (
            format!("o\n99999999999999999999999999\n{root}\n"),
            CheckpointError::SizeOverflow,
        ),
        (format!("\n1\n{root}\n"), CheckpointError::EmptyLine(1)),
        ("o\n1\n".into(), CheckpointError::MissingLine(3)),
        ("o\n".into(), CheckpointError::MissingLine(2)),
        ("".into(), CheckpointError::MissingFinalNewline),
        ("o\n1\nnot base64!\n".into(), CheckpointError::BadRootHash),
        (
            format!("o\n1\n{}\n", STANDARD.encode([1; 31])),
            CheckpointError::BadRootHash,
        ),
        (
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            CheckpointError::BadRootHash,
        ),
        (format!("o\n1\n{root}\n\n"), CheckpointError::EmptyLine(4)),
        (
            format!("o\n1\n{root}\next\n\n"),
            CheckpointError::EmptyLine(5),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(want), "{text:?}");
    }
    // Non-canonical base64: the last character before '=' carries 4 bits of the last byte
    // (0x5 of 0xa5, so 'U' = 010100) and 2 spare bits; 'V' = 010101 sets a spare bit.
    assert_eq!(&root[42..], "U=");
    let odd = format!("{}V=", &root[..42]);
    assert_ne!(odd, root);
    assert_eq!(
        Checkpoint::parse(&format!("o\n1\n{odd}\n")),
        Err(CheckpointError::BadRootHash)
    );
    assert_eq!(
        Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size,
        0
    );
    assert_eq!(
        Checkpoint::parse(&format!("o\n18446744073709551615\n{root}\n"))
            .unwrap()
            .size,
        u64::MAX
    );
    // An unprintable origin or extension is not signed either.
    let bad = Checkpoint {
        extensions: vec!["".into()],
        ..checkpoint()
    };
    assert_eq!(bad.to_body(), Err(CheckpointError::EmptyLine(4)));
}

#[test]
fn signed_checkpoint_with_cosignature_opens() {
    let (log, w) = (log_key(), witness());
    let body = checkpoint().to_body().unwrap();
    let mut note = Note {
        text: body.clone(),
        signatures: vec![sign(&body, &log).unwrap()],
    };
    note.signatures
        .push(cosign_v1(&body, 1_764_579_601, &w).unwrap());
    let text = note.to_text();
    assert_eq!(Note::parse(text.as_bytes()).unwrap(), note);

    let opened = open_checkpoint(text.as_bytes(), log.verifier(), &[w.verifier().clone()]).unwrap();
    assert_eq!(opened.checkpoint, checkpoint());
    assert_eq!(opened.opened.verified.len(), 2);
    assert_eq!(opened.opened.verified[1].sig_type, TYPE_COSIGNATURE_V1);
    assert_eq!(opened.opened.verified[1].time, Some(1_764_579_601));
    assert_eq!(opened.opened.verified[0].time, None);

    // The cosignature line carries key ID || 8-byte big-endian time || 64-byte signature, and
    // the signature is over the cosignature/v1 header and the body.
    let line = text.lines().last().unwrap();
    let payload = STANDARD.decode(line.rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(payload.len(), 4 + 8 + 64);
    assert_eq!(payload[..4], w.key_id());
    assert_eq!(payload[4..12], 1_764_579_601u64.to_be_bytes());
    let msg = format!("cosignature/v1\ntime 1764579601\n{body}");
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, w.verifier().public_key)
        .verify(msg.as_bytes(), &payload[12..])
        .unwrap();

    // Without the witness key the cosignature is kept, unverified.
    let opened = open_checkpoint(text.as_bytes(), log.verifier(), &[]).unwrap();
    assert_eq!(opened.opened.unverified.len(), 1);
    assert_eq!(opened.opened.unverified[0].name, "witness.example.org/w1");
}

#[test]
fn forgeries_are_refused() {
    let log = log_key();
    let body = checkpoint().to_body().unwrap();
    let text = signed(&body, &[&log]);

    // Signed by another key under the same name: the key ID differs, so it is unknown.
    let impostor = Ed25519NoteKey::note_key("audit.pki.example.kz/log", &[9; 32]).unwrap();
    let forged = signed(&body, &[&impostor]);
    assert_eq!(
        open_checkpoint(forged.as_bytes(), log.verifier(), &[]).unwrap_err(),
        NoteError::MissingRequiredSignature {
            name: "audit.pki.example.kz/log".into()
        }
    );
    // Same name and key ID, other key's signature bytes: refused outright.
    let mut n = Note::parse(text.as_bytes()).unwrap();
    n.signatures[0].signature = sign(&body, &impostor).unwrap().signature;
    assert_eq!(
        Note::open(n.to_text().as_bytes(), &[log.verifier().clone()]).unwrap_err(),
        NoteError::InvalidSignature {
            name: "audit.pki.example.kz/log".into()
        }
    );
    // An edited body.
    let edited = text.replace("20852163", "20852164");
    assert_eq!(
        open_checkpoint(edited.as_bytes(), log.verifier(), &[]).unwrap_err(),
        NoteError::InvalidSignature {
            name: "audit.pki.example.kz/log".into()
        }
    );
    // A valid witness cosignature alone does not stand in for the log's signature.
    let w = witness();
    let only_witness = Note {
        text: body.clone(),
        signatures: vec![cosign_v1(&body, 5, &w).unwrap()],
    }
    .to_text();
    assert_eq!(
        open_checkpoint(
            only_witness.as_bytes(),
            log.verifier(),
            &[w.verifier().clone()]
        )
        .unwrap_err(),
        NoteError::MissingRequiredSignature {
            name: "audit.pki.example.kz/log".into()
        }
    );
    // A cosignature whose time was changed.
    let mut n = Note {
        text: body.clone(),
        signatures: vec![cosign_v1(&body, 5, &w).unwrap()],
    };
    n.signatures[0].signature[7] = 6;
    assert!(matches!(
        Note::open(n.to_text().as_bytes(), &[w.verifier().clone()]),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Nobody trusted signed it.
    assert_eq!(
        Note::open(text.as_bytes(), &[]).unwrap_err(),
        NoteError::NoVerifiedSignature
    );
}

#[test]
fn hostile_notes_are_refused_without_panic() {
    let log = log_key();
    let body = checkpoint().to_body().unwrap();
    let text = signed(&body, &[&log]);
    let keys = [log.verifier().clone()];
    let sig_line = text.lines().last().unwrap().to_owned();

    let open = |t: &str| Note::open(t.as_bytes(), &keys);
    assert_eq!(
        open(text.trim_end_matches('\n')).unwrap_err(),
        NoteError::UnterminatedSignatures
    );
    assert_eq!(
        open(&text.replace('\n', "\r\n")).unwrap_err(),
        NoteError::ControlCharacter
    );
    assert_eq!(open(&body).unwrap_err(), NoteError::NoSignatureBlock);
    assert_eq!(
        open(&format!("{body}\n")).unwrap_err(),
        NoteError::UnterminatedSignatures
    );
    assert!(matches!(
        open(&text.replace('\u{2014}', "--")),
        Err(NoteError::BadSignatureLine { line: 1, .. })
    ));
    assert!(matches!(
        open(&format!("{text}{sig_line}x\n")),
        Err(NoteError::BadSignatureLine { line: 2, .. })
    ));
    assert!(matches!(
        open(&format!("{body}\n\u{2014} name AAAA\n")),
        Err(NoteError::BadSignatureLine { line: 1, .. })
    ));
    assert!(matches!(
        open(&format!("{body}\n\u{2014} name\n")),
        Err(NoteError::BadSignatureLine { line: 1, .. })
    ));
    assert!(matches!(
        open(&format!("{body}\n\u{2014} na+me AAAAAAA=\n")),
        Err(NoteError::BadSignatureLine { line: 1, .. })
    ));
    assert_eq!(
        open("\u{2014}\n\n").unwrap_err(),
        NoteError::UnterminatedSignatures
    );
    assert_eq!(open("").unwrap_err(), NoteError::NoSignatureBlock);
    assert_eq!(
        Note::open(&[0xff, b'\n', b'\n'], &keys).unwrap_err(),
        NoteError::NotUtf8
    );

    // 1,000 signature lines.
    let mut many = text.clone();
    for _ in 0..999 {
        many.push_str(&sig_line);
        many.push('\n');
    }
    assert_eq!(open(&many).unwrap_err(), NoteError::TooManySignatures);
    // Exactly 100 are fine.
    let mut hundred = text.clone();
    for _ in 0..99 {
        hundred.push_str(&sig_line);
        hundred.push('\n');
    }
    assert_eq!(open(&hundred).unwrap().verified.len(), 100);
    // More than 1 MiB.
    let huge = format!("{}\n{text}", "x".repeat(1 << 20));
    assert_eq!(open(&huge).unwrap_err(), NoteError::TooLarge(huge.len()));

    // A signed checkpoint whose body is not a checkpoint is refused after verification.
    let not_cp = signed("hello\n", &[&log]);
    assert_eq!(
        open_checkpoint(not_cp.as_bytes(), log.verifier(), &[]).unwrap_err(),
        NoteError::Checkpoint(CheckpointError::MissingLine(2))
    );
    // Every prefix of a good note is refused or parsed, never a panic.
    for end in 0..text.len() {
        if text.is_char_boundary(end) {
            let _ = open(&text[..end]);
        }
    }
}

#[test]
fn signing_refuses_unsignable_texts() {
    let log = log_key();
    assert!(sign("", &log).is_err());
    assert!(sign("no newline", &log).is_err());
    assert!(sign("a\n\nb\n", &log).is_err());
    assert!(sign("a\r\n", &log).is_err());
    assert!(cosign_v1("a\tb\n", 1, &witness()).is_err());
}

#[test]
fn verifier_keys_parse_strictly() {
    let key = log_key();
    let vkey = key.verifier().to_vkey();
    assert_eq!(VerifierKey::parse(&vkey).unwrap(), *key.verifier());
    let w = witness();
    assert_eq!(
        VerifierKey::parse(&w.verifier().to_vkey())
            .unwrap()
            .sig_type,
        TYPE_COSIGNATURE_V1
    );
    assert_eq!(key.verifier().sig_type, TYPE_ED25519);

    let (name, rest) = PETER_VKEY.split_once('+').unwrap();
    assert_eq!(
        VerifierKey::parse(&format!("{name}+c74f20a4+{}", &rest[9..])),
        Err(KeyError::KeyIdMismatch)
    );
    assert_eq!(
        VerifierKey::parse(&format!("{name}+C74F20A3+{}", &rest[9..])),
        Err(KeyError::Malformed)
    );
    assert_eq!(
        VerifierKey::parse("PeterNeumann+c74f20a3"),
        Err(KeyError::Malformed)
    );
    assert_eq!(
        VerifierKey::parse("+c74f20a3+ARpc"),
        Err(KeyError::InvalidName)
    );
    assert_eq!(
        VerifierKey::parse(&PETER_VKEY.replace("ARpc", "Axpc")),
        Err(KeyError::UnsupportedType(0x03))
    );
    assert_eq!(
        VerifierKey::parse(&PETER_VKEY[..PETER_VKEY.len() - 4]),
        Err(KeyError::Malformed)
    );
    // Every truncation of a good key is refused.
    for end in 0..PETER_VKEY.len() {
        assert!(VerifierKey::parse(&PETER_VKEY[..end]).is_err(), "{end}");
    }
}
