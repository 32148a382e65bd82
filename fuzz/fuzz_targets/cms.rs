//! CMS verification (`nuc_cms::verify`, the first step of every signed payload), attached or
//! detached (first byte odd: detached, the content being fixed): no panic, a typed error, and
//! a detached CMS verifies only that content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openssl::nid::Nid;

const CONTENT: &[u8] = b"nuc fuzz: the payload that was signed";

fn seeds() {
    let mut seeds = Vec::new();
    for nid in [Nid::X9_62_PRIME256V1, Nid::SECP384R1] {
        let key = nuc_fuzz::ec_key(nid);
        let cert = nuc_fuzz::certificate(&key, "signer").to_der().unwrap();
        for detached in [false, true] {
            let mut s = vec![u8::from(detached)];
            s.extend(nuc_cms::sign(CONTENT, &cert, &key, detached).unwrap());
            seeds.push(s);
        }
    }
    nuc_fuzz::seed("cms", &seeds);
}

fuzz_target!(init: seeds(), |data: &[u8]| {
    let Some((flag, cms)) = data.split_first() else { return };
    let detached = flag & 1 == 1;
    if let Ok(v) = nuc_cms::verify(cms, detached.then_some(CONTENT)) {
        if detached {
            assert_eq!(v.content, CONTENT);
        }
        let _ = nuc_cms::signer_chains_to(&v.signer_cert_der, &v.signer_cert_der);
    }
});
