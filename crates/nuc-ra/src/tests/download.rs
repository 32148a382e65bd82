//! F7: status and download, and the expiry of requests nobody came for.

use nuc_ca::Issuer;
use nuc_core::{ReasonCode, RequestState};
use nuc_payloads::Decision;

use super::*;

#[tokio::test]
async fn an_issued_request_downloads_its_certificates_with_the_chain() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let d = rig.ra.download(&holder.request.number).unwrap();
    let serials: Vec<_> = d.certificates.iter().map(|c| c.0.clone()).collect();
    assert_eq!(serials, [holder.auth.0.clone(), holder.sign.0.clone()]);
    // Judged by OpenSSL: a PKCS#7 with the two certificates, the issuing CA and the root.
    let p7 = openssl::pkcs7::Pkcs7::from_der(&d.pkcs7_bundle).unwrap();
    let certs = p7.signed().unwrap().certificates().unwrap();
    let mut got: Vec<Vec<u8>> = certs.iter().map(|c| c.to_der().unwrap()).collect();
    let mut want = vec![
        holder.auth.1.clone(),
        holder.sign.1.clone(),
        rig.ca.issuing_certificate().to_vec(),
        rig.ca.root_certificate().to_vec(),
    ];
    // A SET OF: DER sorts it, so compare as sets.
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_request_without_certificates_has_nothing_to_download() {
    let rig = Rig::new();
    let (request, _, _) = rig.registered(ABAI).await;
    refused(
        rig.ra.download(&request.number),
        ReasonCode::RequestState,
        "it is registered",
    );
}

#[tokio::test]
async fn a_request_number_is_found_in_any_spelling_the_number_module_accepts() {
    let rig = Rig::new();
    let (request, _, _) = rig.registered(ABAI).await;
    let found = rig.ra.request(&request.number.to_lowercase()).unwrap();
    assert_eq!(found.number, request.number);
    refused(
        rig.ra.request(""),
        ReasonCode::InvalidArgument,
        "request_number",
    );
}

#[tokio::test]
async fn expiry_takes_registered_requests_past_their_deadline_only() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (due, _, _) = rig.registered(ABAI).await;
    let (decided, _, _) = rig.registered(KANYSH).await;
    rig.decide(&op, &decided.number, Decision::Refuse, "no documents")
        .await
        .unwrap();
    assert!(rig.ra.expire_due().unwrap().is_empty());
    rig.clock.advance(30 * 86_400);
    let (fresh, _, _) = rig.registered(MUKHTAR).await;
    assert_eq!(rig.ra.expire_due().unwrap(), vec![due.number.clone()]);
    assert_eq!(
        rig.ra.request(&due.number).unwrap().state,
        RequestState::Expired
    );
    assert_eq!(
        rig.ra.request(&decided.number).unwrap().state,
        RequestState::Refused
    );
    assert_eq!(
        rig.ra.request(&fresh.number).unwrap().state,
        RequestState::Registered
    );
}
