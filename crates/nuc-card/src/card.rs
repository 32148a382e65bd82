//! A connected card with its applet selected: the operations of the card writer.
//!
//! Every operation is one or a few APDUs of the applet's interface (documented with the
//! emulator, crate `card-sim`). Anything that changes the card checks its result: a key is read
//! back as a SubjectPublicKeyInfo, a certificate is read back and compared. Every step can be
//! repeated after the card was pulled out, so the station's recovery is always "insert the card
//! again, connect, verify the PIN, repeat the step".

use std::time::{Duration, Instant};

use der::Encode;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::name::Name;

use crate::apdu::{self, Command};
use crate::csr;
use crate::error::CardError;
use crate::keys;
use crate::pin::Pin;
use crate::profile::{CardKind, KeySlot};
use crate::sw::StatusWord;

const INS_SELECT: u8 = 0xA4;
const INS_GET_DATA: u8 = 0xCA;
const INS_VERIFY: u8 = 0x20;
const INS_GENERATE_KEY: u8 = 0x47;
const INS_MSE: u8 = 0x22;
const INS_PSO: u8 = 0x2A;
const INS_PUT_DATA: u8 = 0xDB;
const INS_GET_RESPONSE: u8 = 0xC0;
const P2_PIN: u8 = 0x81;
const P1_CERT: u8 = 0xC1;
const ALG_EC_P256: u8 = 0x01;

/// The most the card writer reads in one answer, GET RESPONSE included: more than any object of
/// the applet, far less than what a broken card could make us allocate.
const MAX_ANSWER: usize = 16 * 1024;

/// What GET DATA tells about the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardInfo {
    pub kind: CardKind,
    /// Serial number: the document number of an ID card, the ICCID of a SIM.
    pub serial: String,
    pub applet_version: (u8, u8),
    pub pin_tries_left: u8,
    pub pin_max_tries: u8,
    /// Slots that hold a key pair.
    pub keys: Vec<KeySlot>,
    /// Slots that hold a certificate.
    pub certificates: Vec<KeySlot>,
}

/// Where the PIN stands, without spending a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// Verified in this session.
    Verified,
    /// Not verified yet; that many tries left.
    NotVerified { tries_left: u8 },
    /// No tries left (final).
    Blocked,
}

/// What [`Card::write_certificate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The certificate was written and read back identical.
    Written,
    /// That very certificate was on the card already (a repeated step).
    AlreadyThere,
}

/// Time spent talking to the card, for the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApduCount {
    pub apdus: u64,
    pub time: Duration,
}

