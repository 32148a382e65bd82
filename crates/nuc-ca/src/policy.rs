//! Certificate profiles, read from `ca-policy/profiles.toml` (a copy of it lives in each home).
//!
//! Loading validates everything up front — OIDs parse, key usage names exist, kinds are known —
//! so a bad policy file stops the service at start, not in the middle of an issuance.

use std::collections::BTreeMap;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use serde::Deserialize;
use x509_cert::ext::pkix::KeyUsages;

use nuc_hsm::KeyAlgorithm;

/// The profiles shipped with this build; `nuc init` writes them into a new home.
pub const DEFAULT_PROFILES: &str = include_str!("../../../ca-policy/profiles.toml");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("policy: profile {profile}: {reason}")]
    Profile { profile: String, reason: String },
    #[error("policy: {0}")]
    Other(String),
}

/// Who a profile is for: decides which subject fields are required and how the DN is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileKind {
    Root,
    Issuing,
    OcspSigner,
    Individual,
    Legal,
    System,
}

impl ProfileKind {
    pub fn is_ca(self) -> bool {
        matches!(self, ProfileKind::Root | ProfileKind::Issuing)
    }
}

/// One fixed attribute of a CA's own subject.
#[derive(Debug, Clone, Deserialize)]
pub struct FixedAttr {
    pub attr: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    kind: ProfileKind,
    description: String,
    validity_days: u32,
    #[serde(default)]
    validity_days_on_card: Option<u32>,
    #[serde(default)]
    key_algorithms: Vec<String>,
    key_usage: Vec<String>,
    #[serde(default)]
    key_usage_ec: Option<Vec<String>>,
    #[serde(default)]
    extended_key_usage: Vec<String>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
    #[serde(default)]
    role_optional: bool,
    #[serde(default)]
    identification: bool,
    #[serde(default)]
    policies: bool,
    #[serde(default)]
    path_len: Option<u8>,
    #[serde(default)]
    ocsp_nocheck: bool,
    crl: Option<String>,
    freshest_crl: Option<String>,
    ocsp: Option<String>,
    ca_issuers: Option<String>,
    #[serde(default)]
    subject: Vec<FixedAttr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyBlock {
    oid: String,
    cps: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    policy: RawPolicyBlock,
    identification: BTreeMap<String, String>,
    profile: BTreeMap<String, RawProfile>,
}

/// Which keys a profile accepts from applicants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    RsaAtLeast(u32),
    Exactly(KeyAlgorithm),
}

/// A certificate profile, validated.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub kind: ProfileKind,
    pub description: String,
    pub validity_days: u32,
    /// Validity when the key was generated on hardware at a CON — an ID card, a SIM card or a
    /// USB token, every [`nuc_core::KeyStorage`] but `File` (SPEC §4: up to three years for
    /// cards and tokens alike, so one figure serves them all); `None`: this profile is not
    /// issued for keys on cards or tokens.
    pub validity_days_on_card: Option<u32>,
    pub key_rules: Vec<KeyRule>,
    pub key_usage: Vec<KeyUsages>,
    /// Key usage for EC keys where it differs (keyEncipherment means nothing for ECDSA).
    pub key_usage_ec: Option<Vec<KeyUsages>>,
    pub extended_key_usage: Vec<ObjectIdentifier>,
    pub roles: BTreeMap<String, ObjectIdentifier>,
    /// Whether a certificate of this profile may have no role (e.g. a TLS server).
    pub role_optional: bool,
    pub identification: bool,
    pub policies: bool,
    pub path_len: Option<u8>,
    pub ocsp_nocheck: bool,
    /// URL templates, filled from the home's publication URLs.
    pub crl: Option<String>,
    pub freshest_crl: Option<String>,
    pub ocsp: Option<String>,
    pub ca_issuers: Option<String>,
    pub subject: Vec<FixedAttr>,
}

/// All profiles and the NUC policy OIDs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub policy_oid: ObjectIdentifier,
    pub cps: String,
    pub identification: BTreeMap<String, ObjectIdentifier>,
    pub profiles: BTreeMap<String, Profile>,
}

fn oid(profile: &str, s: &str) -> Result<ObjectIdentifier, PolicyError> {
    ObjectIdentifier::from_str(s).map_err(|e| PolicyError::Profile {
        profile: profile.into(),
        reason: format!("bad OID {s:?}: {e}"),
    })
}

fn key_usage(profile: &str, name: &str) -> Result<KeyUsages, PolicyError> {
    Ok(match name {
        "digitalSignature" => KeyUsages::DigitalSignature,
        "nonRepudiation" => KeyUsages::NonRepudiation,
        "keyEncipherment" => KeyUsages::KeyEncipherment,
        "dataEncipherment" => KeyUsages::DataEncipherment,
        "keyAgreement" => KeyUsages::KeyAgreement,
        "keyCertSign" => KeyUsages::KeyCertSign,
        "cRLSign" => KeyUsages::CRLSign,
        other => {
            return Err(PolicyError::Profile {
                profile: profile.into(),
                reason: format!("unknown key usage {other:?}"),
            });
        }
    })
}

