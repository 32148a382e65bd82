//! The audit log's public endpoints, on the HTTP listener beside OCSP and the CRLs:
//!
//! - `GET /audit/checkpoint`, `GET /audit/checkpoint/{size}`: a signed checkpoint with its
//!   witnesses' cosignatures (`text/plain`, C2SP signed note);
//! - `GET /audit/key`: the log's verifier key (`name+id+base64`);
//! - `GET /audit/proof/inclusion?record=SEQ&size=N`,
//!   `GET /audit/proof/consistency?from=M&to=N`: proofs as JSON ([`super::proofs`]);
//! - `POST /audit/cosignature`: a witness's cosignature of a stored checkpoint, taken only
//!   when it verifies under a key of `[audit] witnesses`.
//!
//! Anyone can call these. A proof reads O(log² n) nodes whatever the sizes asked, a
//! cosignature is at most a small note, and every refusal names its reason.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use nuc_store::{AuditTree, CosignatureRow};
use nuc_tlog::checkpoint::Checkpoint;
use nuc_tlog::note::{Note, NoteError, TYPE_COSIGNATURE_V1, VerifierKey};

use super::{AuditError, proofs};
use crate::instance::Instance;

/// What the endpoints answer from.
pub struct AuditState {
    pub inst: Arc<Instance>,
    /// The log's verifier key, as auditors pin it.
    pub log_key: VerifierKey,
    /// The witnesses of `[audit] witnesses`.
    pub witnesses: Vec<VerifierKey>,
}

/// A cosignature note is a checkpoint and a few signature lines: far below this.
const MAX_COSIGNATURE_BYTES: usize = 16 * 1024;

/// The routes, with their state.
pub fn router(state: Arc<AuditState>) -> axum::Router {
    axum::Router::new()
        .route("/audit/checkpoint", get(latest))
        .route("/audit/checkpoint/{size}", get(at_size))
        .route("/audit/key", get(key))
        .route("/audit/proof/inclusion", get(inclusion))
        .route("/audit/proof/consistency", get(consistency))
        .route("/audit/cosignature", post(cosignature))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COSIGNATURE_BYTES))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn failure(e: AuditError) -> Response {
    match e {
        AuditError::OutOfRange(reason) => text(StatusCode::NOT_FOUND, format!("{reason}\n")),
        e => {
            tracing::error!(error = %e, "audit endpoint failed");
            text(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable\n")
        }
    }
}

/// Runs a store read off the async threads.
async fn blocking<T: Send + 'static>(
    state: &Arc<AuditState>,
    f: impl FnOnce(&dyn AuditTree) -> Result<T, AuditError> + Send + 'static,
) -> Result<T, Response> {
    let inst = state.inst.clone();
    match tokio::task::spawn_blocking(move || f(inst.store.as_ref())).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failure(e)),
        Err(_) => Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit task failed\n",
        )),
    }
}

fn note_response(note: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        note,
    )
        .into_response()
}

async fn latest(State(state): State<Arc<AuditState>>) -> Response {
    let found = blocking(&state, |store| {
        Ok(match store.latest_checkpoint()? {
            Some(c) => {
                let cos = store.cosignatures(c.size)?;
                Some(super::served_note(&c, &cos))
            }
            None => None,
        })
    })
    .await;
    match found {
        Ok(Some(note)) => note_response(note),
        Ok(None) => text(StatusCode::NOT_FOUND, "no checkpoint signed yet\n"),
        Err(r) => r,
    }
}

async fn at_size(State(state): State<Arc<AuditState>>, Path(size): Path<String>) -> Response {
    let Ok(size) = size.parse::<u64>() else {
        return text(StatusCode::BAD_REQUEST, "size: not a number of records\n");
    };
    let found = blocking(&state, move |store| {
        Ok(match store.checkpoint_at(size)? {
            Some(c) => Some(super::served_note(&c, &store.cosignatures(size)?)),
            None => None,
        })
    })
    .await;
    match found {
        Ok(Some(note)) => note_response(note),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("no checkpoint of size {size}\n"),
        ),
        Err(r) => r,
    }
}

async fn key(State(state): State<Arc<AuditState>>) -> Response {
    text(StatusCode::OK, format!("{}\n", state.log_key.to_vkey()))
}

/// The two numbers a proof is asked with, and nothing else: `a=1&b=2` in any order, each
/// once, decimal.
fn two_numbers(raw: Option<String>, names: [&str; 2]) -> Option<[u64; 2]> {
    let raw = raw?;
    let mut found: [Option<u64>; 2] = [None, None];
    for pair in raw.split('&') {
        let (name, value) = pair.split_once('=')?;
        let slot = names.iter().position(|n| *n == name)?;
        if found[slot].is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        found[slot] = Some(value.parse().ok()?);
    }
    Some([found[0]?, found[1]?])
}

