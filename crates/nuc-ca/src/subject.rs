//! From the registry's facts to a distinguished name, per profile kind (SPEC §4).

use const_oid::db::rfc4519;
use nuc_core::SubjectInfo;

use crate::error::CaError;
use crate::policy::{Profile, ProfileKind};
use crate::tbs::{Dn, DnValue};

/// X.520 upper bound for name attributes (ub-name, ub-common-name).
const UB_NAME: usize = 64;

fn text(field: &str, value: &Option<String>, required: bool) -> Result<Option<String>, CaError> {
    match value.as_deref().map(str::trim) {
        None | Some("") if required => Err(CaError::invalid(field, "is required by this profile")),
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > UB_NAME => Err(CaError::invalid(
            field,
            format!("is longer than {UB_NAME} characters"),
        )),
        Some(v) if v.chars().any(char::is_control) => {
            Err(CaError::invalid(field, "contains control characters"))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn absent(field: &str, present: bool, profile: &Profile) -> Result<(), CaError> {
    if present {
        return Err(CaError::invalid(
            field,
            format!("is not used by profile {}", profile.name),
        ));
    }
    Ok(())
}

/// Checks the e-mail address enough to put it in an rfc822Name: ASCII, one `@`, no spaces.
pub fn check_email(email: &str) -> Result<(), CaError> {
    let ok = email.is_ascii()
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(CaError::invalid(
            "email",
            format!("{email:?} is not an e-mail address"),
        ))
    }
}

/// Validates the subject for the profile and lays out its DN.
pub fn distinguished_name(profile: &Profile, s: &SubjectInfo) -> Result<Dn, CaError> {
    if let Some(email) = &s.email {
        check_email(email)?;
    }
    let mut dn: Dn = Vec::new();
    match profile.kind {
        ProfileKind::Individual | ProfileKind::Legal => {
            let iin = s
                .iin
                .as_ref()
                .ok_or_else(|| CaError::invalid("iin", "is required by this profile"))?;
            let surname = text("surname", &s.surname, true)?.expect("required");
            let name = text("name", &s.name, true)?.expect("required");
            let patronymic = text("patronymic", &s.patronymic, false)?;
            absent("cn", s.common_name.is_some(), profile)?;
            let cn = format!("{surname} {name}");
            if cn.chars().count() > UB_NAME {
                return Err(CaError::invalid(
                    "surname",
                    "surname and name together exceed 64 characters",
                ));
            }
            dn.push((rfc4519::CN, DnValue::Utf8(cn)));
            dn.push((rfc4519::SN, DnValue::Utf8(surname)));
            dn.push((
                rfc4519::SERIAL_NUMBER,
                DnValue::Printable(format!("IIN{iin}")),
            ));
            dn.push((rfc4519::C, DnValue::Printable("KZ".into())));
            if let Some(p) = patronymic {
                dn.push((rfc4519::GIVEN_NAME, DnValue::Utf8(p)));
            }
            if profile.kind == ProfileKind::Legal {
                let org = s
                    .organization
                    .as_ref()
                    .ok_or_else(|| CaError::invalid("bin", "is required by this profile"))?;
                let org_name = text("org", &Some(org.name.clone()), true)?.expect("required");
                dn.push((rfc4519::O, DnValue::Utf8(org_name)));
                dn.push((rfc4519::OU, DnValue::Utf8(format!("BIN{}", org.bin))));
            } else {
                absent("bin", s.organization.is_some(), profile)?;
            }
        }
        ProfileKind::System => {
            absent("iin", s.iin.is_some(), profile)?;
            let cn = text("cn", &s.common_name, true)?.expect("required");
            dn.push((rfc4519::CN, DnValue::Utf8(cn)));
            if let Some(org) = &s.organization {
                let org_name = text("org", &Some(org.name.clone()), true)?.expect("required");
                dn.push((rfc4519::O, DnValue::Utf8(org_name)));
                dn.push((rfc4519::OU, DnValue::Utf8(format!("BIN{}", org.bin))));
            }
            dn.push((rfc4519::C, DnValue::Printable("KZ".into())));
        }
        ProfileKind::Root | ProfileKind::Issuing | ProfileKind::OcspSigner => {
            return Err(CaError::invalid(
                "profile",
                format!("{} is one of the CA's own profiles", profile.name),
            ));
        }
    }
    Ok(dn)
}
