//! The applet: one C-APDU in, one R-APDU out (see the crate documentation for the command set).
//!
//! Volatile state (selection, PIN verified, security environment, a pending chain or answer) is
//! lost on reset, power off and removal, as on a real chip; persistent state goes through the
//! [`Store`] *before* the answer is given, and a change that could not be stored has no effect
//! (`6581`).

use crate::apdu::{self, Command};
use crate::crypto::{KeyPair, P256_OID};
use crate::profile::Slot;
use crate::state::{CardState, PIN_LEN, Store};
use crate::sw::{self, Sw};

/// Applet version in the FCI and GET DATA.
const VERSION: [u8; 2] = [1, 0];
/// Largest certificate a slot holds.
pub const MAX_CERT_LEN: usize = 4096;
/// Largest answer in one R-APDU when the host gives no Le.
const DEFAULT_NE: usize = 256;
/// The only algorithm: ECDSA on P-256.
const ALG_EC_P256: u8 = 0x01;

const INS_SELECT: u8 = 0xA4;
const INS_GET_DATA: u8 = 0xCA;
const INS_VERIFY: u8 = 0x20;
const INS_GENERATE_KEY: u8 = 0x47;
const INS_MSE: u8 = 0x22;
const INS_PSO: u8 = 0x2A;
const INS_PUT_DATA: u8 = 0xDB;
const INS_GET_RESPONSE: u8 = 0xC0;

/// CLA bit: more commands of this chain follow.
const CLA_CHAINING: u8 = 0x10;
/// P1 of GET DATA / PUT DATA for a certificate object; P2 is the slot.
const P1_CERT: u8 = 0xC1;
/// P1-P2 of GET DATA for the card information.
const P1P2_CARD_INFO: u16 = 0x0100;
/// PIN reference in VERIFY (specific reference data, number 1).
const P2_PIN: u8 = 0x81;

type Answer = Result<Vec<u8>, Sw>;

/// What a chain of PUT DATA commands has gathered so far.
struct Chain {
    p1p2: u16,
    data: Vec<u8>,
}

/// State that lives only while the card is powered.
#[derive(Default)]
struct Session {
    selected: bool,
    pin_verified: bool,
    /// The key chosen by MANAGE SECURITY ENVIRONMENT for the next signature.
    signing_key: Option<Slot>,
    chain: Option<Chain>,
    /// The rest of the last answer, for GET RESPONSE.
    pending: Vec<u8>,
}

/// The applet with its persistent state and where that state is kept.
pub struct Applet<S: Store> {
    state: CardState,
    store: S,
    session: Session,
}

impl<S: Store> Applet<S> {
    pub fn new(state: CardState, store: S) -> Self {
        Applet {
            state,
            store,
            session: Session::default(),
        }
    }

