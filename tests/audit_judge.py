#!/usr/bin/env python3
"""An independent judge of the audit log's checkpoints and proofs (issue 12).

Nothing here comes from the project: the signed-note format (C2SP signed-note, tlog-checkpoint)
is parsed here, the Ed25519 signatures are checked with `cryptography`, and the Merkle
arithmetic is RFC 9162's own (§2.1.1 hashes, §2.1.3.2 inclusion, §2.1.4.2 consistency) written
from the RFC, with hashlib. The end-to-end tests (tests/audit.rs) feed it what `nuc audit …`
and the service's /audit/ endpoints give, and check that it also refuses a damaged proof or
checkpoint.

Usage:
  audit_judge.py checkpoint  --log-key VKEY FILE
  audit_judge.py inclusion   --log-key VKEY --checkpoint FILE --proof FILE
                             (--record FILE | --sqlite DB)
  audit_judge.py consistency --log-key VKEY --from FILE --to FILE --proof FILE
  audit_judge.py selftest    (its own verifiers against RFC 9162's recursive definitions)

`--record FILE` is a JSON object {seq, at, actor, action, object, details} of the record as
stored (read from the database by the caller); `--sqlite DB` reads it from the audit_log table
of that SQLite file directly. The leaf is encoded here from those fields, its hash must be the
proof's `leaf_hash`, and the proof's `leaf` bytes (which `nuc audit prove` adds and the HTTP
endpoint leaves out) must be the same bytes.

Exit status: 0 and `OK: …` on stdout when everything verifies; 1 and `REJECT: <reason>` on
stderr when something does not; 2 on a usage error.
"""

import argparse
import base64
import hashlib
import json
import re
import sqlite3
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014"
TYPE_ED25519 = 0x01


class Reject(Exception):
    """The material does not verify; the message says why."""


