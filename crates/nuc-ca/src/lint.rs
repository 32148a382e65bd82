//! Pre-issuance lint: the TBS is decoded afresh and judged against its profile before the HSM
//! signs anything.
//!
//! The lint does not trust the builder: it re-reads the bytes with x509-cert and checks what
//! the profile demands (DN layout and string types, key usage and its criticality, EKU set,
//! policy, URLs, key identifiers, validity within the issuer's). A finding stops issuance with
//! `LINT_FAILED`; it means a bug or a bad policy file, never a caller's mistake.

use std::collections::BTreeSet;

use const_oid::db::{rfc4519, rfc5280};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::{Decode, Tag, Tagged};
use x509_cert::TbsCertificate;
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies, CrlDistributionPoints,
    ExtendedKeyUsage, FreshestCrl, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::name::Name;

use crate::policy::{Profile, ProfileKind};
use crate::tbs::key_identifier;

/// What the lint compares the TBS with, besides the profile.
pub struct LintContext<'a> {
    pub profile: &'a Profile,
    pub policy_oid: ObjectIdentifier,
    pub issuer: &'a Name,
    pub issuer_key_id: Option<&'a [u8]>,
    pub issuer_not_after: Option<i64>,
    pub key_usage: &'a [KeyUsages],
    pub extended_key_usage: &'a [ObjectIdentifier],
    /// The key was generated on a card: the profile's `validity_days_on_card` applies.
    pub key_on_card: bool,
}

