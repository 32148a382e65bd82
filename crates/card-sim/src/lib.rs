//! Emulator of the NUC RK card applet, as an ID card or as a SIM card, for the vpcd virtual
//! reader.
//!
//! This crate owns the *card side* of the card writer (F4) for tests and benchmarks: the applet
//! ([`applet`]), its persistent state ([`state`]), the vpcd wire protocol ([`vpcd`]) and the
//! helpers that start pcscd and the `card-sim` binary around a test ([`harness`]). It plays the
//! part a real chip plays in production, so it must never be linked into a production binary,
//! must never panic or crash on a malformed APDU (every bad command gets a status word), and must
//! never let a private key out through its APDU interface: the only way to a key is the state
//! file, which exists because this is an emulator.
//!
//! # The vpcd protocol (card side)
//!
//! pcscd loads vpcd's driver, which listens on TCP `127.0.0.1:35963`; the emulator connects to
//! it as a client ("vpicc"). Every message in both directions is a 2-byte big-endian length
//! followed by that many bytes. A 1-byte message from vpcd is a control code: `00` power off,
//! `01` power on, `02` reset (none of them is answered), `04` get ATR (answered with the ATR).
//! vpcd asks for the ATR every time pcscd polls for the card's presence (about every 400 ms).
//! Any longer message is a C-APDU and is answered with the R-APDU. Closing the connection is
//! pulling the card out.
//!
//! Latency: vpcd writes a message's length and its payload in two writes without
//! `TCP_NODELAY`, so its payload waits for the length to be acknowledged; the emulator sets
//! `TCP_NODELAY` on its own writes and asks for quick ACKs before every read, or each APDU
//! would wait for a delayed ACK (~40-50 ms instead of ~50 µs).
//!
//! # Telling the cards apart
//!
//! | kind     | ATR (T=1 only)                                   | historical bytes           | AID                              |
//! | -------- | ------------------------------------------------ | -------------------------- | -------------------------------- |
//! | ID card  | `3B 8A 01 80 58 4E 55 43 4B 5A 2D 49 44 TCK`     | `80`, issuer data "NUCKZ-ID"  | `F0 4E 55 43 4B 5A 49 44 01`     |
//! | SIM card | `3B 8B 01 80 59 4E 55 43 4B 5A 2D 53 49 4D TCK`  | `80`, issuer data "NUCKZ-SIM" | `F0 4E 55 43 4B 5A 53 49 4D 01`  |
//!
//! Each applet answers only to its own AID: selecting the other one gives `6A82`.
//!
//! # APDU set
//!
//! All commands use the inter-industry class `00` on the basic logical channel, without secure
//! messaging (`10` for a chained PUT DATA chunk). Short and extended lengths are both accepted;
//! answers longer than Ne (256 when Le is absent) are continued with `61xx` and GET RESPONSE.
//! Key slots: `01` AUTH, `02` SIGN. Algorithm: `01` ECDSA on P-256 (the only one so far).
//!
//! | command                       | CLA INS P1 P2     | data                                   | answer data                               | PIN |
//! | ----------------------------- | ----------------- | -------------------------------------- | ----------------------------------------- | --- |
//! | SELECT applet                 | `00 A4 04 00`/`0C` | AID                                   | P2=00: FCI `6F { 84 AID, A5 { 80 kind, 82 version } }` | no |
//! | GET DATA card info            | `00 CA 01 00`     | —                                      | `80` kind (01 ID, 02 SIM), `81` serial (ASCII), `82` applet version (2 bytes), `83` PIN tries left, `84` PIN max tries, `85` slots with a key (bit 0 AUTH, bit 1 SIGN), `86` slots with a certificate | no |
//! | VERIFY PIN                    | `00 20 00 81`     | PIN, 4 to 12 bytes (ASCII digits)      | —                                         | —   |
//! | VERIFY (status only)          | `00 20 00 81`     | none                                   | — (`9000` verified, `63Cx` not yet)       | —   |
//! | GENERATE ASYMMETRIC KEY PAIR  | `00 47 80 slot`   | none, or the algorithm byte `01`       | `7F49 { 06 curve OID, 86 point 04‖X‖Y }` | yes |
//! | READ PUBLIC KEY               | `00 47 81 slot`   | —                                      | `7F49 { 06 curve OID, 86 point 04‖X‖Y }` | no  |
//! | MANAGE SECURITY ENVIRONMENT   | `00 22 41 B6`     | `84 01 slot` [`80 01 01`]              | —                                         | no  |
//! | PSO: COMPUTE DIGITAL SIGNATURE| `00 2A 9E 9A`     | the hash to sign, 20 to 64 bytes       | plain signature r‖s (2 × 32 bytes)        | yes |
//! | PUT DATA certificate          | `00`/`10 DB C1 slot` | certificate DER, in chained chunks  | — (`10`: chunk kept; `00`: committed)     | yes |
//! | GET DATA certificate          | `00 CA C1 slot`   | —                                      | certificate DER (`61xx` for the rest)     | no  |
//! | GET RESPONSE                  | `00 C0 00 00`     | —                                      | the next part of the previous answer      | no  |
//!
//! The card signs a *hash*: the host hashes the to-be-signed bytes (a PKCS#10
//! CertificationRequestInfo, say) and the private key never leaves the card. Generating a key
//! in a slot deletes that slot's certificate, which belonged to the old key.
//!
//! A certificate is written with ISO 7816-4 command chaining: every chunk but the last has CLA
//! `10`, and only the last one (CLA `00`) commits the whole object, at once; a chain broken by
//! any other command or by pulling the card out leaves the previous certificate as it was. An
//! empty object deletes the certificate. Writing is idempotent, so the host recovers from a
//! pulled card by writing again.
//!
//! # Status words
//!
//! | SW     | meaning |
//! | ------ | ------- |
//! | `9000` | success |
//! | `61xx` | more data: GET RESPONSE with Le=xx (`00`: 256 or more) |
//! | `63Cx` | wrong PIN, x tries left (`63C0`: none, the PIN is now blocked) |
//! | `6581` | memory failure: the card could not store its state; the command had no effect |
//! | `6700` | wrong length (malformed APDU, bad Lc/Le) |
//! | `6881` | logical channel not supported |
//! | `6882` | secure messaging not supported |
//! | `6883` | last command of the chain expected |
//! | `6884` | command chaining not supported for this command |
//! | `6982` | security status not satisfied: verify the PIN first |
//! | `6983` | PIN blocked: no tries left (final) |
//! | `6985` | conditions of use not satisfied (no applet selected, no MANAGE SECURITY ENVIRONMENT before the signature, nothing to GET RESPONSE) |
//! | `6A80` | incorrect data (PIN length, TLV, certificate not DER, hash length) |
//! | `6A82` | applet not found |
//! | `6A84` | not enough memory (certificate over 4096 bytes) |
//! | `6A86` | incorrect P1-P2 (unknown slot, unknown mode) |
//! | `6A88` | referenced data not found (no key or no certificate in that slot) |
//! | `6D00` | instruction not supported |
//! | `6E00` | class not supported |
//! | `6F00` | internal error |
//!
//! # PIN
//!
//! Set at personalisation (`card-sim --personalise --pin 1234`), with 3 tries. The counter is
//! decremented and stored *before* the PIN is compared, and restored after a match, so pulling
//! the card out during VERIFY can never give a free try. A blocked PIN is final: this applet has
//! no PUK. The PIN stays verified until the card is reset, powered off, pulled out or an applet
//! is selected again.

pub mod apdu;
pub mod applet;
pub mod crypto;
pub mod harness;
pub mod profile;
pub mod state;
pub mod sw;
pub mod vpcd;

pub use applet::Applet;
pub use profile::{CardKind, Slot};
pub use state::{CardState, FileStore, MemoryStore, StateError, Store};