# --- RFC 9162 §2.1.1 ----------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(leaf: bytes) -> bytes:
    return sha256(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


# --- RFC 9162 §2.1.3.2: verifying an inclusion proof ----------------------------------------


def verify_inclusion(leaf_index: int, tree_size: int, lh: bytes, path, root: bytes) -> None:
    if leaf_index >= tree_size:
        raise Reject(f"inclusion: leaf index {leaf_index} is not below the tree size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, lh
    for p in path:
        if sn == 0:
            raise Reject("inclusion: the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Reject("inclusion: the proof is shorter than the path to the root")
    if r != root:
        raise Reject(
            f"inclusion: the path gives root {r.hex()}, the checkpoint's root is {root.hex()}"
        )


# --- RFC 9162 §2.1.4.2: verifying a consistency proof ---------------------------------------


def verify_consistency(first: int, second: int, path, first_hash: bytes, second_hash: bytes):
    if first > second:
        raise Reject(f"consistency: from {first} is beyond to {second}")
    if first == second:
        if path:
            raise Reject("consistency: a proof between equal sizes must be empty")
        if first_hash != second_hash:
            raise Reject(f"consistency: two different roots for size {first}")
        return
    if first == 0:
        # Every tree extends the empty one; RFC 9162 gives no proof for it.
        if path:
            raise Reject("consistency: a proof from the empty tree must be empty")
        return
    if not path:
        raise Reject("consistency: empty proof between different sizes")
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Reject("consistency: the proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Reject("consistency: the proof is shorter than needed")
    if fr != first_hash:
        raise Reject(f"consistency: the proof gives the old root {fr.hex()}, not {first_hash.hex()}")
    if sr != second_hash:
        raise Reject(f"consistency: the proof gives the new root {sr.hex()}, not {second_hash.hex()}")


# --- C2SP signed-note and tlog-checkpoint --------------------------------------------------


def b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        raise Reject(f"{what}: not base64 ({e})")


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + bytes([sig_type]) + public)[:4]


class LogKey:
    def __init__(self, vkey: str):
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise Reject(f"log key {vkey!r}: not name+keyid+base64")
        self.name, id_hex, key_b64 = parts
        raw = b64(key_b64, "log key")
        if len(raw) != 33 or raw[0] != TYPE_ED25519:
            raise Reject("log key: not type 0x01 followed by a 32-byte Ed25519 public key")
        self.public = raw[1:]
        self.key_id = key_id(self.name, TYPE_ED25519, self.public)
        if id_hex != self.key_id.hex():
            raise Reject(f"log key: its key ID {id_hex} is not SHA-256(name‖\\n‖0x01‖key)[:4] = {self.key_id.hex()}")
        self.key = Ed25519PublicKey.from_public_bytes(self.public)


class Checkpoint:
    def __init__(self, origin: str, size: int, root: bytes, extensions, text: str):
        self.origin, self.size, self.root, self.extensions, self.text = (
            origin,
            size,
            root,
            extensions,
            text,
        )


def open_checkpoint(note: bytes, log_key: LogKey, what: str) -> Checkpoint:
    """Parses a signed note and checks the log's signature on it; gives the checkpoint."""
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject(f"{what}: not UTF-8")
    if "\n\n" not in text:
        raise Reject(f"{what}: no blank line between the text and the signatures")
    split = text.index("\n\n")
    body, sig_block = text[: split + 1], text[split + 2 :]
    if not sig_block.endswith("\n"):
        raise Reject(f"{what}: the signature lines do not end in a newline")
    verified = False
    for line in sig_block[:-1].split("\n"):
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise Reject(f"{what}: signature line {line!r} does not start with an em dash")
        fields = line[len(prefix) :].split(" ")
        if len(fields) != 2:
            raise Reject(f"{what}: signature line {line!r} is not '— name base64'")
        name, sig_b64 = fields
        raw = b64(sig_b64, f"{what}: signature of {name}")
        if name != log_key.name or raw[:4] != log_key.key_id:
            continue  # another key's (a witness's cosignature): not ours to check
        if len(raw) != 4 + 64:
            raise Reject(f"{what}: the log's signature is {len(raw) - 4} bytes, not 64")
        try:
            log_key.key.verify(raw[4:], body.encode("utf-8"))
        except InvalidSignature:
            raise Reject(f"{what}: the log's Ed25519 signature does not verify over the checkpoint text")
        verified = True
    if not verified:
        raise Reject(f"{what}: no signature by the log key {log_key.name}+{log_key.key_id.hex()}")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise Reject(f"{what}: a checkpoint has at least origin, size and root")
    origin, size_text, root_text = lines[:3]
    if origin != log_key.name:
        raise Reject(f"{what}: origin {origin!r} is not the log key's name {log_key.name!r}")
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text):
        raise Reject(f"{what}: size {size_text!r} is not a decimal number")
    root = b64(root_text, f"{what}: root")
    if len(root) != 32:
        raise Reject(f"{what}: root is {len(root)} bytes, not 32")
    if any(not l for l in lines[3:]):
        raise Reject(f"{what}: empty extension line")
    return Checkpoint(origin, int(size_text), root, lines[3:], body)


def hashes(values, what: str):
    out = []
    for i, h in enumerate(values):
        if not isinstance(h, str) or not re.fullmatch(r"[0-9a-f]{64}", h):
            raise Reject(f"{what}: hash {i + 1} is not 32 bytes of lowercase hex: {h!r}")
        out.append(bytes.fromhex(h))
    return out


# --- The leaf of a record -------------------------------------------------------------------


def record_leaf(seq, at, actor, action, obj, details) -> bytes:
    return json.dumps(
        [seq, at, actor, action, obj, details], separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def stored_record(args, seq: int):
    if args.sqlite:
        con = sqlite3.connect(f"file:{args.sqlite}?mode=ro", uri=True)
        try:
            row = con.execute(
                "SELECT seq, at, actor, action, object, details FROM audit_log WHERE seq = ?",
                (seq,),
            ).fetchone()
        finally:
            con.close()
        if row is None:
            raise Reject(f"record {seq} is not in {args.sqlite}")
        return row
    with open(args.record, "rb") as f:
        r = json.load(f)
    return (r["seq"], r["at"], r["actor"], r["action"], r["object"], r["details"])


# --- Self-test: the verifiers against the RFC's recursive definitions -------------------------


def mth(leaves):
    """MTH (RFC 9162 §2.1.1)."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def rfc_path(m, leaves):
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1)."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return rfc_path(m, leaves[:k]) + [mth(leaves[k:])]
    return rfc_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def rfc_subproof(m, leaves, b):
    """SUBPROOF(m, D[n], b) (RFC 9162 §2.1.4.1)."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return rfc_subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return rfc_subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def cmd_selftest(_args) -> str:
    checked = 0
    for n in range(1, 34):
        leaves = [f"leaf {i}".encode() for i in range(n)]
        root = mth(leaves)
        for m in range(n):
            path = rfc_path(m, leaves)
            verify_inclusion(m, n, leaf_hash(leaves[m]), path, root)
            for bad in (path[:-1], path + [root]) if path else ([root],):
                try:
                    verify_inclusion(m, n, leaf_hash(leaves[m]), bad, root)
                except Reject:
                    continue
                raise Reject(f"selftest: a wrong inclusion path verified ({m}, {n})")
            checked += 1
        for m in range(1, n + 1):
            proof = rfc_subproof(m, leaves, True) if m < n else []
            old = mth(leaves[:m])
            verify_consistency(m, n, proof, old, root)
            if proof:
                flipped = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
                try:
                    verify_consistency(m, n, flipped, old, root)
                except Reject:
                    pass
                else:
                    raise Reject(f"selftest: a flipped consistency proof verified ({m}, {n})")
            checked += 1
    return f"{checked} proofs built from RFC 9162's definitions verify, and damaged ones do not"


# --- Commands ----------------------------------------------------------------------------------


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def cmd_checkpoint(args) -> str:
    key = LogKey(args.log_key)
    cp = open_checkpoint(read(args.file), key, args.file)
    return f"checkpoint of size {cp.size}, root {cp.root.hex()}, signed by {key.name}"


def cmd_inclusion(args) -> str:
    key = LogKey(args.log_key)
    cp = open_checkpoint(read(args.checkpoint), key, args.checkpoint)
    proof = json.loads(read(args.proof))
    seq, index, size = proof["record"], proof["leaf_index"], proof["tree_size"]
    if not all(isinstance(v, int) for v in (seq, index, size)):
        raise Reject("inclusion: record, leaf_index and tree_size must be integers")
    if size != cp.size:
        raise Reject(f"inclusion: the proof is for a tree of {size}, the checkpoint has {cp.size}")
    if index != seq - 1:
        raise Reject(f"inclusion: record {seq} must be leaf {seq - 1}, not {index}")
    # The leaf is the record as stored, encoded here from its fields; `nuc audit prove` also
    # gives the leaf's bytes (the HTTP endpoint gives the hash only), which must be those.
    fields = stored_record(args, seq)
    mine = record_leaf(*fields)
    if fields[0] != seq:
        raise Reject(f"inclusion: the stored record is {fields[0]}, not {seq}")
    if "leaf" in proof:
        leaf = b64(proof["leaf"], "inclusion: leaf")
        if mine != leaf:
            raise Reject(
                f"inclusion: the leaf bytes are not record {seq} as stored: proof {leaf!r}, recomputed {mine!r}"
            )
    lh = leaf_hash(mine)
    if lh.hex() != proof["leaf_hash"]:
        raise Reject(
            f"inclusion: the leaf hash is not record {seq}'s as stored: SHA-256(0x00‖leaf) = {lh.hex()}, the proof says {proof['leaf_hash']}"
        )
    verify_inclusion(index, size, leaf_hash(mine), hashes(proof["proof"], "inclusion"), cp.root)
    with_leaf = " (with its leaf bytes)" if "leaf" in proof else ""
    return f"record {seq}{with_leaf} is leaf {index} of the signed tree of {size} records (root {cp.root.hex()})"


def cmd_consistency(args) -> str:
    key = LogKey(args.log_key)
    old = open_checkpoint(read(args.old), key, args.old)
    new = open_checkpoint(read(args.new), key, args.new)
    proof = json.loads(read(args.proof))
    if proof["from"] != old.size or proof["to"] != new.size:
        raise Reject(
            f"consistency: the proof is from {proof['from']} to {proof['to']}, the checkpoints are {old.size} and {new.size}"
        )
    verify_consistency(old.size, new.size, hashes(proof["proof"], "consistency"), old.root, new.root)
    return f"the signed tree of {new.size} records extends the signed tree of {old.size}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("checkpoint")
    c.add_argument("--log-key", required=True)
    c.add_argument("file")
    i = sub.add_parser("inclusion")
    i.add_argument("--log-key", required=True)
    i.add_argument("--checkpoint", required=True)
    i.add_argument("--proof", required=True)
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--record")
    src.add_argument("--sqlite")
    k = sub.add_parser("consistency")
    k.add_argument("--log-key", required=True)
    k.add_argument("--from", dest="old", required=True)
    k.add_argument("--to", dest="new", required=True)
    k.add_argument("--proof", required=True)
    sub.add_parser("selftest")
    args = p.parse_args()
    run = {"selftest": cmd_selftest, "checkpoint": cmd_checkpoint, "inclusion": cmd_inclusion, "consistency": cmd_consistency}
    try:
        print("OK: " + run[args.command](args))
        return 0
    except Reject as e:
        print(f"REJECT: {e}", file=sys.stderr)
        return 1
    except (KeyError, ValueError, TypeError) as e:
        # Missing fields, wrong JSON: the material is refused, named.
        print(f"REJECT: malformed input: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
