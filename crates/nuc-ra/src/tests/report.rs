//! The holder's report: every certificate of the IIN with its standing (valid, revoked; the
//! expired standing is judged by `report::standing`, tested beside it: the test CA signs by
//! the wall clock), how it was issued, and the request spent once.

use nuc_core::{ReasonCode, RevocationReason};
use nuc_payloads::{CERTIFICATE_REPORT_REQUEST, CertificateReportRequest};

use super::*;
use crate::{IssuedHow, Standing};

fn report_request(rig: &Rig, holder: &Holder, iin: &str) -> Vec<u8> {
    let r = CertificateReportRequest {
        iin: iin.into(),
        bin: String::new(),
        signed_at: rig.clock.now(),
        nonce: nonce(),
        payload_type: CERTIFICATE_REPORT_REQUEST.into(),
    };
    cms_at(
        &r.encode_to_vec(),
        &holder.sign.1,
        &holder.sign.2,
        r.signed_at,
    )
}

#[tokio::test]
async fn the_report_lists_every_certificate_of_the_iin_with_its_standing_and_origin() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let first = rig.holder(ABAI, &op).await;
    rig.ra
        .revoke_online(
            PORTAL,
            &first.order_with(|o| {
                o.serial_hex = first.auth.0.clone();
                o.reason = RevocationReason::KeyCompromise.code().into();
            }),
        )
        .unwrap();
    let op = rig.operator(YBYRAI).await;
    let second = rig.holder(ABAI, &op).await;

    let report = rig
        .ra
        .certificate_report(PORTAL, &report_request(&rig, &second, ABAI))
        .await
        .unwrap();
    let standings: Vec<(&str, Standing)> = report
        .certificates
        .iter()
        .map(|c| (c.serial.as_str(), c.standing))
        .collect();
    assert_eq!(
        standings,
        [
            (first.auth.0.as_str(), Standing::Revoked),
            (first.sign.0.as_str(), Standing::Valid),
            (second.auth.0.as_str(), Standing::Valid),
            (second.sign.0.as_str(), Standing::Valid),
        ]
    );
    let revoked = &report.certificates[0];
    assert_eq!(
        revoked.revocation.as_ref().map(|r| r.reason),
        Some(RevocationReason::KeyCompromise)
    );
    assert!(matches!(
        &report.certificates[3].issued,
        IssuedHow::AtCon { con, operator_serial } if con == "ЦОН Алматы №1" && *operator_serial == op.serial
    ));
    assert!(
        report
            .certificates
            .iter()
            .all(|c| c.holder_iin.as_deref() == Some(ABAI))
    );

    // Signed for another IIN: refused; the same request twice: a replay.
    refused(
        rig.ra
            .certificate_report(PORTAL, &report_request(&rig, &second, KANYSH))
            .await,
        ReasonCode::IinMismatch,
        "a holder asks only for their own",
    );
    let once = report_request(&rig, &second, ABAI);
    rig.ra.certificate_report(PORTAL, &once).await.unwrap();
    let audit = rig.audit_count();
    refused(
        rig.ra.certificate_report(PORTAL, &once).await,
        ReasonCode::PayloadReplayed,
        "",
    );
    assert_eq!(rig.audit_count(), audit);
}
