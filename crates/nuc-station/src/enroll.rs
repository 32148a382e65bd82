//! F4 at the counter, from the operator's side: [`enroll`] runs the whole issuance onto the
//! card in the reader; [`write_issued`] finishes one whose certificates could not be written
//! (the card was pulled out); [`read_card`] shows what a card holds. The same steps onto the
//! applicant's USB token are in [`crate::token`], which shares the registry and issuance steps
//! with this module.
//!
//! The order of the steps keeps every failure recoverable:
//! - the registry is asked before the card is touched: an applicant the registry does not know
//!   leaves the card exactly as it was;
//! - the PIN is verified before anything is generated: a wrong or blocked PIN changes nothing
//!   but the card's own retry counter;
//! - keys generated on the card without a registered request are simply replaced by the next
//!   enrollment; a registered request that is never confirmed expires at the NUC;
//! - once the NUC has issued, the certificates are on record there: a card pulled out during
//!   the write is finished with [`write_issued`], which the error message names.

use std::time::Duration;

use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::{
    DecideApplicationRequest, GetIssuedCertificatesRequest, IssuedCertificate, IssuedCertificates,
    KeyStorage, LookupApplicantRequest, RegisterAtCounterRequest, RequestState,
};
use nuc_card::{Card, CardKind, KeySlot, Pcsc, Pin, WriteOutcome};
use tonic::transport::Channel;

use crate::StationError;
use crate::operator::Operator;
use crate::progress::Progress;

/// What the operator entered for one applicant.
pub struct Applicant {
    pub iin: String,
    /// For a legal entity's employee.
    pub bin: Option<String>,
    pub email: String,
}

/// Where to find the card.
pub struct CardPlace {
    /// A reader's name; `None`: the first reader that holds a card.
    pub reader: Option<String>,
    /// How long to wait for the card.
    pub wait: Duration,
}

/// What an enrollment produced.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub request_number: String,
    pub card_kind: CardKind,
    pub card_serial: String,
    /// (profile, serial hex, DER) of the certificates now on the card.
    pub certificates: Vec<(String, String, Vec<u8>)>,
    /// APDUs exchanged with the card in all, and before the certificates were written: where
    /// the card's time goes, and where a test pulls the card out to cut the write.
    pub apdus: u64,
    pub apdus_before_write: u64,
}

/// The steps of [`enroll`], for the progress counter. Their keys, in order: `registry`,
/// `card`, `pin`, `keys`, `register`, `sign`, `issue`, `write`.
pub const ENROLL_STEPS: usize = 8;

/// The steps of [`write_issued`]: `fetch`, `card` (with the PIN), `write`.
pub const WRITE_STEPS: usize = 3;

/// Who signs the operator's confirmation of the request the enrollment just registered: the
/// operator's token, directly (the command line) or through the console's live session.
pub trait Confirmer {
    /// The confirmation of `request_number`, signed, and the serial of the operator
    /// certificate that verifies it.
    fn confirmation(&self, request_number: &str) -> Result<(Vec<u8>, String), StationError>;
}

impl Confirmer for Operator {
    fn confirmation(&self, request_number: &str) -> Result<(Vec<u8>, String), StationError> {
        Ok((
            self.decision(request_number, true, "")?,
            self.serial_hex.clone(),
        ))
    }
}

fn storage_of(kind: CardKind) -> KeyStorage {
    match kind {
        CardKind::IdCard => KeyStorage::IdCard,
        CardKind::Sim => KeyStorage::SimCard,
    }
}

fn card_label(kind: CardKind) -> &'static str {
    match kind {
        CardKind::IdCard => "ID card",
        CardKind::Sim => "SIM card",
    }
}

/// Waits for the card and connects to its applet. A card that is reset or leaves while it is
/// being connected (a hand still settling it in the reader) is waited for again, within the
/// same time allowance.
fn connect_card(pcsc: &Pcsc, place: &CardPlace) -> Result<Card, StationError> {
    const STEP: &str = "card in the reader";
    let deadline = std::time::Instant::now() + place.wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let reader = pcsc
            .wait_for_card(place.reader.as_deref(), left)
            .map_err(StationError::card(STEP))?;
        match pcsc.connect(&reader) {
            Err(e) if e.is_removal() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other.map_err(StationError::card(STEP)),
        }
    }
}