async fn inclusion(State(state): State<Arc<AuditState>>, RawQuery(raw): RawQuery) -> Response {
    let Some([record, size]) = two_numbers(raw, ["record", "size"]) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected ?record=SEQ&size=N (decimal numbers, each once)\n",
        );
    };
    match blocking(&state, move |store| proofs::inclusion(store, record, size)).await {
        // The record itself stays with the CA: it may name a person. The public proof carries
        // its leaf hash; whoever holds the record checks it against that.
        Ok(mut p) => {
            p.leaf = None;
            axum::Json(p).into_response()
        }
        Err(r) => r,
    }
}

async fn consistency(State(state): State<Arc<AuditState>>, RawQuery(raw): RawQuery) -> Response {
    let Some([from, to]) = two_numbers(raw, ["from", "to"]) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected ?from=M&to=N (decimal numbers, each once)\n",
        );
    };
    match blocking(&state, move |store| proofs::consistency(store, from, to)).await {
        Ok(p) => axum::Json(p).into_response(),
        Err(r) => r,
    }
}

/// A witness's cosignature: the checkpoint's text as the log signed it, and the witness's
/// cosignature/v1 line(s).
async fn cosignature(State(state): State<Arc<AuditState>>, body: axum::body::Bytes) -> Response {
    let note = match Note::open(&body, &state.witnesses) {
        Ok(opened) => opened,
        Err(NoteError::NoVerifiedSignature) => {
            return text(
                StatusCode::FORBIDDEN,
                "no cosignature by a witness of [audit] witnesses\n",
            );
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cosignature refused: {e}\n"),
            );
        }
    };
    let checkpoint = match Checkpoint::parse(&note.note.text) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("not a checkpoint: {e}\n")),
    };
    let size = checkpoint.size;
    let body_text = note.note.text.clone();
    let lines: Vec<(String, String)> = note
        .verified
        .iter()
        .filter(|v| v.sig_type == TYPE_COSIGNATURE_V1)
        .filter_map(|v| {
            note.note
                .signatures
                .iter()
                .find(|s| s.name == v.name && s.key_id == v.key_id)
                .map(|s| (v.name.clone(), s.line().trim_end().to_owned()))
        })
        .collect();
    if lines.is_empty() {
        return text(
            StatusCode::FORBIDDEN,
            "no cosignature/v1 by a witness of [audit] witnesses\n",
        );
    }
    let stored = blocking(&state, move |store| {
        let Some(c) = store.checkpoint_at(size)? else {
            return Ok(Err(format!("no checkpoint of size {size}")));
        };
        let signed_text = Note::parse(c.note.as_bytes())
            .map(|n| n.text)
            .unwrap_or_default();
        if signed_text != body_text {
            return Ok(Err(format!(
                "the cosigned text is not the checkpoint of size {size} this log signed"
            )));
        }
        let mut added = 0;
        for (witness, line) in lines {
            if store.put_cosignature(&CosignatureRow {
                size,
                witness: witness.clone(),
                line,
                at: nuc_core::time::now_unix(),
            })? {
                tracing::info!(size, witness = %witness, "witness cosignature stored");
                added += 1;
            }
        }
        Ok(Ok(added))
    })
    .await;
    match stored {
        Ok(Ok(added)) => text(StatusCode::OK, format!("stored {added} cosignature(s)\n")),
        Ok(Err(reason)) => text(StatusCode::CONFLICT, format!("{reason}\n")),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::two_numbers;

    fn q(s: &str) -> Option<[u64; 2]> {
        two_numbers(Some(s.to_owned()), ["from", "to"])
    }

    #[test]
    fn a_proof_is_asked_with_two_decimal_numbers_each_once() {
        assert_eq!(q("from=3&to=10"), Some([3, 10]));
        assert_eq!(q("to=10&from=0"), Some([0, 10]));
        for hostile in [
            "",
            "from=3",
            "from=3&to=10&from=4",
            "from=3&to=10&x=1",
            "from=-1&to=10",
            "from=+1&to=10",
            "from=0x10&to=10",
            "from=&to=10",
            "from=3&to=18446744073709551616",
            "from=3;to=10",
        ] {
            assert_eq!(q(hostile), None, "{hostile:?}");
        }
        assert_eq!(two_numbers(None, ["from", "to"]), None);
    }
}