    pub fn state(&self) -> &CardState {
        &self.state
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn atr(&self) -> Vec<u8> {
        self.state.kind.atr()
    }

    /// Power off, power on, reset and removal all forget the session.
    pub fn reset(&mut self) {
        self.session = Session::default();
    }

    /// Processes one C-APDU and gives the R-APDU (data ‖ SW1 SW2).
    pub fn process(&mut self, raw: &[u8]) -> Vec<u8> {
        let (mut data, sw) = match apdu::parse(raw) {
            Ok(cmd) => match self.dispatch(&cmd) {
                Ok(data) => self.shape(data, cmd.ne),
                Err(sw) => (Vec::new(), sw),
            },
            Err(sw) => {
                self.session.chain = None;
                self.session.pending.clear();
                (Vec::new(), sw)
            }
        };
        data.extend_from_slice(&sw.to_bytes());
        data
    }

    /// Cuts an answer to Ne bytes, keeping the rest for GET RESPONSE.
    fn shape(&mut self, mut data: Vec<u8>, ne: Option<usize>) -> (Vec<u8>, Sw) {
        let limit = ne.unwrap_or(DEFAULT_NE);
        if data.len() <= limit {
            return (data, sw::OK);
        }
        let rest = data.split_off(limit);
        let sw = Sw::more_data(rest.len());
        self.session.pending = rest;
        (data, sw)
    }

    fn dispatch(&mut self, cmd: &Command<'_>) -> Answer {
        check_class(cmd.cla)?;
        if cmd.ins != INS_GET_RESPONSE {
            self.session.pending.clear();
        }
        // A chain is continued only by the same command; anything else drops what it gathered.
        if let Some(chain) = &self.session.chain
            && (cmd.ins != INS_PUT_DATA || chain.p1p2 != cmd.p1p2())
        {
            self.session.chain = None;
        }
        if cmd.cla & CLA_CHAINING != 0 && cmd.ins != INS_PUT_DATA {
            return Err(sw::CHAINING_NOT_SUPPORTED);
        }
        if cmd.ins == INS_SELECT {
            return self.select(cmd);
        }
        if !self.session.selected {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        match cmd.ins {
            INS_GET_DATA => self.get_data(cmd),
            INS_VERIFY => self.verify(cmd),
            INS_GENERATE_KEY => self.generate_or_read_key(cmd),
            INS_MSE => self.manage_security_environment(cmd),
            INS_PSO => self.compute_signature(cmd),
            INS_PUT_DATA => self.put_data(cmd),
            INS_GET_RESPONSE => self.get_response(cmd),
            _ => Err(sw::INS_NOT_SUPPORTED),
        }
    }

    /// SELECT by AID: only this applet's own AID.
    fn select(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1 != 0x04 || !matches!(cmd.p2, 0x00 | 0x0C) {
            return Err(sw::INCORRECT_P1P2);
        }
        let kind = self.state.kind;
        if cmd.data != kind.aid() {
            return Err(sw::APPLET_NOT_FOUND);
        }
        self.session = Session {
            selected: true,
            ..Session::default()
        };
        if cmd.p2 == 0x0C {
            return Ok(Vec::new());
        }
        let mut proprietary = tlv(0x80, &[kind.code()]);
        proprietary.extend(tlv(0x82, &VERSION));
        let mut fci = tlv(0x84, kind.aid());
        fci.extend(tlv(0xA5, &proprietary));
        Ok(tlv(0x6F, &fci))
    }

    fn get_data(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1p2() == P1P2_CARD_INFO {
            return Ok(self.card_info());
        }
        if cmd.p1 != P1_CERT {
            return Err(sw::DATA_NOT_FOUND);
        }
        let slot = Slot::from_ref(cmd.p2).ok_or(sw::INCORRECT_P1P2)?;
        self.state.cert(slot).ok_or(sw::DATA_NOT_FOUND)
    }

    fn card_info(&self) -> Vec<u8> {
        let s = &self.state;
        let bitmap = |has: &dyn Fn(Slot) -> bool| {
            Slot::ALL
                .iter()
                .filter(|slot| has(**slot))
                .fold(0u8, |b, slot| b | slot.bit())
        };
        let keys = bitmap(&|slot| s.slot(slot).key.is_some());
        let certs = bitmap(&|slot| s.slot(slot).cert.is_some());
        let mut out = tlv(0x80, &[s.kind.code()]);
        out.extend(tlv(0x81, s.serial.as_bytes()));
        out.extend(tlv(0x82, &VERSION));
        out.extend(tlv(0x83, &[s.pin_tries_left]));
        out.extend(tlv(0x84, &[s.pin_max_tries]));
        out.extend(tlv(0x85, &[keys]));
        out.extend(tlv(0x86, &[certs]));
        out
    }

    /// VERIFY. The counter is decremented and stored before the comparison, and restored after
    /// a match: pulling the card out halfway costs a try instead of granting one.
    fn verify(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1 != 0x00 || cmd.p2 != P2_PIN {
            return Err(sw::INCORRECT_P1P2);
        }
        let tries = self.state.pin_tries_left;
        if tries == 0 {
            return Err(sw::PIN_BLOCKED);
        }
        if cmd.data.is_empty() {
            return if self.session.pin_verified {
                Ok(Vec::new())
            } else {
                Err(Sw::wrong_pin(tries))
            };
        }
        if !PIN_LEN.contains(&cmd.data.len()) {
            return Err(sw::INCORRECT_DATA);
        }
        self.session.pin_verified = false;
        let mut next = self.state.clone();
        next.pin_tries_left = tries - 1;
        self.commit(next)?;
        if !self.state.pin_matches(cmd.data) {
            return Err(Sw::wrong_pin(tries - 1));
        }
        let mut next = self.state.clone();
        next.pin_tries_left = next.pin_max_tries;
        self.commit(next)?;
        self.session.pin_verified = true;
        Ok(Vec::new())
    }

    /// GENERATE ASYMMETRIC KEY PAIR (P1=80) or read the public key (P1=81).
    fn generate_or_read_key(&mut self, cmd: &Command<'_>) -> Answer {
        let slot = Slot::from_ref(cmd.p2).ok_or(sw::INCORRECT_P1P2)?;
        match cmd.p1 {
            0x80 => {
                if !matches!(cmd.data, [] | [ALG_EC_P256]) {
                    return Err(sw::INCORRECT_DATA);
                }
                self.require_pin()?;
                let key = KeyPair::generate().map_err(|_| sw::INTERNAL_ERROR)?;
                let der = key.to_der().map_err(|_| sw::INTERNAL_ERROR)?;
                let mut next = self.state.clone();
                let s = next.slot_mut(slot);
                s.key = Some(hex::encode(der));
                // The old certificate certified the old key.
                s.cert = None;
                self.commit(next)?;
                public_key_template(&key)
            }
            0x81 => {
                if !cmd.data.is_empty() {
                    return Err(sw::INCORRECT_DATA);
                }
                let key = self.state.key(slot).ok_or(sw::DATA_NOT_FOUND)?;
                public_key_template(&key)
            }
            _ => Err(sw::INCORRECT_P1P2),
        }
    }

    /// MANAGE SECURITY ENVIRONMENT: SET for digital signature (P1=41, P2=B6): the key
    /// reference `84 01 slot` and optionally the algorithm `80 01 01`.
    fn manage_security_environment(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1 != 0x41 || cmd.p2 != 0xB6 {
            return Err(sw::INCORRECT_P1P2);
        }
        self.session.signing_key = None;
        let mut slot = None;
        let mut rest = cmd.data;
        while !rest.is_empty() {
            let (tag, value, tail) = parse_simple_tlv(rest).ok_or(sw::INCORRECT_DATA)?;
            match (tag, value) {
                (0x84, [r]) => slot = Some(Slot::from_ref(*r).ok_or(sw::DATA_NOT_FOUND)?),
                (0x80, [ALG_EC_P256]) => {}
                _ => return Err(sw::INCORRECT_DATA),
            }
            rest = tail;
        }
        self.session.signing_key = Some(slot.ok_or(sw::INCORRECT_DATA)?);
        Ok(Vec::new())
    }

    /// PSO: COMPUTE DIGITAL SIGNATURE of a hash with the key set by MSE.
    fn compute_signature(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1 != 0x9E || cmd.p2 != 0x9A {
            return Err(sw::INCORRECT_P1P2);
        }
        self.require_pin()?;
        let slot = self
            .session
            .signing_key
            .ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
        if !(20..=64).contains(&cmd.data.len()) {
            return Err(sw::INCORRECT_DATA);
        }
        let key = self.state.key(slot).ok_or(sw::DATA_NOT_FOUND)?;
        key.sign_hash(cmd.data).map_err(|_| sw::INTERNAL_ERROR)
    }

    /// PUT DATA of a certificate, in a chain committed by its last command.
    fn put_data(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1 != P1_CERT {
            self.session.chain = None;
            return Err(sw::INCORRECT_P1P2);
        }
        let Some(slot) = Slot::from_ref(cmd.p2) else {
            self.session.chain = None;
            return Err(sw::INCORRECT_P1P2);
        };
        if let Err(sw) = self.require_pin() {
            self.session.chain = None;
            return Err(sw);
        }
        if self.state.slot(slot).key.is_none() {
            self.session.chain = None;
            return Err(sw::DATA_NOT_FOUND);
        }
        let mut chain = self.session.chain.take().unwrap_or(Chain {
            p1p2: cmd.p1p2(),
            data: Vec::new(),
        });
        if chain.data.len() + cmd.data.len() > MAX_CERT_LEN {
            return Err(sw::NOT_ENOUGH_MEMORY);
        }
        chain.data.extend_from_slice(cmd.data);
        if cmd.cla & CLA_CHAINING != 0 {
            self.session.chain = Some(chain);
            return Ok(Vec::new());
        }
        let object = chain.data;
        if !object.is_empty() && !is_one_der_sequence(&object) {
            return Err(sw::INCORRECT_DATA);
        }
        let mut next = self.state.clone();
        next.slot_mut(slot).cert = (!object.is_empty()).then(|| hex::encode(&object));
        self.commit(next)?;
        Ok(Vec::new())
    }

    fn get_response(&mut self, cmd: &Command<'_>) -> Answer {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Err(sw::INCORRECT_P1P2);
        }
        if self.session.pending.is_empty() {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        Ok(std::mem::take(&mut self.session.pending))
    }

    fn require_pin(&self) -> Result<(), Sw> {
        if self.state.pin_tries_left == 0 {
            return Err(sw::PIN_BLOCKED);
        }
        if !self.session.pin_verified {
            return Err(sw::SECURITY_NOT_SATISFIED);
        }
        Ok(())
    }

    /// Stores the next state, and only then makes it the one in force.
    fn commit(&mut self, next: CardState) -> Result<(), Sw> {
        self.store.save(&next).map_err(|_| sw::MEMORY_FAILURE)?;
        self.state = next;
        Ok(())
    }
}

/// Inter-industry class only: no secure messaging, basic channel, chaining bit allowed.
fn check_class(cla: u8) -> Result<(), Sw> {
    if cla & !(CLA_CHAINING | 0x0F) != 0 {
        return Err(sw::CLA_NOT_SUPPORTED);
    }
    if cla & 0x0C != 0 {
        return Err(sw::SM_NOT_SUPPORTED);
    }
    if cla & 0x03 != 0 {
        return Err(sw::CHANNEL_NOT_SUPPORTED);
    }
    Ok(())
}

/// `7F49 { 06 P-256, 86 04‖X‖Y }`.
fn public_key_template(key: &KeyPair) -> Answer {
    let point = key.public_point().map_err(|_| sw::INTERNAL_ERROR)?;
    let mut inner = P256_OID.to_vec();
    inner.extend(tlv(0x86, &point));
    let mut out = vec![0x7F, 0x49];
    push_len(&mut out, inner.len());
    out.extend(inner);
    Ok(out)
}

/// A BER-TLV with a one-byte tag.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
}

/// One TLV with a one-byte tag and a one-byte length, as in the MSE template.
fn parse_simple_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let [tag, len, rest @ ..] = input else {
        return None;
    };
    let len = usize::from(*len);
    (len < 0x80 && rest.len() >= len).then(|| (*tag, &rest[..len], &rest[len..]))
}

