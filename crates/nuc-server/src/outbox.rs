//! The notification sender: works through the outbox table, one message at a time.
//!
//! A message leaves the outbox only when its delivery succeeded. A failed attempt is counted
//! and the message waits before the next one, twice as long after each failure up to a cap
//! (`[notifications] retry_base_secs`, `retry_max_secs`); the attempt that reaches
//! `max_attempts` makes it a dead letter, left alone until an administrator revives it (`nuc
//! outbox retry`). A failing sink thus never loses a notification, nor is it hammered forever.
//! The file sink writes one RFC 5322 message per file (what a dev or a test reads); the SMTP
//! sink hands each message to a relay (plain SMTP on a trusted network, as a national CA's mail
//! relay is) through `lettre`, which builds the MIME message and encodes its headers.
//!
//! It never logs a message's body, nor a recipient's address: a message is named by its id,
//! and the addresses in a relay's error text are masked.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::NotificationsConfig;
use nuc_store::Outbox;
use nuc_store::{AttemptRecorded, DeliveryAttempt, Notification};
use tokio::sync::watch;

/// Failed delivery attempts since the process started (for the metrics exporter).
static FAILED_ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// Failed delivery attempts since the process started, of every sender pass in it.
pub fn failed_attempts() -> u64 {
    FAILED_ATTEMPTS.load(Ordering::Relaxed)
}

/// An e-mail address with its local part hidden but its first character:
/// `person@mail.example.kz` → `p***@mail.example.kz`. Something that is not an address is
/// hidden whole.
pub fn mask_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".into(),
    }
}

/// `text` with every word that holds an `@` (an address, perhaps in `<…>`) masked: a relay's
/// refusal often quotes the recipient.
pub fn mask_addresses_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            let trimmed = word.trim_matches(|c: char| "<>\"'(),;:[]".contains(c));
            let start = word.find(trimmed).unwrap_or(0);
            out.push_str(&word[..start]);
            out.push_str(&mask_address(trimmed));
            out.push_str(&word[start + trimmed.len()..]);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Messages per pass (and per commit of their outcomes).
const PASS_SIZE: i64 = 100;

fn deliver_to_file(dir: &std::path::Path, from: &str, n: &Notification) -> Result<(), String> {
    crate::private_home::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let final_path = dir.join(format!("{:08}-{}.eml", n.id, n.kind));
    let tmp = dir.join(format!(".{:08}.tmp", n.id));
    let mut f =
        crate::private_home::create_file(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    write!(
        f,
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Nuc-Request: {}\r\n\r\n{}",
        n.recipient,
        n.subject,
        n.request_number.as_deref().unwrap_or("-"),
        n.body
    )
    .and_then(|_| f.sync_all())
    .map_err(|e| format!("{}: {e}", tmp.display()))?;
    // Renamed into place only once complete: a reader never sees half a message.
    std::fs::rename(&tmp, &final_path).map_err(|e| format!("{}: {e}", final_path.display()))
}

/// One pass over the pending messages; returns how many were due (delivered or not).
pub fn pass(outbox: &dyn Outbox, cfg: &NotificationsConfig, home: &std::path::Path) -> usize {
    let pending = match outbox.pending_notifications(PASS_SIZE) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "outbox unreadable");
            return 0;
        }
    };
    let due = pending.len();
    let dir: PathBuf = home.join(&cfg.dir);
    let mut attempts = Vec::with_capacity(pending.len());
    for n in &pending {
        let result = match cfg.sink.as_str() {
            "file" => deliver_to_file(&dir, &cfg.from, n),
            "smtp" => match &cfg.smtp_relay {
                Some(relay) => smtp::deliver(relay, &cfg.from, n),
                None => {
                    Err("[notifications] sink = \"smtp\" needs smtp_relay = \"host:port\"".into())
                }
            },
            other => Err(format!(
                "notification sink {other:?} is not available in this build"
            )),
        };
        if result.is_err() {
            FAILED_ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        }
        attempts.push(DeliveryAttempt {
            id: n.id,
            attempts_before: n.attempts,
            error: result.err(),
        });
    }
    if attempts.is_empty() {
        return 0;
    }
    // One commit for the pass. Should it fail, the delivered messages are sent again on the
    // next pass: at least once, never lost.
    match outbox.notifications_attempted(&attempts, &cfg.retry_policy()) {
        Ok(recorded) => {
            for ((a, n), r) in attempts.iter().zip(&pending).zip(recorded) {
                report(a, n, r);
            }
        }
        Err(e) => tracing::error!(error = %e, "could not record the delivery attempts"),
    }
    due
}

