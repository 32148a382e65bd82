//! The holder's report as the API gives it: the RA's report mapped to the listing of
//! `ListCertificates`, and worded for the PDF of `GetCertificateReport` with the report
//! signer's detached signature over it. Mapping only: what a report holds is the RA's, how a
//! PDF looks is nuc-report's, the key is the CA's.

use nuc_api::v1::*;

fn standing_of(s: nuc_ra::Standing) -> CertificateStanding {
    match s {
        nuc_ra::Standing::Valid => CertificateStanding::Valid,
        nuc_ra::Standing::Expired => CertificateStanding::Expired,
        nuc_ra::Standing::Revoked => CertificateStanding::Revoked,
    }
}

fn identification_of(i: Option<nuc_core::Identification>) -> IdentificationMethod {
    match i {
        Some(nuc_core::Identification::InPerson) => IdentificationMethod::InPerson,
        Some(nuc_core::Identification::Remote) => IdentificationMethod::Remote,
        Some(nuc_core::Identification::Organization) => IdentificationMethod::Organization,
        None => IdentificationMethod::Unspecified,
    }
}

/// The report as the API lists it.
pub(super) fn listing_of(r: nuc_ra::CertificateReport) -> ListCertificatesResponse {
    let certificates = r
        .certificates
        .into_iter()
        .map(|c| {
            let mut hr_serial_hex = String::new();
            let (issued, con, operator_serial_hex, renewed_from) = match c.issued {
                nuc_ra::IssuedHow::AtCon {
                    con,
                    operator_serial,
                } => (IssuanceChannel::AtCon, con, operator_serial, String::new()),
                nuc_ra::IssuedHow::RemoteRenewal { renewed_from } => (
                    IssuanceChannel::RemoteRenewal,
                    String::new(),
                    String::new(),
                    renewed_from,
                ),
                nuc_ra::IssuedHow::Online => (
                    IssuanceChannel::Online,
                    String::new(),
                    String::new(),
                    String::new(),
                ),
                nuc_ra::IssuedHow::ByEmployer { hr_serial } => {
                    hr_serial_hex = hr_serial;
                    (
                        IssuanceChannel::ByEmployer,
                        String::new(),
                        String::new(),
                        String::new(),
                    )
                }
                nuc_ra::IssuedHow::ByAdministrator => (
                    IssuanceChannel::ByAdministrator,
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            };
            ReportedCertificate {
                serial_hex: c.serial,
                profile: c.profile,
                holder_iin: c.holder_iin.unwrap_or_default(),
                holder_name: c.holder_name,
                not_before: c.not_before,
                not_after: c.not_after,
                standing: standing_of(c.standing) as i32,
                request_number: c.request_number.unwrap_or_default(),
                issued: issued as i32,
                con,
                operator_serial_hex,
                renewed_from,
                identification: identification_of(c.identification) as i32,
                key_storage: super::operator::key_storage_of(c.key_storage) as i32,
                revocation: c.revocation.map(|r| ReportedRevocation {
                    revoked_at: r.revoked_at,
                    reason: r.reason.code() as i32,
                    invalidity_date: r.invalidity_date.unwrap_or(0),
                }),
                hr_serial_hex,
            }
        })
        .collect();
    ListCertificatesResponse {
        iin: r.iin,
        bin: r.bin.unwrap_or_default(),
        name: r.name,
        generated_at: r.generated_at,
        certificates,
    }
}

/// The PDF of `report` with `signed_by` (the report signer's serial) in its footer, and the
/// report signer's detached CMS over it. Should the signer in force have been renewed since
/// `signed_by` was read, the PDF is rendered again with the serial that did sign, and signed
/// again: the footer always names the key of the signature that comes with the document.
pub(super) fn signed_document(
    report: &nuc_ra::CertificateReport,
    mut signed_by: String,
    reports: &dyn nuc_ca::ReportSigner,
) -> Result<(Vec<u8>, nuc_ca::SignedReport), nuc_ra::RaError> {
    for _ in 0..2 {
        let pdf = nuc_report::render_pdf(&document_of(report, &signed_by)).map_err(|e| {
            nuc_ra::RaError::new(
                nuc_core::ReasonCode::Internal,
                format!("the report's PDF could not be rendered: {e}"),
            )
        })?;
        let signed = reports.sign_report(&pdf)?;
        if signed.signer_serial_hex == signed_by {
            return Ok((pdf, signed));
        }
        signed_by = signed.signer_serial_hex;
    }
    Err(nuc_ra::RaError::new(
        nuc_core::ReasonCode::Unavailable,
        "the report signer changed twice while the report was being signed: ask again",
    ))
}

/// The RA's report as the PDF words it (Kazakh / Russian where the caller words a field).
fn document_of(r: &nuc_ra::CertificateReport, signed_by: &str) -> nuc_report::CertificateReport {
    use nuc_report::{EntryState, KeyStorageWord, ReportEntry, RevocationLine};
    let entries = r
        .certificates
        .iter()
        .map(|c| ReportEntry {
            holder_name: c.holder_name.clone(),
            profile: c.profile.clone(),
            serial_hex: c.serial.clone(),
            not_before: c.not_before,
            not_after: c.not_after,
            state: match c.standing {
                nuc_ra::Standing::Valid => EntryState::Valid,
                nuc_ra::Standing::Expired => EntryState::Expired,
                nuc_ra::Standing::Revoked => EntryState::Revoked,
            },
            issued_how: issued_how(&c.issued),
            key_storage: match c.key_storage {
                nuc_core::KeyStorage::File => KeyStorageWord::File,
                nuc_core::KeyStorage::IdCard => KeyStorageWord::IdCard,
                nuc_core::KeyStorage::SimCard => KeyStorageWord::SimCard,
                nuc_core::KeyStorage::Token => KeyStorageWord::Token,
            },
            revocation: c.revocation.as_ref().map(|v| RevocationLine {
                at: v.revoked_at,
                reason: v.reason.rfc_name().into(),
            }),
        })
        .collect();
    nuc_report::CertificateReport {
        holder_name: r.name.clone(),
        subject_id: match &r.bin {
            Some(bin) => format!("БСН / БИН {bin}"),
            None => format!("ЖСН / ИИН {}", r.iin),
        },
        generated_at: r.generated_at,
        signed_by: signed_by.into(),
        entries,
    }
}

/// How a certificate came to be issued, in a few words of Kazakh / Russian.
fn issued_how(how: &nuc_ra::IssuedHow) -> String {
    match how {
        nuc_ra::IssuedHow::AtCon {
            con,
            operator_serial,
        } if con.is_empty() => format!("ХҚКО-да / в ЦОН, оператор {operator_serial}"),
        nuc_ra::IssuedHow::AtCon {
            con,
            operator_serial,
        } => format!("ХҚКО-да / в ЦОН: {con}, оператор {operator_serial}"),
        nuc_ra::IssuedHow::RemoteRenewal { renewed_from } => {
            format!("қашықтан қайта шығару / удалённый перевыпуск: {renewed_from}")
        }
        nuc_ra::IssuedHow::Online => "онлайн, ХҚКО-сыз / онлайн, без ЦОН".into(),
        nuc_ra::IssuedHow::ByAdministrator => "ҰКО әкімшісі / администратор НУЦ".into(),
        nuc_ra::IssuedHow::ByEmployer { hr_serial } => {
            format!("ұйымның кадр қызметі / кадровая служба организации: {hr_serial}")
        }
    }
}
