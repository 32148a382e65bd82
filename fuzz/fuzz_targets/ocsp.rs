//! The OCSP responder (`nuc_publisher::ocsp::respond`, what the HTTP listener calls with the
//! request body): whatever the bytes, the answer is one DER OCSPResponse, nothing after it.
#![no_main]

use der::Decode;
use libfuzzer_sys::fuzz_target;
use nuc_fuzz::SoftOcsp;
use nuc_publisher::OcspContext;
use nuc_publisher::ocsp::{OcspResponse, respond};
use nuc_store::memory::MemoryStore;

fuzz_target!(init: nuc_fuzz::seed("ocsp", &SoftOcsp::get().requests()), |data: &[u8]| {
    let store = MemoryStore::new();
    let ctx = OcspContext { ca: SoftOcsp::get(), store: &store };
    let answer = respond(ctx, data, 1_780_000_000);
    if let Err(e) = OcspResponse::from_der(&answer) {
        panic!("not a DER OCSPResponse ({e}): {answer:02x?}");
    }
});