/// A card in a reader, its applet selected. Dropping it resets the card (the PIN is no longer
/// verified for whoever comes next), unless the card already left.
pub struct Card {
    /// `None` only while dropping.
    card: Option<pcsc::Card>,
    /// The card left (or was reset) under us: nothing more is sent to it.
    gone: bool,
    reader: String,
    atr: Vec<u8>,
    kind: CardKind,
    buf: Vec<u8>,
    count: ApduCount,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("reader", &self.reader)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Card {
    /// Reads the ATR, then selects the applet the ATR announces (the other one if that fails):
    /// the applet that answers decides the kind.
    pub(crate) fn open(card: pcsc::Card, reader: String) -> Result<Card, CardError> {
        let status = card
            .status2_owned()
            .map_err(|e| CardError::pcsc("read the ATR", e))?;
        let atr = status.atr().to_vec();
        let mut card = Card {
            card: Some(card),
            gone: false,
            reader,
            atr,
            kind: CardKind::IdCard,
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
            count: ApduCount::default(),
        };
        for kind in CardKind::selection_order(&card.atr) {
            match card.select(kind) {
                Ok(()) => {
                    card.kind = kind;
                    return Ok(card);
                }
                Err(CardError::Status {
                    sw: StatusWord::APPLET_NOT_FOUND,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CardError::UnknownCard {
            atr: hex_upper(&card.atr),
            reason: "neither the ID-card nor the SIM applet can be selected".into(),
        })
    }

    pub fn kind(&self) -> CardKind {
        self.kind
    }

    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// APDUs exchanged so far and the time they took.
    pub fn apdu_count(&self) -> ApduCount {
        self.count
    }

    /// SELECT the applet of `kind`; its FCI must name the same kind.
    fn select(&mut self, kind: CardKind) -> Result<(), CardError> {
        const OP: &str = "select the applet";
        let fci = self.command(
            OP,
            Command::new(INS_SELECT, 0x04, 0x00)
                .data(kind.aid())
                .expect_data(),
        )?;
        // FCI: 6F { 84 AID, A5 { 80 kind, … } }; a card that gives none is taken at its AID.
        if let Some(code) = find_tlv(&fci, &[0x6F, 0xA5, 0x80]).and_then(|v| v.first().copied())
            && code != kind.code()
        {
            return Err(CardError::Malformed {
                op: OP,
                detail: format!("the {kind} applet says it is kind {code:02X}"),
            });
        }
        Ok(())
    }

    /// Kind, serial, PIN counter and which slots hold keys and certificates.
    pub fn info(&mut self) -> Result<CardInfo, CardError> {
        const OP: &str = "read the card information";
        let data = self.command(OP, Command::new(INS_GET_DATA, 0x01, 0x00).expect_data())?;
        let malformed = |detail: &str| CardError::Malformed {
            op: OP,
            detail: detail.into(),
        };
        let byte = |tag: u8| -> Result<u8, CardError> {
            match find_tlv(&data, &[tag]) {
                Some([b]) => Ok(*b),
                _ => Err(malformed(&format!("no one-byte {tag:02X}"))),
            }
        };
        let kind = CardKind::from_code(byte(0x80)?).ok_or_else(|| malformed("unknown kind"))?;
        let serial = find_tlv(&data, &[0x81]).ok_or_else(|| malformed("no serial"))?;
        let serial =
            String::from_utf8(serial.to_vec()).map_err(|_| malformed("serial not text"))?;
        let version = match find_tlv(&data, &[0x82]) {
            Some([major, minor]) => (*major, *minor),
            _ => return Err(malformed("no version")),
        };
        let slots = |bits: u8| {
            KeySlot::ALL
                .into_iter()
                .filter(|s| bits & s.bit() != 0)
                .collect()
        };
        Ok(CardInfo {
            kind,
            serial,
            applet_version: version,
            pin_tries_left: byte(0x83)?,
            pin_max_tries: byte(0x84)?,
            keys: slots(byte(0x85)?),
            certificates: slots(byte(0x86)?),
        })
    }

    /// The PIN's state, without spending a try (VERIFY without data).
    pub fn pin_status(&mut self) -> Result<PinStatus, CardError> {
        let (_, sw) = self.exchange(
            "read the PIN status",
            &Command::new(INS_VERIFY, 0x00, P2_PIN),
        )?;
        match sw {
            StatusWord::OK => Ok(PinStatus::Verified),
            StatusWord::PIN_BLOCKED => Ok(PinStatus::Blocked),
            sw => match sw.pin_tries_left() {
                Some(0) => Ok(PinStatus::Blocked),
                Some(n) => Ok(PinStatus::NotVerified { tries_left: n }),
                None => Err(CardError::Status {
                    op: "read the PIN status",
                    sw,
                }),
            },
        }
    }

    /// VERIFY the applicant's PIN. A wrong PIN gives [`CardError::WrongPin`] with the tries
    /// left; the last wrong one and any try after give [`CardError::PinBlocked`].
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<(), CardError> {
        let cmd = Command::new(INS_VERIFY, 0x00, P2_PIN).data(pin.as_bytes());
        let (_, sw) = self.exchange("verify the PIN", &cmd)?;
        match sw {
            StatusWord::OK => Ok(()),
            StatusWord::PIN_BLOCKED => Err(CardError::PinBlocked { sw }),
            sw => match sw.pin_tries_left() {
                Some(0) => Err(CardError::PinBlocked { sw }),
                Some(tries_left) => Err(CardError::WrongPin { sw, tries_left }),
                None => Err(CardError::Status {
                    op: "verify the PIN",
                    sw,
                }),
            },
        }
    }

    /// Generates a new key pair in `slot`, on the card (PIN verified first). The slot's old
    /// certificate is gone with the old key. Gives the new public key.
    pub fn generate_key(&mut self, slot: KeySlot) -> Result<SubjectPublicKeyInfoOwned, CardError> {
        const OP: &str = "generate a key pair";
        let template = self.command(
            OP,
            Command::new(INS_GENERATE_KEY, 0x80, slot.reference())
                .data(&[ALG_EC_P256])
                .expect_data(),
        )?;
        keys::spki_from_template(&template)
            .map_err(|detail| CardError::Malformed { op: OP, detail })
    }

    /// The public key in `slot`.
    pub fn public_key(&mut self, slot: KeySlot) -> Result<SubjectPublicKeyInfoOwned, CardError> {
        const OP: &str = "read a public key";
        let template = self.command(
            OP,
            Command::new(INS_GENERATE_KEY, 0x81, slot.reference()).expect_data(),
        )?;
        keys::spki_from_template(&template)
            .map_err(|detail| CardError::Malformed { op: OP, detail })
    }

    /// The card signs `hash` (SHA-256 of the to-be-signed bytes) with the key in `slot` (PIN
    /// verified first). Gives the DER ECDSA-Sig-Value.
    pub fn sign_hash(&mut self, slot: KeySlot, hash: &[u8]) -> Result<Vec<u8>, CardError> {
        const OP: &str = "sign on the card";
        let mse = [0x84, 0x01, slot.reference(), 0x80, 0x01, ALG_EC_P256];
        self.command(
            "set the signing key",
            Command::new(INS_MSE, 0x41, 0xB6).data(&mse),
        )?;
        let plain = self.command(
            OP,
            Command::new(INS_PSO, 0x9E, 0x9A).data(hash).expect_data(),
        )?;
        keys::ecdsa_der_from_plain(&plain).map_err(|detail| CardError::Malformed { op: OP, detail })
    }

    /// A PKCS#10 request for the key in `slot`, signed by the card with that key: the proof of
    /// possession the CA checks. The subject can be minimal, the CA takes the subject from the
    /// registry. Gives the DER.
    pub fn certification_request(
        &mut self,
        slot: KeySlot,
        subject: &Name,
    ) -> Result<Vec<u8>, CardError> {
        let spki = self.public_key(slot)?;
        csr::build(subject, spki, |hash| self.sign_hash(slot, hash))
    }

    /// The certificate in `slot`, if there is one.
    pub fn read_certificate(&mut self, slot: KeySlot) -> Result<Option<Vec<u8>>, CardError> {
        let cmd = Command::new(INS_GET_DATA, P1_CERT, slot.reference()).expect_data();
        let (data, sw) = self.exchange("read a certificate", &cmd)?;
        match sw {
            StatusWord::OK => Ok(Some(data)),
            StatusWord::DATA_NOT_FOUND => Ok(None),
            sw => Err(CardError::Status {
                op: "read a certificate",
                sw,
            }),
        }
    }

    /// Writes `cert` (DER) into `slot`, after checking that it certifies the key in that slot,
    /// then reads it back and compares. Idempotent: a certificate already there is left alone,
    /// and a write cut by a pulled card is simply done again (the card commits a certificate
    /// whole, on the last command of its chain, or not at all).
    pub fn write_certificate(
        &mut self,
        slot: KeySlot,
        cert: &[u8],
    ) -> Result<WriteOutcome, CardError> {
        let cert_key = keys::certificate_spki(cert)
            .map_err(|source| CardError::BadCertificate { slot, source })?;
        if cert_key != self.public_key(slot)? {
            return Err(CardError::KeyMismatch { slot });
        }
        if self.read_certificate(slot)?.as_deref() == Some(cert) {
            return Ok(WriteOutcome::AlreadyThere);
        }
        for cmd in apdu::chain(INS_PUT_DATA, P1_CERT, slot.reference(), cert) {
            self.command("write a certificate", cmd)?;
        }
        if self.read_certificate(slot)?.as_deref() != Some(cert) {
            return Err(CardError::ReadBackMismatch { slot });
        }
        Ok(WriteOutcome::Written)
    }

    /// Checks that the certificate in `slot` is there and carries the slot's public key.
    pub fn check_certificate(&mut self, slot: KeySlot) -> Result<Vec<u8>, CardError> {
        let cert = self.read_certificate(slot)?.ok_or(CardError::Status {
            op: "read a certificate",
            sw: StatusWord::DATA_NOT_FOUND,
        })?;
        let cert_key = keys::certificate_spki(&cert)
            .map_err(|source| CardError::BadCertificate { slot, source })?;
        if cert_key != self.public_key(slot)? {
            return Err(CardError::KeyMismatch { slot });
        }
        Ok(cert)
    }

    /// Sends `cmd` and wants `9000`; gives the answer's data.
    fn command(&mut self, op: &'static str, cmd: Command<'_>) -> Result<Vec<u8>, CardError> {
        let (data, sw) = self.exchange(op, &cmd)?;
        match sw {
            StatusWord::OK => Ok(data),
            StatusWord::PIN_BLOCKED => Err(CardError::PinBlocked { sw }),
            sw => Err(CardError::Status { op, sw }),
        }
    }

    /// Sends `cmd`, follows `61xx` with GET RESPONSE and `6Cxx` with the right Le; gives the
    /// whole answer's data and the final status word.
    fn exchange(
        &mut self,
        op: &'static str,
        cmd: &Command<'_>,
    ) -> Result<(Vec<u8>, StatusWord), CardError> {
        let mut encoded = cmd.encode();
        let (mut data, mut sw) = self.transmit(op, &encoded)?;
        if sw.sw1() == 0x6C {
            // Wrong Le: the card tells the right one.
            if let Some(le) = encoded.last_mut()
                && cmd.expects_data
            {
                *le = sw.sw2();
                (data, sw) = self.transmit(op, &encoded)?;
            }
        }
        while sw.sw1() == 0x61 {
            let get = [0x00, INS_GET_RESPONSE, 0x00, 0x00, sw.sw2()];
            let (more, next) = self.transmit(op, &get)?;
            data.extend_from_slice(&more);
            sw = next;
            if data.len() > MAX_ANSWER {
                return Err(CardError::Malformed {
                    op,
                    detail: format!("answer over {MAX_ANSWER} bytes"),
                });
            }
        }
        Ok((data, sw))
    }

    /// One APDU through pcscd.
    fn transmit(
        &mut self,
        op: &'static str,
        apdu: &[u8],
    ) -> Result<(Vec<u8>, StatusWord), CardError> {
        let Some(card) = self.card.as_ref().filter(|_| !self.gone) else {
            return Err(CardError::Removed { op });
        };
        let start = Instant::now();
        let result = card.transmit(apdu, &mut self.buf);
        self.count.apdus += 1;
        self.count.time += start.elapsed();
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                let err = CardError::pcsc(op, e);
                self.gone |= err.is_removal();
                return Err(err);
            }
        };
        match answer {
            [data @ .., sw1, sw2] => Ok((data.to_vec(), StatusWord::from_bytes(*sw1, *sw2))),
            // No answer at all: vpcd gives that when the card left in the middle of a command.
            [] => {
                self.gone = true;
                Err(CardError::Removed { op })
            }
            [_] => Err(CardError::Malformed {
                op,
                detail: "answer shorter than a status word".into(),
            }),
        }
    }
}

impl Drop for Card {
    /// Resets a card still there; leaves alone one that went away, so that pcscd learns of the
    /// removal from its own presence poll instead of from a failed reset (after which vpcd's
    /// reader would not notice the card coming back).
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            let disposition = if self.gone {
                pcsc::Disposition::LeaveCard
            } else {
                pcsc::Disposition::ResetCard
            };
            // Nothing to do about a failure here: the handle is released either way.
            let _ = card.disconnect(disposition);
        }
    }
}