/// The whole of F4 for one applicant: see the module documentation for the order.
#[allow(clippy::too_many_arguments)]
pub async fn enroll(
    nuc: &mut OperatorServiceClient<Channel>,
    confirmer: &dyn Confirmer,
    pcsc: &Pcsc,
    place: &CardPlace,
    applicant: &Applicant,
    pin: &Pin,
    idempotency_key: &str,
    progress: &mut Progress,
) -> Result<Enrolled, StationError> {
    lookup(nuc, applicant, progress).await?;

    progress.start("card", "card: waiting for the card");
    let mut card = connect_card(pcsc, place)?;
    let info = card.info().map_err(StationError::card("read the card"))?;
    progress.done(&format!(
        "card: {} {} in {:?}",
        card_label(info.kind),
        info.serial,
        card.reader()
    ));

    progress.start("pin", "PIN: the applicant enters the PIN");
    card.verify_pin(pin)
        .map_err(StationError::card("PIN verification"))?;
    progress.done("PIN: accepted");

    progress.start("keys", "keys: generating AUTH and SIGN on the card");
    let subject =
        nuc_card::csr::minimal_subject(&format!("NUC {} {}", card_label(info.kind), info.serial))
            .map_err(StationError::card("certification request"))?;
    let mut csrs = Vec::new();
    for slot in KeySlot::ALL {
        card.generate_key(slot)
            .map_err(StationError::card("key generation on the card"))?;
        csrs.push(
            card.certification_request(slot, &subject)
                .map_err(StationError::card(
                    "certification request signed by the card",
                ))?,
        );
    }
    progress.done("keys: AUTH and SIGN generated on the card, requests signed by the card");

    progress.start("register", "NUC: registering the request");
    let registered = nuc
        .register_at_counter(RegisterAtCounterRequest {
            idempotency_key: idempotency_key.into(),
            iin: applicant.iin.clone(),
            bin: applicant.bin.clone().unwrap_or_default(),
            email: applicant.email.clone(),
            auth_csr: csrs[0].clone(),
            sign_csr: csrs[1].clone(),
            key_storage: storage_of(info.kind) as i32,
            card_serial: info.serial.clone(),
        })
        .await
        .map_err(|s| StationError::from_status("registration", s))?
        .into_inner();
    let number = registered.request_number;
    progress.done(&format!("NUC: request {number} registered"));

    progress.start(
        "sign",
        "operator: signing the confirmation with the operator's token",
    );
    let (signed, operator_serial_hex) = confirmer.confirmation(&number)?;
    progress.done("operator: confirmation signed");

    let certificates =
        confirm_and_issue(nuc, &number, signed, operator_serial_hex, progress).await?;

    progress.start("write", "card: writing the certificates");
    let apdus_before_write = card.apdu_count().apdus;
    let written = write_to_card(&mut card, &number, &certificates).map_err(|e| match e {
        StationError::Card { step, source } if source.is_removal() => {
            StationError::WriteInterrupted {
                step,
                request: number.clone(),
                source,
            }
        }
        other => other,
    })?;
    progress.done("card: certificates written and read back");
    Ok(Enrolled {
        request_number: number,
        card_kind: info.kind,
        card_serial: info.serial,
        certificates: written,
        apdus: card.apdu_count().apdus,
        apdus_before_write,
    })
}