/// Logs what became of an attempt: a failure with its attempt number and the next attempt's
/// time, a dead letter loudly.
fn report(a: &DeliveryAttempt, n: &Notification, recorded: AttemptRecorded) {
    let error = a.error.as_deref().map(mask_addresses_in);
    let error = error.as_deref().unwrap_or("");
    match recorded {
        AttemptRecorded::Sent => {
            tracing::info!(id = n.id, kind = %n.kind, "notification delivered")
        }
        AttemptRecorded::Retry {
            attempts,
            next_attempt_at,
        } => tracing::warn!(
            id = n.id,
            kind = %n.kind,
            attempt = attempts,
            next_attempt_at = %nuc_core::time::rfc3339(next_attempt_at),
            error,
            "notification not delivered; will retry"
        ),
        AttemptRecorded::Dead { attempts } => tracing::error!(
            id = n.id,
            kind = %n.kind,
            attempts,
            error,
            "notification not delivered after its last attempt: now a dead letter (see `nuc outbox dead`)"
        ),
        AttemptRecorded::Stale => tracing::info!(
            id = n.id,
            "delivery attempt not recorded: the message was attempted meanwhile (another instance)"
        ),
    }
}

/// Runs passes every `interval_secs` until `stop` turns true (then one last pass).
pub async fn run(
    outbox: Arc<dyn Outbox>,
    cfg: NotificationsConfig,
    home: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs(cfg.interval_secs.max(1));
    loop {
        let (outbox2, cfg2, home2) = (outbox.clone(), cfg.clone(), home.clone());
        let due = tokio::task::spawn_blocking(move || pass(outbox2.as_ref(), &cfg2, &home2))
            .await
            .unwrap_or(0);
        if due == PASS_SIZE as usize {
            continue; // a full pass: there is more waiting, no pause
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Delivery to the SMTP relay through `lettre`: one plain SMTP connection per message (no
/// TLS: the relay is on a trusted network), every reply checked. The message is UTF-8
/// text/plain with a base64 body; the subject is RFC 2047-encoded by lettre, folded into
/// encoded-words of at most 75 characters.
mod smtp {
    use std::time::Duration;

    use lettre::message::header::{
        ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
    };
    use lettre::message::{Mailbox, SinglePart};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{Message, SmtpTransport, Transport};
    use nuc_store::Notification;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// `X-Nuc-Request`: the request a notice is about (`-` for none).
    #[derive(Clone)]
    struct NucRequest(String);

    impl Header for NucRequest {
        fn name() -> HeaderName {
            HeaderName::new_from_ascii_str("X-Nuc-Request")
        }

        fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
            Ok(Self(s.to_owned()))
        }

        fn display(&self) -> HeaderValue {
            HeaderValue::new(Self::name(), self.0.clone())
        }
    }

    fn mailbox(s: &str) -> Result<Mailbox, String> {
        s.parse::<lettre::Address>()
            .map(|a| Mailbox::new(None, a))
            .map_err(|e| format!("SMTP: {s:?} is not a deliverable address: {e}"))
    }

    /// `host:port` (an IPv6 host in brackets) into its parts.
    fn relay_parts(relay: &str) -> Result<(&str, u16), String> {
        let bad = || format!("SMTP relay {relay}: not host:port");
        let (host, port) = relay.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok((host, port))
    }

    pub(super) fn message(from: &str, n: &Notification) -> Result<Message, String> {
        Message::builder()
            .from(mailbox(from)?)
            .to(mailbox(&n.recipient)?)
            .subject(n.subject.clone())
            .header(NucRequest(
                n.request_number.clone().unwrap_or_else(|| "-".into()),
            ))
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .header(ContentTransferEncoding::Base64)
                    .body(n.body.clone()),
            )
            .map_err(|e| format!("SMTP: message not built: {e}"))
    }

    pub fn deliver(relay: &str, from: &str, n: &Notification) -> Result<(), String> {
        let message = message(from, n)?;
        let (host, port) = relay_parts(relay)?;
        let transport = SmtpTransport::builder_dangerous(host)
            .port(port)
            .hello_name(ClientId::Domain("nuc.localdomain".into()))
            .timeout(Some(TIMEOUT))
            .build();
        transport
            .send(&message)
            .map(|_| ())
            .map_err(|e| format!("SMTP relay {relay}: {e}"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn relay_forms() {
            assert_eq!(relay_parts("127.0.0.1:25"), Ok(("127.0.0.1", 25)));
            assert_eq!(relay_parts("[::1]:2525"), Ok(("::1", 2525)));
            assert_eq!(
                relay_parts("mail.example.kz:587"),
                Ok(("mail.example.kz", 587))
            );
            assert!(relay_parts("mail.example.kz").is_err());
            assert!(relay_parts(":25").is_err());
            assert!(relay_parts("host:x").is_err());
        }

        /// A subject with no ASCII word to break it: still encoded-words of <= 75 characters,
        /// on folded lines; the body in base64 of its UTF-8 in canonical (CRLF) form.
        #[test]
        fn a_long_subject_is_split_into_short_encoded_words() {
            let subject = "Қазақстан Республикасының Ұлттық куәландырушы орталығы: \
                           сертификаттарыңыз шығарылды / Национальный удостоверяющий центр \
                           Республики Казахстан: ваши сертификаты выпущены";
            let n = Notification {
                id: 1,
                kind: nuc_core::NoticeKind::Issued,
                recipient: "person@mail.example.kz".into(),
                subject: subject.into(),
                body: "Сәлем.\nЗдравствуйте.\n".into(),
                request_number: None,
                attempts: 0,
            };
            let raw =
                String::from_utf8(message("noreply@pki.gov.kz", &n).unwrap().formatted()).unwrap();
            assert!(raw.is_ascii(), "{raw}");
            let head = raw.split("\r\n\r\n").next().unwrap();
            assert!(head.lines().all(|l| l.len() <= 78), "{head}");
            let words: Vec<&str> = head
                .split([' ', '\r', '\n'])
                .filter(|w| w.starts_with("=?"))
                .collect();
            assert!(words.len() > 2, "{head}");
            assert!(
                words.iter().all(|w| w.len() <= 75 && w.ends_with("?=")),
                "{head}"
            );
            assert!(head.contains("X-Nuc-Request: -\r\n"), "{head}");
            assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_in_a_relay_refusal() {
        assert_eq!(
            mask_address("person@mail.example.kz"),
            "p***@mail.example.kz"
        );
        assert_eq!(mask_address("nobody"), "***");
        assert_eq!(mask_address("@x"), "***");
        assert_eq!(
            mask_addresses_in(
                "SMTP relay 127.0.0.1:25: permanent error (550): 5.1.1 <person@mail.example.kz>: no such user"
            ),
            "SMTP relay 127.0.0.1:25: permanent error (550): 5.1.1 <p***@mail.example.kz>: no such user"
        );
        assert_eq!(
            mask_addresses_in("to=Ақерке@пошта.kz,\tok"),
            "t***@пошта.kz,\tok"
        );
    }
}