fn unix(t: &x509_cert::time::Time) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// Lints DER TBS bytes. `Ok(())` or the list of findings.
pub fn lint(tbs_der: &[u8], ctx: &LintContext<'_>) -> Result<(), Vec<String>> {
    let tbs = match TbsCertificate::from_der(tbs_der) {
        Ok(t) => t,
        Err(e) => return Err(vec![format!("TBS does not decode: {e}")]),
    };
    let mut f = Vec::new();
    let p = ctx.profile;

    if tbs.version() != Version::V3 {
        f.push("version is not v3".into());
    }
    let serial = tbs.serial_number().as_bytes();
    if serial.is_empty()
        || serial.len() > 20
        || serial[0] & 0x80 != 0
        || serial.iter().all(|b| *b == 0)
    {
        f.push(format!(
            "serial must be positive, non-zero, at most 20 octets (got {} octets)",
            serial.len()
        ));
    }
    if tbs.issuer() != ctx.issuer {
        f.push("issuer is not the signing CA's subject".into());
    }
    let (nb, na) = (
        unix(&tbs.validity().not_before),
        unix(&tbs.validity().not_after),
    );
    if na <= nb {
        f.push("notAfter is not after notBefore".into());
    }
    let (allowed_days, what) = if ctx.key_on_card {
        (p.validity_days_on_card, "validity_days_on_card")
    } else {
        (Some(p.validity_days), "validity_days")
    };
    match allowed_days {
        None => f.push(format!(
            "profile {} is not issued for keys on cards (no validity_days_on_card)",
            p.name
        )),
        Some(days) if na - nb > i64::from(days) * 86_400 => f.push(format!(
            "validity exceeds the profile's {what} ({days} days)"
        )),
        Some(_) => {}
    }
    if let Some(limit) = ctx.issuer_not_after
        && na > limit
    {
        f.push("notAfter is beyond the issuer's own notAfter".into());
    }

    lint_subject(tbs.subject(), p, &mut f);

    let exts = tbs.extensions().map(|e| e.as_slice()).unwrap_or_default();
    let mut seen = BTreeSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            f.push(format!("extension {} appears twice", e.extn_id));
        }
    }
    let find = |oid: ObjectIdentifier| exts.iter().find(|e| e.extn_id == oid);

    match find(KeyUsage::OID) {
        None => f.push("keyUsage is missing".into()),
        Some(e) => {
            if !e.critical {
                f.push("keyUsage is not critical".into());
            }
            match KeyUsage::from_der(e.extn_value.as_bytes()) {
                Ok(ku) => {
                    let want: BTreeSet<u16> = ctx.key_usage.iter().map(|u| *u as u16).collect();
                    let got: BTreeSet<u16> = ku.0.into_iter().map(|u| u as u16).collect();
                    if want != got {
                        f.push("keyUsage differs from the profile".into());
                    }
                }
                Err(e) => f.push(format!("keyUsage does not decode: {e}")),
            }
        }
    }
    match find(ExtendedKeyUsage::OID) {
        None if !ctx.extended_key_usage.is_empty() => f.push("extKeyUsage is missing".into()),
        None => {}
        Some(e) => match ExtendedKeyUsage::from_der(e.extn_value.as_bytes()) {
            Ok(eku) if eku.0 == ctx.extended_key_usage => {}
            Ok(_) => f.push(
                "extKeyUsage differs from the profile, role and identification method".into(),
            ),
            Err(e) => f.push(format!("extKeyUsage does not decode: {e}")),
        },
    }
    match find(BasicConstraints::OID) {
        Some(e) => match BasicConstraints::from_der(e.extn_value.as_bytes()) {
            Ok(bc) if bc.ca != p.kind.is_ca() => {
                f.push("basicConstraints cA does not match the profile".into())
            }
            Ok(_) if !e.critical => f.push("basicConstraints is not critical".into()),
            Ok(_) => {}
            Err(e) => f.push(format!("basicConstraints does not decode: {e}")),
        },
        None if p.kind.is_ca() => f.push("a CA certificate needs basicConstraints".into()),
        None => {}
    }
    match find(SubjectKeyIdentifier::OID)
        .map(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()))
    {
        Some(Ok(ski))
            if ski.0.as_bytes() == key_identifier(tbs.subject_public_key_info()).as_slice() => {}
        _ => f.push("subjectKeyIdentifier is missing or not the key's identifier".into()),
    }
    match (ctx.issuer_key_id, find(AuthorityKeyIdentifier::OID)) {
        (None, None) => {}
        (Some(want), Some(e)) => match AuthorityKeyIdentifier::from_der(e.extn_value.as_bytes()) {
            Ok(aki) if aki.key_identifier.as_ref().map(|k| k.as_bytes()) == Some(want) => {}
            _ => f.push("authorityKeyIdentifier is not the issuer's key identifier".into()),
        },
        (Some(_), None) => f.push("authorityKeyIdentifier is missing".into()),
        (None, Some(_)) => {
            f.push("a self-signed root must not need an authorityKeyIdentifier".into())
        }
    }
    if p.policies {
        let ok = find(CertificatePolicies::OID)
            .and_then(|e| CertificatePolicies::from_der(e.extn_value.as_bytes()).ok())
            .is_some_and(|cp| cp.0.iter().any(|pi| pi.policy_identifier == ctx.policy_oid));
        if !ok {
            f.push(format!("certificatePolicies must carry {}", ctx.policy_oid));
        }
    }
    if p.crl.is_some() != find(CrlDistributionPoints::OID).is_some() {
        f.push("cRLDistributionPoints presence differs from the profile".into());
    }
    if p.freshest_crl.is_some() != find(FreshestCrl::OID).is_some() {
        f.push("freshestCRL presence differs from the profile".into());
    }
    if (p.ocsp.is_some() || p.ca_issuers.is_some())
        != find(rfc5280::ID_PE_AUTHORITY_INFO_ACCESS).is_some()
    {
        f.push("authorityInfoAccess presence differs from the profile".into());
    }
    if f.is_empty() { Ok(()) } else { Err(f) }
}

