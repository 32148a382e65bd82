//! Structured mutations of valid inputs, shared by the bounded fuzz properties of the
//! workspace's crates (each includes this file with `#[path]`; it depends on proptest only).
//!
//! Random bytes seldom get past the first tag of a DER or protobuf parser; what finds bugs is a
//! valid input with a few bytes wrong. So a case is a valid seed and one to four mutations:
//! a bit flipped, a byte set (often to a boundary value), bytes inserted, a run deleted or
//! duplicated, the input cut, and, aimed at DER, a length octet of one of the seed's own TLVs
//! rewritten (short, long, indefinite, absurd). This file must never decide what is a correct
//! answer: each property judges the parser's result itself.

#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Byte values at the edges of tags, lengths and integers.
const EDGES: [u8; 10] = [0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0xFE, 0xFF];

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Edge(Index, Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
    /// Rewrite the length of one of the seed's DER TLVs.
    DerLength(Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let length = prop_oneof![
        (0u8..=0x7F).prop_map(|b| vec![b]),
        Just(vec![0x80]),
        any::<u8>().prop_map(|b| vec![0x81, b]),
        any::<[u8; 2]>().prop_map(|b| vec![0x82, b[0], b[1]]),
        Just(vec![0x84, 0xFF, 0xFF, 0xFF, 0xFF]),
        Just(vec![0x88, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        Just(vec![0x89]),
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, e)| Mutation::Edge(i, e)),
        (any::<Index>(), vec(any::<u8>(), 1..6)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..24).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), length.clone()).prop_map(|(i, l)| Mutation::DerLength(i, l)),
        (any::<Index>(), length).prop_map(|(i, l)| Mutation::DerLength(i, l)),
    ]
}

/// One to four mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 1..=4)
}

/// `seed` with `ms` applied in order.
pub fn apply(seed: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for mutation in ms {
        apply_one(&mut m, mutation);
    }
    m
}

fn apply_one(m: &mut Vec<u8>, mutation: &Mutation) {
    let len = m.len();
    match mutation {
        Mutation::Insert(i, bytes) => {
            let at = i.index(len + 1);
            m.splice(at..at, bytes.iter().copied());
        }
        _ if len == 0 => {}
        Mutation::Flip(i, bit) => m[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) => m[i.index(len)] = *b,
        Mutation::Edge(i, e) => m[i.index(len)] = EDGES[e.index(EDGES.len())],
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            m.drain(at..(at + n).min(len));
        }
        Mutation::Duplicate(i, n) => {
            let at = i.index(len);
            let run = m[at..(at + n).min(len)].to_vec();
            m.splice(at..at, run);
        }
        Mutation::Truncate(i) => m.truncate(i.index(len)),
        Mutation::DerLength(i, new) => {
            let heads = der_lengths(m);
            if let Some(&(at, old_len)) = heads.get(i.index(heads.len().max(1))) {
                m.splice(at..at + old_len, new.iter().copied());
            }
        }
    }
}

/// Where the length octets of each TLV of a DER input are (offset, how many), walking into
/// constructed values; stops quietly where the input stops being DER.
pub fn der_lengths(der: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    walk(der, 0, der.len(), &mut out, 0);
    out
}

