//! The applicant's PKCS#10 (`nuc_ca::csr::check`, as the RA's intake calls it): no panic, a
//! typed CSR refusal or a checked key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nuc_ca::CaError;
use nuc_ca::policy::{DEFAULT_PROFILES, Policy, Profile};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;

fn profile() -> &'static Profile {
    static P: OnceLock<Profile> = OnceLock::new();
    P.get_or_init(|| {
        let rsa =
            openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let p256 = nuc_fuzz::csr(
            &nuc_fuzz::ec_key(Nid::X9_62_PRIME256V1),
            MessageDigest::sha256(),
        );
        let pem = der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, &p256)
            .unwrap();
        nuc_fuzz::seed(
            "csr",
            &[
                p256,
                nuc_fuzz::csr(&nuc_fuzz::ec_key(Nid::SECP384R1), MessageDigest::sha384()),
                nuc_fuzz::csr(&rsa, MessageDigest::sha256()),
                pem.into_bytes(),
            ],
        );
        Policy::from_toml(DEFAULT_PROFILES)
            .unwrap()
            .end_entity("individual-auth")
            .unwrap()
            .clone()
    })
}

fuzz_target!(init: { profile(); }, |data: &[u8]| {
    match nuc_ca::csr::check(data, profile()) {
        Ok(_)
        | Err(CaError::CsrMalformed(_) | CaError::CsrSignatureInvalid(_) | CaError::KeyRejected(_)) => {}
        Err(other) => panic!("not a CSR refusal: {other:?}"),
    }
});