fn key_rule(profile: &str, s: &str) -> Result<KeyRule, PolicyError> {
    if let Some(bits) = s.strip_prefix("rsa-").and_then(|r| r.strip_suffix('+')) {
        let bits = bits.parse().map_err(|_| PolicyError::Profile {
            profile: profile.into(),
            reason: format!("bad key rule {s:?}"),
        })?;
        return Ok(KeyRule::RsaAtLeast(bits));
    }
    KeyAlgorithm::from_str(s)
        .map(KeyRule::Exactly)
        .map_err(|e| PolicyError::Profile {
            profile: profile.into(),
            reason: e.to_string(),
        })
}

impl Policy {
    /// Parses and validates a profiles file.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text)?;
        let identification = raw
            .identification
            .iter()
            .map(|(k, v)| Ok((k.clone(), oid("[identification]", v)?)))
            .collect::<Result<_, PolicyError>>()?;
        let mut profiles = BTreeMap::new();
        for (name, p) in raw.profile {
            let n = name.as_str();
            let err = |reason: &str| PolicyError::Profile {
                profile: name.clone(),
                reason: reason.into(),
            };
            if p.validity_days == 0 {
                return Err(err("validity_days must be positive"));
            }
            if let Some(d) = p.validity_days_on_card
                && !(1..=3 * 366).contains(&d)
            {
                return Err(err(
                    "validity_days_on_card must be between 1 and 1098 (three years)",
                ));
            }
            if p.key_usage.is_empty() {
                return Err(err("key_usage must not be empty"));
            }
            if p.kind.is_ca() || p.kind == ProfileKind::OcspSigner {
                if p.subject.is_empty() {
                    return Err(err("the CA's own profiles need a fixed subject"));
                }
            } else if p.key_algorithms.is_empty() {
                return Err(err("key_algorithms must not be empty"));
            }
            let profile = Profile {
                name: name.clone(),
                kind: p.kind,
                description: p.description,
                validity_days: p.validity_days,
                validity_days_on_card: p.validity_days_on_card,
                key_rules: p
                    .key_algorithms
                    .iter()
                    .map(|s| key_rule(n, s))
                    .collect::<Result<_, _>>()?,
                key_usage: p
                    .key_usage
                    .iter()
                    .map(|s| key_usage(n, s))
                    .collect::<Result<_, _>>()?,
                key_usage_ec: p
                    .key_usage_ec
                    .map(|v| {
                        v.iter()
                            .map(|s| key_usage(n, s))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?,
                extended_key_usage: p
                    .extended_key_usage
                    .iter()
                    .map(|s| oid(n, s))
                    .collect::<Result<_, _>>()?,
                roles: p
                    .roles
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), oid(n, v)?)))
                    .collect::<Result<_, PolicyError>>()?,
                role_optional: p.role_optional,
                identification: p.identification,
                policies: p.policies,
                path_len: p.path_len,
                ocsp_nocheck: p.ocsp_nocheck,
                crl: p.crl,
                freshest_crl: p.freshest_crl,
                ocsp: p.ocsp,
                ca_issuers: p.ca_issuers,
                subject: p.subject,
            };
            profiles.insert(name, profile);
        }
        for needed in ["root", "issuing", "ocsp-signer"] {
            if !profiles.contains_key(needed) {
                return Err(PolicyError::Other(format!("profile {needed:?} is missing")));
            }
        }
        Ok(Self {
            policy_oid: oid("[policy]", &raw.policy.oid)?,
            cps: raw.policy.cps,
            identification,
            profiles,
        })
    }

    /// A profile by name, for the issuing of end-entity certificates (not the CA's own).
    pub fn end_entity(&self, name: &str) -> Option<&Profile> {
        self.profiles
            .get(name)
            .filter(|p| !p.kind.is_ca() && p.kind != ProfileKind::OcspSigner)
    }

    /// Names of the profiles an operator may ask for.
    pub fn end_entity_names(&self) -> Vec<&str> {
        self.profiles
            .values()
            .filter(|p| self.end_entity(&p.name).is_some())
            .map(|p| p.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load() {
        let p = Policy::from_toml(DEFAULT_PROFILES).unwrap();
        for name in [
            "individual-auth",
            "individual-sign",
            "legal-auth",
            "legal-sign",
            "operator",
            "system",
        ] {
            assert!(p.end_entity(name).is_some(), "{name}");
        }
        assert!(p.end_entity("root").is_none());
        assert_eq!(
            p.profiles["legal-sign"].roles["first-head"].to_string(),
            "1.2.398.3.3.4.1.2.1"
        );
    }

    #[test]
    fn bad_oid_names_the_profile() {
        let bad = DEFAULT_PROFILES.replace("1.2.398.3.3.4.2.3", "1.2.x");
        let e = Policy::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("operator") && e.contains("bad OID"), "{e}");
    }
}
