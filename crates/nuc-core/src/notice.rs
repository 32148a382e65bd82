//! A notice to an applicant or holder: what the outbox sends by e-mail.
//!
//! The RA decides when a notice is due and writes its text (from the template files of the
//! RA); storage keeps it in the outbox in the same transaction as the change it announces, so
//! a notice is never sent for a change that did not happen, nor lost for one that did.

crate::state::spelled! {
    /// Which event a notice announces.
    NoticeKind {
        /// F1 step 3: the application's number and the deadline to come to a CON.
        Application => "application",
        /// The operator refused the application.
        Refused => "refused",
        /// The certificates were issued; where to download them.
        Issued => "issued",
        /// A certificate was revoked.
        Revoked => "revoked",
        /// F2: a certificate of the holder signed a renewal; sent to the address on record for
        /// it, so that a holder whose key was stolen learns of the renewal.
        Renewal => "renewal",
        /// Certificates were issued in the holder's name: sent to the holder's address on
        /// record (the registry's, else that of their earlier certificates), on top of the
        /// applicant's own notice, so that keys issued to someone else are found out.
        IssuanceAlert => "issuance-alert",
    }
}

use std::fmt;

/// A notice ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The e-mail address.
    pub recipient: String,
    pub subject: String,
    pub body: String,
}