/// F4 step 2, before any device is touched: the applicant as the registry knows them, shown
/// for the operator to compare with the identity document.
pub(crate) async fn lookup(
    nuc: &mut OperatorServiceClient<Channel>,
    applicant: &Applicant,
    progress: &mut Progress,
) -> Result<(), StationError> {
    progress.start("registry", "registry: looking up the applicant");
    let found = nuc
        .lookup_applicant(LookupApplicantRequest {
            iin: applicant.iin.clone(),
            bin: applicant.bin.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| StationError::from_status("registry check", s))?
        .into_inner();
    progress.done(&format!(
        "registry: {} {}{} (IIN {}){}",
        found.surname,
        found.name,
        if found.patronymic.is_empty() {
            String::new()
        } else {
            format!(" {}", found.patronymic)
        },
        found.iin,
        if found.organization.is_empty() {
            String::new()
        } else {
            format!(", {} of {}", found.role, found.organization)
        }
    ));
    Ok(())
}

/// Sends the operator's signed confirmation of `number` and gives the certificates the NUC
/// issued.
pub(crate) async fn confirm_and_issue(
    nuc: &mut OperatorServiceClient<Channel>,
    number: &str,
    signed_decision: Vec<u8>,
    operator_serial_hex: String,
    progress: &mut Progress,
) -> Result<Vec<IssuedCertificate>, StationError> {
    progress.start("issue", "NUC: issuing");
    let decided = nuc
        .decide_application(DecideApplicationRequest {
            request_number: number.to_owned(),
            operator_serial_hex,
            signed_decision,
        })
        .await
        .map_err(|s| StationError::from_status("confirmation", s))?
        .into_inner();
    if decided.state != RequestState::Issued as i32 {
        return Err(StationError::Check {
            step: "confirmation",
            detail: format!("request {number} is in state {}, not issued", decided.state),
        });
    }
    progress.done(&format!(
        "NUC: issued {}",
        decided
            .certificates
            .iter()
            .map(|c| format!("{} {}", c.profile, c.serial_hex))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(decided.certificates)
}

/// The slot a certificate of `profile` goes to.
pub(crate) fn slot_of(profile: &str) -> Option<KeySlot> {
    if profile.ends_with("-auth") {
        Some(KeySlot::Auth)
    } else if profile.ends_with("-sign") {
        Some(KeySlot::Sign)
    } else {
        None
    }
}

/// A request is issued as a pair: AUTH and SIGN.
pub(crate) fn check_pair(number: &str, certs: &[IssuedCertificate]) -> Result<(), StationError> {
    if certs.len() != 2 {
        return Err(StationError::Check {
            step: "writing the certificates",
            detail: format!(
                "request {number} has {} certificates, not AUTH and SIGN",
                certs.len()
            ),
        });
    }
    Ok(())
}

/// Writes each certificate to its slot (a certificate already there is left alone) and checks
/// it back: the bytes on the card are the bytes issued, for the key in that slot.
fn write_to_card(
    card: &mut Card,
    number: &str,
    certs: &[IssuedCertificate],
) -> Result<Vec<(String, String, Vec<u8>)>, StationError> {
    const STEP: &str = "writing the certificates";
    check_pair(number, certs)?;
    let mut out = Vec::new();
    for c in certs {
        let slot = slot_of(&c.profile).ok_or_else(|| StationError::Check {
            step: STEP,
            detail: format!("certificate {} has profile {}", c.serial_hex, c.profile),
        })?;
        let outcome = card
            .write_certificate(slot, &c.der)
            .map_err(StationError::card(STEP))?;
        let back = card
            .check_certificate(slot)
            .map_err(StationError::card("reading the certificates back"))?;
        if back != c.der {
            return Err(StationError::Check {
                step: "reading the certificates back",
                detail: format!("the {slot} certificate on the card is not the one issued"),
            });
        }
        if outcome == WriteOutcome::AlreadyThere {
            eprintln!("      {slot}: already on the card");
        }
        out.push((c.profile.clone(), c.serial_hex.clone(), c.der.clone()));
    }
    Ok(out)
}

/// The `fetch` step of a write after the fact: the certificates of `request_number`, which must
/// be issued.
pub(crate) async fn fetch_issued(
    nuc: &mut OperatorServiceClient<Channel>,
    request_number: &str,
    progress: &mut Progress,
) -> Result<IssuedCertificates, StationError> {
    progress.start("fetch", "NUC: fetching the certificates");
    let issued = nuc
        .get_issued_certificates(GetIssuedCertificatesRequest {
            request_number: request_number.into(),
        })
        .await
        .map_err(|s| StationError::from_status("fetching the certificates", s))?
        .into_inner();
    if issued.state != RequestState::Issued as i32 {
        return Err(StationError::Check {
            step: "fetching the certificates",
            detail: format!(
                "request {request_number} is not issued (state {})",
                issued.state
            ),
        });
    }
    progress.done(&format!(
        "NUC: {} certificates of {request_number}",
        issued.certificates.len()
    ));
    Ok(issued)
}

/// Writes the certificates of an issued request onto the card in the reader: the end of an
/// enrollment whose card was pulled out. The card must hold the keys they certify.
pub async fn write_issued(
    nuc: &mut OperatorServiceClient<Channel>,
    pcsc: &Pcsc,
    place: &CardPlace,
    request_number: &str,
    pin: &Pin,
    progress: &mut Progress,
) -> Result<Enrolled, StationError> {
    let issued = fetch_issued(nuc, request_number, progress).await?;
    progress.start("card", "card: waiting for the card");
    let mut card = connect_card(pcsc, place)?;
    let info = card.info().map_err(StationError::card("read the card"))?;
    card.verify_pin(pin)
        .map_err(StationError::card("PIN verification"))?;
    progress.done(&format!("card: {} {}", card_label(info.kind), info.serial));
    progress.start("write", "card: writing the certificates");
    let apdus_before_write = card.apdu_count().apdus;
    let written = write_to_card(&mut card, request_number, &issued.certificates)?;
    progress.done("card: certificates written and read back");
    Ok(Enrolled {
        request_number: issued.request_number,
        card_kind: info.kind,
        card_serial: info.serial,
        certificates: written,
        apdus: card.apdu_count().apdus,
        apdus_before_write,
    })
}

/// What is on a card, read without the PIN.
#[derive(Debug, Clone)]
pub struct CardContents {
    pub info: nuc_card::CardInfo,
    /// (slot, certificate DER) for each slot holding one.
    pub certificates: Vec<(KeySlot, Vec<u8>)>,
}

pub fn read_card(pcsc: &Pcsc, place: &CardPlace) -> Result<CardContents, StationError> {
    let mut card = connect_card(pcsc, place)?;
    let info = card.info().map_err(StationError::card("read the card"))?;
    let mut certificates = Vec::new();
    for slot in KeySlot::ALL {
        if let Some(der) = card
            .read_certificate(slot)
            .map_err(StationError::card("read a certificate"))?
        {
            certificates.push((slot, der));
        }
    }
    Ok(CardContents { info, certificates })
}