/// The object is exactly one DER SEQUENCE (tag 30, definite length covering the rest): enough
/// to refuse a truncated or padded certificate, without parsing X.509 on the card.
fn is_one_der_sequence(object: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = object else {
        return false;
    };
    let (len, body) = match *first {
        n @ 0..=0x7F => (usize::from(n), rest),
        0x81 => match rest {
            [n, body @ ..] if *n >= 0x80 => (usize::from(*n), body),
            _ => return false,
        },
        0x82 => match rest {
            [hi, lo, body @ ..] if *hi != 0 => (usize::from(u16::from_be_bytes([*hi, *lo])), body),
            _ => return false,
        },
        _ => return false,
    };
    body.len() == len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::CardKind;
    use crate::state::MemoryStore;

    fn card(kind: CardKind) -> Applet<MemoryStore> {
        let state = CardState::personalise(kind, b"1234", Some("SERIAL-1")).unwrap();
        Applet::new(state, MemoryStore::default())
    }

    fn send(card: &mut Applet<MemoryStore>, apdu: &[u8]) -> (Vec<u8>, u16) {
        let mut r = card.process(apdu);
        let sw = r.split_off(r.len() - 2);
        (r, u16::from_be_bytes([sw[0], sw[1]]))
    }

    fn select(card: &mut Applet<MemoryStore>, kind: CardKind) -> u16 {
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, kind.aid().len() as u8];
        apdu.extend_from_slice(kind.aid());
        apdu.push(0);
        send(card, &apdu).1
    }

    fn verify(card: &mut Applet<MemoryStore>, pin: &[u8]) -> u16 {
        let mut apdu = vec![0x00, 0x20, 0x00, 0x81, pin.len() as u8];
        apdu.extend_from_slice(pin);
        send(card, &apdu).1
    }

    #[test]
    fn each_applet_answers_only_to_its_own_aid() {
        let mut id = card(CardKind::IdCard);
        assert_eq!(select(&mut id, CardKind::Sim), 0x6A82);
        assert_eq!(send(&mut id, &[0, 0xCA, 1, 0, 0]).1, 0x6985);
        assert_eq!(select(&mut id, CardKind::IdCard), 0x9000);
        let (info, sw) = send(&mut id, &[0, 0xCA, 1, 0, 0]);
        assert_eq!(sw, 0x9000);
        assert_eq!(&info[..3], &[0x80, 0x01, 0x01]);
        let mut sim = card(CardKind::Sim);
        assert_eq!(select(&mut sim, CardKind::IdCard), 0x6A82);
        assert_eq!(select(&mut sim, CardKind::Sim), 0x9000);
    }

    #[test]
    fn pin_counter_and_block() {
        let mut c = card(CardKind::IdCard);
        select(&mut c, CardKind::IdCard);
        assert_eq!(send(&mut c, &[0, 0x20, 0, 0x81]).1, 0x63C3);
        assert_eq!(verify(&mut c, b"0000"), 0x63C2);
        assert_eq!(verify(&mut c, b"1234"), 0x9000);
        assert_eq!(send(&mut c, &[0, 0x20, 0, 0x81]).1, 0x9000);
        assert_eq!(verify(&mut c, b"0000"), 0x63C2);
        assert_eq!(verify(&mut c, b"0000"), 0x63C1);
        assert_eq!(verify(&mut c, b"0000"), 0x63C0);
        assert_eq!(verify(&mut c, b"1234"), 0x6983);
        assert_eq!(send(&mut c, &[0, 0x47, 0x80, 0x01]).1, 0x6983);
        assert_eq!(c.store().saved.as_ref().unwrap().pin_tries_left, 0);
        // A wrong-length PIN costs no try.
        let mut c = card(CardKind::IdCard);
        select(&mut c, CardKind::IdCard);
        assert_eq!(verify(&mut c, b"12"), 0x6A80);
        assert_eq!(send(&mut c, &[0, 0x20, 0, 0x81]).1, 0x63C3);
    }

    #[test]
    fn a_failed_store_changes_nothing() {
        let mut c = card(CardKind::IdCard);
        select(&mut c, CardKind::IdCard);
        c.store_mut().fail = true;
        assert_eq!(verify(&mut c, b"0000"), 0x6581);
        assert_eq!(c.state().pin_tries_left, 3);
        c.store_mut().fail = false;
        assert_eq!(verify(&mut c, b"1234"), 0x9000);
        c.store_mut().fail = true;
        assert_eq!(send(&mut c, &[0, 0x47, 0x80, 0x01, 0]).1, 0x6581);
        assert!(c.state().auth.key.is_none());
    }

    #[test]
    fn keygen_sign_and_certificate_chain() {
        let mut c = card(CardKind::Sim);
        select(&mut c, CardKind::Sim);
        assert_eq!(send(&mut c, &[0, 0x47, 0x80, 0x01, 0]).1, 0x6982);
        verify(&mut c, b"1234");
        let (pk, sw) = send(&mut c, &[0, 0x47, 0x80, 0x01, 0]);
        assert_eq!(sw, 0x9000);
        assert_eq!(&pk[..2], &[0x7F, 0x49]);
        assert_eq!(send(&mut c, &[0, 0x47, 0x81, 0x01, 0]).0, pk);
        assert_eq!(send(&mut c, &[0, 0x47, 0x81, 0x02, 0]).1, 0x6A88);

        // Signature needs MSE first.
        let mut pso = vec![0, 0x2A, 0x9E, 0x9A, 32];
        pso.extend([7u8; 32]);
        pso.push(0);
        assert_eq!(send(&mut c, &pso).1, 0x6985);
        assert_eq!(
            send(&mut c, &[0, 0x22, 0x41, 0xB6, 3, 0x84, 1, 1]).1,
            0x9000
        );
        let (sig, sw) = send(&mut c, &pso);
        assert_eq!((sig.len(), sw), (64, 0x9000));

        // A 600-byte "certificate" in three chained chunks, read back through GET RESPONSE.
        let mut cert = vec![0x30, 0x82, 0x02, 0x54];
        cert.extend((0..596).map(|i| i as u8));
        let chunks: Vec<&[u8]> = cert.chunks(255).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let cla = if i + 1 < chunks.len() { 0x10 } else { 0x00 };
            let mut apdu = vec![cla, 0xDB, 0xC1, 0x01, chunk.len() as u8];
            apdu.extend_from_slice(chunk);
            assert_eq!(send(&mut c, &apdu).1, 0x9000);
        }
        let (mut got, mut sw) = send(&mut c, &[0, 0xCA, 0xC1, 0x01, 0]);
        while sw >> 8 == 0x61 {
            let (more, next) = send(&mut c, &[0, 0xC0, 0, 0, (sw & 0xFF) as u8]);
            got.extend(more);
            sw = next;
        }
        assert_eq!((got, sw), (cert.clone(), 0x9000));

        // A chain broken by another command leaves the certificate as it was.
        let mut first = vec![0x10, 0xDB, 0xC1, 0x01, 4];
        first.extend([0x30, 0x02, 0x05, 0x00]);
        assert_eq!(send(&mut c, &first).1, 0x9000);
        send(&mut c, &[0, 0xCA, 1, 0, 0]);
        assert_eq!(send(&mut c, &[0, 0xDB, 0xC1, 0x01, 1, 0xFF]).1, 0x6A80);
        assert_eq!(c.state().cert(Slot::Auth), Some(cert));

        // A new key drops the old certificate.
        send(&mut c, &[0, 0x47, 0x80, 0x01, 0]);
        assert_eq!(send(&mut c, &[0, 0xCA, 0xC1, 0x01, 0]).1, 0x6A88);
    }

    #[test]
    fn der_sequence_check() {
        assert!(is_one_der_sequence(&[0x30, 0x00]));
        assert!(is_one_der_sequence(&[0x30, 0x02, 5, 0]));
        assert!(!is_one_der_sequence(&[0x30, 0x03, 5, 0]));
        assert!(!is_one_der_sequence(&[0x30, 0x81, 0x02, 5, 0]));
        assert!(!is_one_der_sequence(&[0x31, 0x00]));
        assert!(!is_one_der_sequence(&[]));
    }

    /// Status words this applet documents.
    fn documented(sw: u16) -> bool {
        sw == 0x9000
            || sw >> 8 == 0x61
            || (0x63C0..=0x63CF).contains(&sw)
            || [
                0x6581, 0x6700, 0x6881, 0x6882, 0x6883, 0x6884, 0x6982, 0x6983, 0x6985, 0x6A80,
                0x6A82, 0x6A84, 0x6A86, 0x6A88, 0x6D00, 0x6E00, 0x6F00,
            ]
            .contains(&sw)
    }

    /// Valid commands to mutate: every instruction of the applet.
    fn seeds() -> Vec<Vec<u8>> {
        let mut select = vec![0x00, 0xA4, 0x04, 0x00, 9];
        select.extend_from_slice(CardKind::IdCard.aid());
        let mut pso = vec![0x00, 0x2A, 0x9E, 0x9A, 32];
        pso.extend([5u8; 32]);
        vec![
            select,
            vec![0x00, 0xCA, 0x01, 0x00, 0x00],
            vec![0x00, 0x20, 0x00, 0x81, 4, b'1', b'2', b'3', b'4'],
            vec![0x00, 0x20, 0x00, 0x81, 4, b'0', b'0', b'0', b'0'],
            vec![0x00, 0x47, 0x80, 0x01, 0x00],
            vec![0x00, 0x47, 0x81, 0x02, 0x00],
            vec![0x00, 0x22, 0x41, 0xB6, 3, 0x84, 0x01, 0x01],
            pso,
            vec![0x10, 0xDB, 0xC1, 0x01, 3, 0x30, 0x03, 0x02],
            vec![0x00, 0xDB, 0xC1, 0x01, 3, 0x01, 0x01, 0x00],
            vec![0x00, 0xCA, 0xC1, 0x01, 0x00],
            vec![0x00, 0xC0, 0x00, 0x00, 0x10],
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever arrives, mutated commands or noise, the card answers a documented status
        /// word, never panics, never gains PIN tries without the right PIN, and never stores a
        /// certificate that is not one DER SEQUENCE.
        #[test]
        fn any_command_sequence_is_answered(
            steps in proptest::collection::vec(
                (0usize..12, proptest::collection::vec((0usize..40, proptest::prelude::any::<u8>()), 0..4),
                 0usize..3, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)),
                1..25),
        ) {
            let seeds = seeds();
            let mut c = card(CardKind::IdCard);
            for (seed, edits, how, noise) in steps {
                let apdu = match how {
                    0 => noise,
                    _ => {
                        let mut a = seeds[seed].clone();
                        for (at, byte) in &edits {
                            if let Some(b) = a.get_mut(*at) {
                                *b = *byte;
                            }
                        }
                        if how == 2 {
                            a.truncate(edits.first().map_or(0, |e| e.0));
                        }
                        a
                    }
                };
                let right_pin = apdu.get(1) == Some(&0x20) && apdu.get(5..9) == Some(&b"1234"[..]);
                let before = c.state().pin_tries_left;
                let answer = c.process(&apdu);
                proptest::prop_assert!(answer.len() >= 2);
                let sw = u16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]]);
                proptest::prop_assert!(documented(sw), "SW {sw:04X} for {apdu:02X?}");
                proptest::prop_assert!(c.state().pin_tries_left <= before || right_pin);
                for slot in Slot::ALL {
                    if let Some(cert) = c.state().cert(slot) {
                        proptest::prop_assert!(is_one_der_sequence(&cert));
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_commands_get_status_words() {
        let mut c = card(CardKind::IdCard);
        select(&mut c, CardKind::IdCard);
        for (apdu, sw) in [
            (&[][..], 0x6700),
            (&[0x00, 0xCA], 0x6700),
            (&[0x80, 0xCA, 1, 0, 0], 0x6E00),
            (&[0x0C, 0xCA, 1, 0, 0], 0x6882),
            (&[0x01, 0xCA, 1, 0, 0], 0x6881),
            (&[0x10, 0xCA, 1, 0, 0], 0x6884),
            (&[0x00, 0x99, 1, 0, 0], 0x6D00),
            (&[0x00, 0xC0, 0, 0, 0], 0x6985),
            (&[0x00, 0x22, 0x41, 0xB6, 3, 0x84, 2, 1], 0x6A80),
            (&[0x00, 0x22, 0x41, 0xB6, 3, 0x84, 1, 9], 0x6A88),
            (&[0x00, 0x47, 0x80, 0x03], 0x6A86),
        ] {
            assert_eq!(send(&mut c, apdu).1, sw, "{apdu:02X?}");
        }
    }
}