/// The value at `path` in BER-TLV data with one-byte tags (enough for the applet's objects).
fn find_tlv<'a>(data: &'a [u8], path: &[u8]) -> Option<&'a [u8]> {
    let (first, rest_path) = path.split_first()?;
    let mut rest = data;
    while let [tag, tail @ ..] = rest {
        let (len, body) = match tail {
            [n @ 0..=0x7F, body @ ..] => (usize::from(*n), body),
            [0x81, n, body @ ..] => (usize::from(*n), body),
            [0x82, hi, lo, body @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), body),
            _ => return None,
        };
        let value = body.get(..len)?;
        if tag == first {
            return if rest_path.is_empty() {
                Some(value)
            } else {
                find_tlv(value, rest_path)
            };
        }
        rest = &body[len..];
    }
    None
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The DER of a SubjectPublicKeyInfo, for callers that store or compare keys as bytes.
pub fn spki_der(spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, CardError> {
    spki.to_der().map_err(|source| CardError::Der {
        op: "encode a public key",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a card answers, reading TLVs out of it never panics.
        #[test]
        fn tlv_reading_takes_any_bytes(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            path in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..4),
        ) {
            let _ = find_tlv(&data, &path);
        }
    }

    #[test]
    fn tlv_paths() {
        let fci = [
            0x6F, 0x09, 0x84, 0x01, 0xAA, 0xA5, 0x04, 0x80, 0x01, 0x02, 0x00,
        ];
        assert_eq!(find_tlv(&fci, &[0x6F, 0xA5, 0x80]), Some(&[0x02][..]));
        assert_eq!(find_tlv(&fci, &[0x6F, 0x84]), Some(&[0xAA][..]));
        assert_eq!(find_tlv(&fci, &[0x6F, 0xA6]), None);
        assert_eq!(find_tlv(&[0x80, 0x05, 1], &[0x80]), None);
        assert_eq!(find_tlv(&[], &[0x80]), None);
    }
}