/// The DN layout of SPEC §4: CN, SURNAME, SERIALNUMBER=IIN…, C=KZ, G, then O, OU=BIN… for a
/// legal entity's employee; text in UTF8String, serialNumber and C in PrintableString.
fn lint_subject(subject: &Name, p: &Profile, f: &mut Vec<String>) {
    let attrs: Vec<_> = subject.iter().collect();
    if subject.iter_rdn().any(|rdn| rdn.len() != 1) {
        f.push("each RDN must hold exactly one attribute".into());
    }
    if attrs.is_empty() {
        f.push("subject is empty".into());
        return;
    }
    for a in &attrs {
        let want = if a.oid == rfc4519::C || a.oid == rfc4519::SERIAL_NUMBER {
            Tag::PrintableString
        } else {
            Tag::Utf8String
        };
        if a.value.tag() != want {
            f.push(format!(
                "attribute {} must be {want:?}, is {:?}",
                a.oid,
                a.value.tag()
            ));
        }
    }
    let order: Vec<ObjectIdentifier> = attrs.iter().map(|a| a.oid).collect();
    let value = |oid| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .map(|a| String::from_utf8_lossy(a.value.value()).into_owned())
    };
    match p.kind {
        ProfileKind::Individual | ProfileKind::Legal => {
            let mut want = vec![rfc4519::CN, rfc4519::SN, rfc4519::SERIAL_NUMBER, rfc4519::C];
            if order.contains(&rfc4519::GIVEN_NAME) {
                want.push(rfc4519::GIVEN_NAME);
            }
            if p.kind == ProfileKind::Legal {
                want.extend([rfc4519::O, rfc4519::OU]);
            }
            if order != want {
                f.push("subject attributes are not in the order CN, SURNAME, SERIALNUMBER, C, G[, O, OU]".into());
            }
            match value(rfc4519::SERIAL_NUMBER)
                .as_deref()
                .and_then(|s| s.strip_prefix("IIN"))
            {
                Some(iin) if nuc_core::Iin::parse(iin).is_ok() => {}
                _ => f.push("SERIALNUMBER must be IIN followed by a valid 12-digit IIN".into()),
            }
            if p.kind == ProfileKind::Legal {
                match value(rfc4519::OU)
                    .as_deref()
                    .and_then(|s| s.strip_prefix("BIN"))
                {
                    Some(bin) if nuc_core::Bin::parse(bin).is_ok() => {}
                    _ => f.push("OU must be BIN followed by a valid 12-digit BIN".into()),
                }
            }
            if value(rfc4519::C).as_deref() != Some("KZ") {
                f.push("C must be KZ".into());
            }
        }
        ProfileKind::System => {
            if order.first() != Some(&rfc4519::CN) {
                f.push("a system certificate's subject starts with CN".into());
            }
        }
        ProfileKind::Root | ProfileKind::Issuing | ProfileKind::OcspSigner => {
            if order.len() != p.subject.len() {
                f.push("subject differs from the profile's fixed subject".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::CaSettings;
    use crate::policy::{DEFAULT_PROFILES, Policy};
    use crate::subject::distinguished_name;
    use crate::tbs::{Dn, DnValue, TbsInput, build, encode_name};
    use der::Decode;
    use nuc_core::{Iin, SubjectInfo};
    use spki::SubjectPublicKeyInfoOwned;

    fn spki() -> SubjectPublicKeyInfoOwned {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap())
            .unwrap();
        SubjectPublicKeyInfoOwned::from_der(&key.public_key_to_der().unwrap()).unwrap()
    }

    fn person() -> SubjectInfo {
        SubjectInfo {
            iin: Some(Iin::parse("860908363012").unwrap()),
            surname: Some("ҚҰНАНБАЙ".into()),
            name: Some("АБАЙ".into()),
            patronymic: Some("ҚҰНАНБАЙҰЛЫ".into()),
            organization: None,
            email: None,
            common_name: None,
        }
    }

    /// Builds an individual-auth TBS with the given DN and lints it against the profile.
    fn lint_with(dn: &Dn, key_usage: &[KeyUsages], serial: &[u8]) -> Result<(), Vec<String>> {
        lint_valid_for(dn, key_usage, serial, 86_400, false)
    }

    /// [`lint_with`], valid for `secs`, for a key on a card or not.
    fn lint_valid_for(
        dn: &Dn,
        key_usage: &[KeyUsages],
        serial: &[u8],
        secs: i64,
        key_on_card: bool,
    ) -> Result<(), Vec<String>> {
        let policy = Policy::from_toml(DEFAULT_PROFILES).unwrap();
        let profile = &policy.profiles["individual-auth"];
        let config = CaSettings::dev("127.0.0.1:1");
        let issuer = encode_name(&vec![(
            const_oid::db::rfc4519::CN,
            DnValue::Utf8("CA".into()),
        )])
        .unwrap();
        let eku = profile.extended_key_usage.clone();
        let tbs = build(&TbsInput {
            profile,
            policy: &policy,
            urls: &config.publication,
            serial,
            signature_algorithm: crate::KeyAlgorithm::EcdsaP256.signature_algorithm(),
            issuer: issuer.clone(),
            issuer_key_id: Some(vec![1; 20]),
            not_before: 1_800_000_000,
            not_after: 1_800_000_000 + secs,
            subject: encode_name(dn).unwrap(),
            spki: spki(),
            key_usage: key_usage.to_vec(),
            extended_key_usage: eku.clone(),
            email: None,
            dns_names: vec![],
        })
        .unwrap();
        lint(
            &tbs,
            &LintContext {
                profile,
                policy_oid: policy.policy_oid,
                issuer: &issuer,
                issuer_key_id: Some(&[1; 20]),
                issuer_not_after: None,
                key_usage: &profile.key_usage_ec.clone().unwrap(),
                extended_key_usage: &eku,
                key_on_card,
            },
        )
    }

    fn good_dn() -> Dn {
        let policy = Policy::from_toml(DEFAULT_PROFILES).unwrap();
        distinguished_name(&policy.profiles["individual-auth"], &person()).unwrap()
    }

    const EC_AUTH: [KeyUsages; 2] = [KeyUsages::DigitalSignature, KeyUsages::KeyAgreement];

    #[test]
    fn three_years_only_for_keys_on_cards() {
        let three_years = 1095 * 86_400 - 1;
        lint_valid_for(&good_dn(), &EC_AUTH, &[0x42; 20], three_years, true).unwrap();
        let f = lint_valid_for(&good_dn(), &EC_AUTH, &[0x42; 20], three_years, false).unwrap_err();
        assert!(f.iter().any(|m| m.contains("validity_days (365")), "{f:?}");
        let f = lint_valid_for(&good_dn(), &EC_AUTH, &[0x42; 20], 1096 * 86_400, true).unwrap_err();
        assert!(
            f.iter().any(|m| m.contains("validity_days_on_card (1095")),
            "{f:?}"
        );
    }

    #[test]
    fn a_well_built_tbs_passes() {
        lint_with(&good_dn(), &EC_AUTH, &[0x42; 20]).unwrap();
    }

    #[test]
    fn key_usage_other_than_the_profile_is_found() {
        let f = lint_with(&good_dn(), &[KeyUsages::DigitalSignature], &[0x42; 20]).unwrap_err();
        assert!(f.iter().any(|s| s.contains("keyUsage differs")), "{f:?}");
    }

    #[test]
    fn dn_out_of_order_or_wrong_string_type_is_found() {
        let mut dn = good_dn();
        dn.swap(0, 1);
        let f = lint_with(&dn, &EC_AUTH, &[0x42; 20]).unwrap_err();
        assert!(f.iter().any(|s| s.contains("order")), "{f:?}");

        let mut dn = good_dn();
        dn[2].1 = DnValue::Utf8("IIN860908363012".into());
        let f = lint_with(&dn, &EC_AUTH, &[0x42; 20]).unwrap_err();
        assert!(f.iter().any(|s| s.contains("PrintableString")), "{f:?}");

        let mut dn = good_dn();
        dn[2].1 = DnValue::Printable("IIN860908363013".into());
        let f = lint_with(&dn, &EC_AUTH, &[0x42; 20]).unwrap_err();
        assert!(f.iter().any(|s| s.contains("SERIALNUMBER")), "{f:?}");
    }

    #[test]
    fn negative_or_zero_serial_is_found() {
        let f = lint_with(&good_dn(), &EC_AUTH, &[0x00; 1]).unwrap_err();
        assert!(f.iter().any(|s| s.contains("serial")), "{f:?}");
    }
}
