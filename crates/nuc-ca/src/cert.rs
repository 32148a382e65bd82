//! Reading what our own certificates say, for the parts of the service that decide on them
//! (callers' roles, signers' staff roles).

use const_oid::{AssociatedOid, ObjectIdentifier};
use der::Decode;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage};

/// The EKU OIDs of a certificate (empty when it has none or it does not decode).
pub fn extended_key_usage(cert: &Certificate) -> Vec<ObjectIdentifier> {
    cert.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == ExtendedKeyUsage::OID)
        .and_then(|e| ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok())
        .map(|k| k.0)
        .unwrap_or_default()
}

/// Whether the certificate's keyUsage asserts nonRepudiation (contentCommitment): the mark of
/// a SIGN certificate. False when it has no keyUsage or it does not decode.
pub fn non_repudiation(cert: &Certificate) -> bool {
    cert.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == KeyUsage::OID)
        .and_then(|e| KeyUsage::from_der(e.extn_value.as_bytes()).ok())
        .is_some_and(|k| k.non_repudiation())
}

/// A distinguished name in certificate order (`CN=…, SURNAME=…, SERIALNUMBER=…, C=KZ, G=…`),
/// as NUC staff read it; RFC 4514 text would list it backwards.
pub fn dn_text(name: &x509_cert::name::Name) -> String {
    name.iter_rdn()
        .map(|rdn| rdn.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of a subject attribute that starts with `prefix` (e.g. "IIN" in SERIALNUMBER,
/// "BIN" in OU), without the prefix.
fn prefixed(cert: &Certificate, oid: ObjectIdentifier, prefix: &str) -> Option<String> {
    cert.tbs_certificate()
        .subject()
        .iter()
        .filter(|a| a.oid == oid)
        .find_map(|a| {
            let v = String::from_utf8_lossy(a.value.value()).into_owned();
            v.strip_prefix(prefix).map(str::to_owned)
        })
}

/// The subject's common name (a person's full name in the NUC's profiles), if it has one.
pub fn common_name(cert: &Certificate) -> Option<String> {
    prefixed(cert, const_oid::db::rfc4519::CN, "")
}

/// The IIN in a certificate's SERIALNUMBER attribute ("IIN" + 12 digits).
pub fn iin_of(cert: &Certificate) -> Option<String> {
    prefixed(cert, const_oid::db::rfc4519::SERIAL_NUMBER, "IIN")
}

/// The BIN in a legal entity employee's certificate (OU = "BIN" + 12 digits).
pub fn bin_of(cert: &Certificate) -> Option<String> {
    prefixed(cert, const_oid::db::rfc4519::OU, "BIN")
}
