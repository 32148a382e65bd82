//! The notices the RA sends, from the template files in `notices/` (Kazakh and Russian).
//!
//! The texts are data, not code: a translator edits `notices/kk/*.txt` and `notices/ru/*.txt`
//! and nothing else. They are compiled in (`include_str!`), so a binary never starts without
//! them, and the unit tests below check that every placeholder a template uses is filled and
//! every fill is used.

use nuc_core::{Notice, NoticeKind};

/// `(Kazakh, Russian)` template of each notice: subject on the first line, body after.
fn templates(kind: NoticeKind) -> (&'static str, &'static str) {
    match kind {
        NoticeKind::Application => (
            include_str!("../notices/kk/application.txt"),
            include_str!("../notices/ru/application.txt"),
        ),
        NoticeKind::Refused => (
            include_str!("../notices/kk/refused.txt"),
            include_str!("../notices/ru/refused.txt"),
        ),
        NoticeKind::Issued => (
            include_str!("../notices/kk/issued.txt"),
            include_str!("../notices/ru/issued.txt"),
        ),
        NoticeKind::Revoked => (
            include_str!("../notices/kk/revoked.txt"),
            include_str!("../notices/ru/revoked.txt"),
        ),
        NoticeKind::Renewal => (
            include_str!("../notices/kk/renewal.txt"),
            include_str!("../notices/ru/renewal.txt"),
        ),
        NoticeKind::IssuanceAlert => (
            include_str!("../notices/kk/issuance-alert.txt"),
            include_str!("../notices/ru/issuance-alert.txt"),
        ),
    }
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

fn split(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

/// A notice of `kind` to `recipient`, with the placeholders filled from `values`.
pub fn compose(kind: NoticeKind, recipient: &str, values: &[(&str, &str)]) -> Notice {
    let (kk, ru) = templates(kind);
    let (kk, ru) = (fill(kk, values), fill(ru, values));
    let ((kk_subject, kk_body), (ru_subject, ru_body)) = (split(&kk), split(&ru));
    Notice {
        kind,
        recipient: recipient.to_owned(),
        subject: format!("{} / {}", kk_subject.trim(), ru_subject.trim()),
        body: format!("{}\n\n{}\n", kk_body.trim_end(), ru_body.trim_end()),
    }
}

/// F1 step 3: the number of the application and the deadline to come to a CON.
pub fn application(recipient: &str, number: &str, deadline: i64) -> Notice {
    let deadline = nuc_core::time::rfc3339(deadline);
    compose(
        NoticeKind::Application,
        recipient,
        &[("number", number), ("deadline", &deadline)],
    )
}

/// The operator refused the application.
pub fn refused(recipient: &str, number: &str, reason: &str) -> Notice {
    compose(
        NoticeKind::Refused,
        recipient,
        &[("number", number), ("reason", reason)],
    )
}

/// The certificates were issued: where to download them.
pub fn issued(recipient: &str, number: &str, link: &str) -> Notice {
    compose(
        NoticeKind::Issued,
        recipient,
        &[("number", number), ("link", link)],
    )
}

/// A certificate was revoked.
pub fn revoked(recipient: &str, serial: &str, why: &str) -> Notice {
    compose(
        NoticeKind::Revoked,
        recipient,
        &[("serial", serial), ("why", why)],
    )
}

/// F2: certificate `serial` signed renewal `number`, whose certificates go to `new_email`.
/// Sent to the address on record for `serial`: a holder whose key was stolen learns of it.
pub fn renewal(recipient: &str, serial: &str, number: &str, new_email: &str) -> Notice {
    compose(
        NoticeKind::Renewal,
        recipient,
        &[("serial", serial), ("number", number), ("email", new_email)],
    )
}

/// The alert of an issuance in the holder's name, to their address on record: what (the
/// request and its certificates), when, how (`channel`, in both languages), and where the
/// applicant asked the certificates to be announced.
pub fn issuance_alert(
    recipient: &str,
    number: &str,
    when: &str,
    channel: &str,
    applicant_email: &str,
) -> Notice {
    compose(
        NoticeKind::IssuanceAlert,
        recipient,
        &[
            ("number", number),
            ("when", when),
            ("channel", channel),
            ("email", applicant_email),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_owned()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// What each notice is filled with; must match the placeholders of both templates.
    fn fills(kind: NoticeKind) -> Vec<&'static str> {
        match kind {
            NoticeKind::Application => vec!["deadline", "number"],
            NoticeKind::Refused => vec!["number", "reason"],
            NoticeKind::Issued => vec!["link", "number"],
            NoticeKind::Revoked => vec!["serial", "why"],
            NoticeKind::Renewal => vec!["email", "number", "serial"],
            NoticeKind::IssuanceAlert => vec!["channel", "email", "number", "when"],
        }
    }

    #[test]
    fn every_template_uses_exactly_the_placeholders_it_is_filled_with() {
        for kind in NoticeKind::ALL {
            let (kk, ru) = templates(*kind);
            for (lang, t) in [("kk", kk), ("ru", ru)] {
                assert_eq!(placeholders(t), fills(*kind), "{lang}/{kind}.txt");
                let (subject, body) = split(t);
                assert!(
                    !subject.trim().is_empty(),
                    "{lang}/{kind}.txt has no subject"
                );
                assert!(!body.trim().is_empty(), "{lang}/{kind}.txt has no body");
            }
        }
    }

    #[test]
    fn a_notice_is_in_kazakh_then_russian_with_every_value_in_place() {
        let n = application("a@mail.kz", "R-1234", 86_400);
        assert_eq!(n.kind, NoticeKind::Application);
        assert_eq!(n.recipient, "a@mail.kz");
        assert_eq!(
            n.subject,
            "ҚР ҰКО: өтініш R-1234 / НУЦ РК: заявление R-1234"
        );
        let kk = n.body.find("ХҚКО").expect("Kazakh text");
        let ru = n.body.find("ЦОН").expect("Russian text");
        assert!(kk < ru, "{}", n.body);
        assert!(n.body.contains("1970-01-02T00:00:00Z"), "{}", n.body);
        assert!(!n.body.contains('{') && !n.subject.contains('{'));

        let r = revoked("h@mail.kz", "0a1b", "key compromise");
        assert!(r.subject.contains("0a1b") && r.body.contains("key compromise"));
        let i = issued("h@mail.kz", "R-1", "https://pki.example/R-1");
        assert!(i.body.contains("https://pki.example/R-1"));
        let f = refused("h@mail.kz", "R-2", "documents expired");
        assert!(f.subject.contains("R-2") && f.body.contains("documents expired"));
        let n = renewal("old@mail.kz", "0c0d", "R-3", "new@mail.kz");
        assert_eq!(n.recipient, "old@mail.kz");
        assert!(n.subject.contains("0c0d") && n.body.contains("R-3"));
        assert!(n.body.contains("new@mail.kz"), "{}", n.body);
    }
}