fn walk(b: &[u8], mut at: usize, end: usize, out: &mut Vec<(usize, usize)>, depth: u8) {
    while at < end && depth < 16 {
        let tag = b[at];
        if tag & 0x1F == 0x1F {
            return; // multi-byte tags: none in what we parse
        }
        let l = at + 1;
        let Some(&first) = b.get(l) else { return };
        let (n, body_len) = match first {
            0..=0x7F => (1, usize::from(first)),
            0x81..=0x83 => {
                let k = usize::from(first & 0x7F);
                let Some(octets) = b.get(l + 1..l + 1 + k) else {
                    return;
                };
                (
                    1 + k,
                    octets.iter().fold(0, |a, o| a << 8 | usize::from(*o)),
                )
            }
            _ => return,
        };
        out.push((l, n));
        let body = l + n;
        let Some(next) = body.checked_add(body_len).filter(|e| *e <= end) else {
            return;
        };
        if tag & 0x20 != 0 {
            walk(b, body, next, out, depth + 1);
        } else if tag == 0x04 || tag == 0x03 {
            // OCTET STRING / BIT STRING often wrap DER (extnValue, a key, an inner message).
            let inner = if tag == 0x03 { body + 1 } else { body };
            if inner < next && matches!(b[inner], 0x30 | 0x31 | 0x02 | 0x04) {
                walk(b, inner, next, out, depth + 1);
            }
        }
        at = next;
    }
}

/// Random bytes, now and then opened by a SEQUENCE header so that a parser gets further.
pub fn random_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (vec(any::<u8>(), 0..max), any::<bool>()).prop_map(|(mut b, seq)| {
        if seq {
            let n = b.len();
            let head: Vec<u8> = if n < 0x80 {
                vec![0x30, n as u8]
            } else {
                vec![0x30, 0x82, (n >> 8) as u8, n as u8]
            };
            b.splice(0..0, head);
        }
        b
    })
}

/// One field of a protobuf message changed, the message still well framed: a varint field gets
/// `varint`, a length-delimited one (string, bytes, inner message) gets its value mutated by
/// `ms` and its length fixed. Reaches the checks of what a payload says, past its decoding.
#[derive(Debug, Clone)]
pub struct ProtoEdit {
    pub field: Index,
    pub varint: u64,
    pub value: Vec<Mutation>,
}

pub fn proto_edit() -> impl Strategy<Value = ProtoEdit> {
    let varint = prop_oneof![0u64..8, any::<u64>(), Just(u64::MAX), Just(1 << 63)];
    (any::<Index>(), varint, mutations()).prop_map(|(field, varint, value)| ProtoEdit {
        field,
        varint,
        value,
    })
}

/// `message` with `edit` applied; unchanged if it is not a plain protobuf message.
pub fn apply_proto(message: &[u8], edit: &ProtoEdit) -> Vec<u8> {
    let fields = proto_fields(message);
    let Some(&(start, value_at, end, wire)) = fields.get(edit.field.index(fields.len().max(1)))
    else {
        return message.to_vec();
    };
    let mut out = message[..start].to_vec();
    // The key (field number and wire type) as it was.
    let key_end = if wire == 2 {
        let (_, after_key) = varint(message, start).unwrap_or((0, value_at));
        after_key
    } else {
        value_at
    };
    out.extend_from_slice(&message[start..key_end]);
    if wire == 0 {
        put_varint(&mut out, edit.varint);
    } else {
        let value = apply(&message[value_at..end], &edit.value);
        put_varint(&mut out, value.len() as u64);
        out.extend_from_slice(&value);
    }
    out.extend_from_slice(&message[end..]);
    out
}

/// Each field as (start, value start, end, wire type), for varint and length-delimited fields.
fn proto_fields(m: &[u8]) -> Vec<(usize, usize, usize, u8)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < m.len() {
        let Some((key, after_key)) = varint(m, at) else {
            break;
        };
        match key & 7 {
            0 => {
                let Some((_, end)) = varint(m, after_key) else {
                    break;
                };
                out.push((at, after_key, end, 0));
                at = end;
            }
            2 => {
                let Some((len, body)) = varint(m, after_key) else {
                    break;
                };
                let Some(end) = usize::try_from(len)
                    .ok()
                    .and_then(|l| body.checked_add(l))
                    .filter(|e| *e <= m.len())
                else {
                    break;
                };
                out.push((at, body, end, 2));
                at = end;
            }
            _ => break,
        }
    }
    out
}

fn varint(m: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *m.get(at)?;
        at += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Some((v, at));
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
