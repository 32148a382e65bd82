//! The certificate report of the NUC RK as a document: a PDF in Kazakh and Russian.
//!
//! `GetCertificateReport` answers with the list of a holder's certificates (or of a legal
//! entity's employees') as a PDF that a person reads and a relying party keeps, with a detached
//! CMS signature by a NUC system key beside it. This crate owns the document itself:
//!
//! - **the layout** (`layout`): A4 pages, the title in both languages, the holder, the
//!   identifier and the time of the report, then one block of labelled rows per certificate,
//!   moved whole to the next page when it does not fit, and on every page a footer with the
//!   page number and the serial of the signing NUC key. Every field wraps to its column or is
//!   cut with a visible "…": nothing is drawn off the page.
//! - **the words** (`words`): every label, state, key storage and revocation reason, in Kazakh
//!   and in Russian.
//! - **the embedded font** (`font`): DejaVu Sans, which has the Kazakh letters; krilla embeds a
//!   subset of it with a ToUnicode map, so `pdftotext` gives the names back letter for letter.
//!   A character the font cannot draw, or a control or bidirectional formatting character, is
//!   drawn as a visible U+FFFD, never dropped silently.
//!
//! What it must never do: **read a clock** (the time of the report is
//! [`CertificateReport::generated_at`], also the PDF's creation date), **touch storage or the
//! network** (data in, bytes out; the only file is the font, compiled in), **sign anything**
//! (the caller signs the bytes it returns), or put anything random in the PDF: the same report
//! renders to the same bytes, so a signed report can be rendered again and compared byte for
//! byte.

mod font;
mod layout;
mod pdf;
mod time;
mod words;

/// What a report is about and what it lists. The caller words the free-text fields; the
/// report prints them as given (wrapped to the page), and words the enums in Kazakh and
/// Russian itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateReport {
    /// Who the report is about, as the registry names them (Cyrillic/Kazakh letters).
    pub holder_name: String,
    /// "IIN 900101300123" or "BIN 123456789012": shown as is.
    pub subject_id: String,
    /// Unix seconds, UTC: the time printed on the report and the PDF's creation date.
    pub generated_at: i64,
    /// Serial hex of the NUC key that signs the report (printed in the footer), may be empty.
    pub signed_by: String,
    pub entries: Vec<ReportEntry>,
}

/// One certificate of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEntry {
    /// For a BIN report each employee's name; else the holder.
    pub holder_name: String,
    /// The certificate profile, e.g. "individual-auth", printed as is.
    pub profile: String,
    pub serial_hex: String,
    /// Unix seconds, UTC.
    pub not_before: i64,
    /// Unix seconds, UTC.
    pub not_after: i64,
    pub state: EntryState,
    /// Already worded by the caller, e.g. "ЦОН 001, оператор 1a2b…" or "remote renewal of 3f…".
    pub issued_how: String,
    pub key_storage: KeyStorageWord,
    pub revocation: Option<RevocationLine>,
}

/// The state of a certificate at `generated_at`, printed in Kazakh and Russian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    Valid,
    Expired,
    Revoked,
}

/// Where the certificate's key is kept, printed in Kazakh and Russian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStorageWord {
    File,
    IdCard,
    SimCard,
    Token,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationLine {
    /// Unix seconds, UTC.
    pub at: i64,
    /// The RFC 5280 CRLReason name, `keyCompromise` or the service's `key-compromise`: printed
    /// as is, followed by its Kazakh and Russian words when it is one of the RFC's.
    pub reason: String,
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `generated_at` has no four-digit year: it cannot be the PDF's creation date.
    #[error("generated_at {0} is outside the years 0000-9999")]
    TimeOutOfRange(i64),
    /// The embedded font could not be read (a broken build, never an input).
    #[error("{0}")]
    Font(String),
    /// krilla refused to write the document.
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
}

/// Renders `report` as a PDF: A4, Kazakh and Russian, the embedded font subset inside it.
/// Pure and deterministic: the same report gives the same bytes.
pub fn render_pdf(report: &CertificateReport) -> Result<Vec<u8>, ReportError> {
    let fonts = font::Fonts::load().map_err(|e| ReportError::Font(e.to_string()))?;
    let pages = layout::pages(&fonts, report);
    pdf::draw(&fonts, &pages, report.generated_at)
}
