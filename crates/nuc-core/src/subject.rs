//! The subject of a certificate, as the registry (or the administrator) states it.
//!
//! The PKCS#10 request of the applicant never contributes to it (SPEC §4): the CA builds the
//! distinguished name from this structure alone.

use crate::{Bin, Iin};

/// A legal entity the subject acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalEntity {
    pub bin: Bin,
    pub name: String,
}

/// Who the certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectInfo {
    /// Present for people; absent for system (TLS) and OCSP-signer certificates.
    pub iin: Option<Iin>,
    pub surname: Option<String>,
    pub name: Option<String>,
    pub patronymic: Option<String>,
    pub organization: Option<LegalEntity>,
    pub email: Option<String>,
    /// For system certificates: the information system's name, used as CN.
    pub common_name: Option<String>,
}

impl SubjectInfo {
    /// `CN` as NUC RK writes it: "SURNAME NAME" for people, the given name for systems.
    pub fn common_name(&self) -> Option<String> {
        if let Some(cn) = &self.common_name {
            return Some(cn.clone());
        }
        match (&self.surname, &self.name) {
            (Some(s), Some(n)) => Some(format!("{s} {n}")),
            (Some(s), None) => Some(s.clone()),
            (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        }
    }
}
