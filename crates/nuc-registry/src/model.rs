//! The records the registry answers with: a person (ГБД ФЛ) and a legal entity (ГБД ЮЛ).
//!
//! They are also the JSON bodies of the HTTP protocol and the records of the fixture file, so
//! their serde spelling is part of the contract. IIN and BIN are checked (check digit included)
//! while they are decoded: a record with a bad number never comes into existence.

use std::fmt;
use std::str::FromStr;

use nuc_core::{Bin, Iin};
use serde::{Deserialize, Serialize};

/// An individual as ГБД ФЛ states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    #[serde(with = "ident::iin")]
    pub iin: Iin,
    pub surname: String,
    pub name: String,
    pub patronymic: Option<String>,
    /// `YYYY-MM-DD`, as the registry writes it.
    pub birth_date: String,
    pub email: Option<String>,
}

/// A legal entity as ГБД ЮЛ states it, with the people who act for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalEntity {
    #[serde(with = "ident::bin")]
    pub bin: Bin,
    pub name: String,
    /// Date of registration (`YYYY-MM-DD`) when the registry states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<String>,
    #[serde(default)]
    pub employees: Vec<Employee>,
}

impl LegalEntity {
    /// The role of `iin` in this entity, if the registry lists that person (the first listing
    /// wins; the fixture refuses a person listed twice).
    pub fn role_of(&self, iin: &Iin) -> Option<Role> {
        self.employees
            .iter()
            .find(|e| &e.iin == iin)
            .map(|e| e.role)
    }
}

impl From<&LegalEntity> for nuc_core::LegalEntity {
    fn from(e: &LegalEntity) -> Self {
        nuc_core::LegalEntity {
            bin: e.bin.clone(),
            name: e.name.clone(),
        }
    }
}

/// A person listed by a legal entity, with the role the registry gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Employee {
    #[serde(with = "ident::iin")]
    pub iin: Iin,
    pub role: Role,
}

/// What a person may do for a legal entity (SPEC §4): it selects the certificate profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The first head (первый руководитель), who may sign anything for the entity.
    FirstHead,
    /// A person with the right to sign.
    Signer,
    /// Finance (accountant).
    Finance,
    /// Human resources.
    Hr,
    /// An employee without a particular right.
    Employee,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::FirstHead,
        Role::Signer,
        Role::Finance,
        Role::Hr,
        Role::Employee,
    ];

    /// The published spelling: `first-head`, `signer`, `finance`, `hr`, `employee`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::FirstHead => "first-head",
            Role::Signer => "signer",
            Role::Finance => "finance",
            Role::Hr => "hr",
            Role::Employee => "employee",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spelling of a role was not one of [`Role::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role: unknown role {0:?} (expected first-head, signer, finance, hr or employee)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Serde for the identifiers of nuc-core (which carry no serde of their own): a JSON string of
/// 12 digits, refused with the field's name when the check digit is wrong.
pub(crate) mod ident {
    macro_rules! ident_serde {
        ($module:ident, $ty:ty) => {
            pub mod $module {
                use serde::{Deserialize, Deserializer, Serializer, de::Error};

                pub fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_str(v.as_str())
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    <$ty>::parse(&s).map_err(D::Error::custom)
                }
            }
        };
    }
    ident_serde!(iin, nuc_core::Iin);
    ident_serde!(bin, nuc_core::Bin);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_spell_as_published_and_round_trip() {
        for role in Role::ALL {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert_eq!(Role::FirstHead.as_str(), "first-head");
        assert!(serde_json::from_str::<Role>("\"FirstHead\"").is_err());
        assert!("boss".parse::<Role>().is_err());
    }

    #[test]
    fn a_person_with_a_bad_check_digit_does_not_decode() {
        let good = r#"{"iin":"860908363012","surname":"S","name":"N","patronymic":null,"birth_date":"1986-09-08","email":null}"#;
        let p: Person = serde_json::from_str(good).unwrap();
        assert_eq!(p.iin.as_str(), "860908363012");
        let bad = good.replace("860908363012", "860908363013");
        let err = serde_json::from_str::<Person>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("iin: check digit is 3, expected 2"), "{err}");
    }

    #[test]
    fn a_bin_is_checked_as_a_bin() {
        let bad = r#"{"bin":"120340240007","name":"X","employees":[]}"#;
        let err = serde_json::from_str::<LegalEntity>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bin: check digit"), "{err}");
    }
}
