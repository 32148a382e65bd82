//! E-mail as a mail client sees it: the real `nuc` service sends a notice through its SMTP
//! sink to a relay on 127.0.0.1 (a minimal SMTP server in this test that keeps what follows
//! DATA), and Python's `email` package (policy=default) reads the message back. The notice of
//! an application has a Kazakh / Russian subject far longer than one RFC 2047 encoded-word may
//! be (75 characters): it must come back exactly, in encoded-words of at most 75 characters,
//! on header lines of at most 998, in a message of 7-bit ASCII.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use nuc_e2e::api::*;
use nuc_e2e::*;

/// One message as the relay received it: the envelope and the content after DATA, with the
/// dot-stuffing undone.
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
}

/// A relay that speaks just enough SMTP (RFC 5321) to take messages, one per connection. It
/// advertises no 8BITMIME nor SMTPUTF8: what it takes must be 7-bit.
fn smtp_sink(listener: std::net::TcpListener) -> std::sync::mpsc::Receiver<Received> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut w) = conn else { return };
            let mut r = BufReader::new(w.try_clone().unwrap());
            let _ = w.write_all(b"220 sink.test ESMTP\r\n");
            let mut got = Received {
                mail_from: String::new(),
                rcpt_to: Vec::new(),
                data: Vec::new(),
            };
            let mut in_data = false;
            let mut complete = false;
            loop {
                let mut line = Vec::new();
                if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == b".\r\n" {
                        in_data = false;
                        complete = true;
                        let _ = w.write_all(b"250 queued\r\n");
                    } else if line.starts_with(b".") {
                        got.data.extend_from_slice(&line[1..]);
                    } else {
                        got.data.extend_from_slice(&line);
                    }
                    continue;
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                let verb = text.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-sink.test\r\n250 HELP\r\n",
                    "HELO" | "RSET" | "NOOP" => b"250 ok\r\n",
                    "MAIL" => {
                        got.mail_from = text;
                        b"250 ok\r\n"
                    }
                    "RCPT" => {
                        got.rcpt_to.push(text);
                        b"250 ok\r\n"
                    }
                    "DATA" => {
                        in_data = true;
                        b"354 end with .\r\n"
                    }
                    "QUIT" => {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => b"502 not here\r\n",
                };
                let _ = w.write_all(reply);
            }
            if complete {
                let _ = tx.send(got);
            }
        }
    });
    rx
}

/// The service with its notices going out by SMTP to [`smtp_sink`].
fn service_sending_to_a_relay() -> (Service, std::sync::mpsc::Receiver<Received>) {
    let mut svc = Service::start();
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let received = smtp_sink(listener);
    let config = svc.home.home().join("nuc.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("sink = \"file\""), "{text}");
    std::fs::write(
        &config,
        text.replace(
            "sink = \"file\"",
            &format!("sink = \"smtp\"\nsmtp_relay = \"127.0.0.1:{relay_port}\""),
        ),
    )
    .unwrap();
    svc.restart(&[]);
    (svc, received)
}

/// What a mail client (Python's `email`, policy=default) reads of a received message.
fn as_a_mail_client_reads_it(got: &Received) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("received.eml");
    std::fs::write(&eml, &got.data).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mail_check.py");
    let out = std::process::Command::new(python())
        .args(["-W", "error"])
        .arg(&script)
        .arg(&eml)
        .output()
        .expect("python (run `make deps`)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_kazakh_subject_arrives_whole_in_short_encoded_words() {
    let (svc, received) = service_sending_to_a_relay();
    let mut portal = svc.portal().await;
    let number = portal
        .submit_application(application("mail").0)
        .await
        .unwrap()
        .into_inner()
        .request_number;

    let got = received
        .recv_timeout(Duration::from_secs(20))
        .expect("a message reached the relay");
    // What the outbox holds is what must arrive.
    let (recipient, subject, body): (String, String, String) = svc.home.db().row(
        "SELECT recipient, subject, body FROM notifications \
         WHERE kind = 'application' AND request_number = ?1",
        &[&number],
    );
    assert!(subject.contains(&number), "{subject}");
    assert!(subject.contains("өтініш"), "{subject}");
    assert!(subject.contains("заявление"), "{subject}");
    // base64 of the UTF-8 subject alone is longer than an encoded-word may be.
    assert!(subject.len().div_ceil(3) * 4 > 75, "{subject}");
    assert!(body.contains(&number), "{body}");

    assert_eq!(got.mail_from, "MAIL FROM:<noreply@pki.gov.kz>");
    assert_eq!(got.rcpt_to, [format!("RCPT TO:<{recipient}>")]);
    assert!(
        got.data.is_ascii(),
        "{}",
        String::from_utf8_lossy(&got.data)
    );
    let data = String::from_utf8(got.data.clone()).unwrap();
    for line in data.split("\r\n") {
        assert!(!line.contains('\n'), "a bare LF in {data:?}");
        assert!(line.len() <= 998, "a line of {} characters", line.len());
    }

    let seen = as_a_mail_client_reads_it(&got);
    let field = |k: &str| seen[k].as_str().unwrap_or_else(|| panic!("{k}: {seen}"));

    assert_eq!(field("subject"), subject, "{data}");
    // text/plain travels in canonical form: lines end in CRLF.
    assert_eq!(field("body"), body.replace('\n', "\r\n"), "{data}");
    assert_eq!(field("from"), "noreply@pki.gov.kz");
    assert_eq!(field("to"), recipient);
    assert_eq!(field("request"), number);
    assert_eq!(field("content_type"), "text/plain");
    assert_eq!(field("charset"), "utf-8");
    assert_eq!(field("mime_version"), "1.0");
    assert!(
        ["base64", "quoted-printable"]
            .contains(&field("transfer_encoding").to_ascii_lowercase().as_str()),
        "{data}"
    );
    assert_eq!(seen["defects"], serde_json::json!([]), "{data}");
    for line in seen["header_lines"].as_array().unwrap() {
        let line = line.as_str().unwrap();
        assert!(line.len() <= 998, "a header line of {}: {line}", line.len());
    }
    let words: Vec<&str> = seen["encoded_words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(words.len() >= 2, "the subject in one encoded-word: {data}");
    for w in &words {
        assert!(w.len() <= 75, "an encoded-word of {}: {w}", w.len());
    }
    let subject_lines: Vec<&str> = data
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Subject:"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l)
        .collect();
    assert!(
        subject_lines.len() >= 2,
        "the subject is not folded: {data}"
    );

    // Delivered: the outbox records it and holds nothing more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while svc
        .home
        .count("SELECT COUNT(*) FROM notifications WHERE sent_at IS NULL")
        != 0
    {
        assert!(Instant::now() < deadline, "not marked sent");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Someone applies in ҚҰНАНБАЙ АБАЙ's name and gives their own address: when the certificates
/// are issued, the alert reaches the address the registry has for him, saying what was issued
/// and to which address the applicant had it announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuance_alert_reaches_the_address_on_record_when_the_applicant_gave_another() {
    const ON_RECORD: &str = "person1@mail.example.kz"; // the registry fixture's, for IIN
    const GIVEN: &str = "someone.else@mail.example.kz";
    let (svc, received) = service_sending_to_a_relay();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let (app, _, _) = application_of("alert", IIN, GIVEN);
    let number = portal
        .submit_application(app)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    ws.decide_application(nuc_api::v1::DecideApplicationRequest {
        request_number: number.clone(),
        operator_serial_hex: op.serial.clone(),
        signed_decision: decision(
            &op,
            &number,
            nuc_api::v1::operator_decision::Decision::Confirm,
            "",
        ),
    })
    .await
    .expect("issued");

    // Stored with the issuance: the applicant's notice to the address given, the alert to the
    // one on record.
    let stored: Vec<(String, String)> = svc.home.db().rows(
        "SELECT kind, recipient FROM notifications WHERE request_number = ?1 ORDER BY id",
        &[&number],
    );
    assert_eq!(
        stored,
        [
            ("application".to_owned(), GIVEN.to_owned()),
            ("issued".to_owned(), GIVEN.to_owned()),
            ("issuance-alert".to_owned(), ON_RECORD.to_owned()),
        ]
    );

    // Delivered: the relay takes the alert for the address on record, and a mail client
    // reads what was issued, when, how, and the address the applicant gave.
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = received
            .recv_timeout(left)
            .expect("the alert reached the relay");
        if got.rcpt_to == [format!("RCPT TO:<{ON_RECORD}>")] {
            break got;
        }
        assert_eq!(got.rcpt_to, [format!("RCPT TO:<{GIVEN}>")]);
    };
    let seen = as_a_mail_client_reads_it(&alert);
    assert_eq!(seen["to"], ON_RECORD);
    assert_eq!(seen["request"], number.as_str());
    assert_eq!(seen["defects"], serde_json::json!([]));
    let subject = seen["subject"].as_str().unwrap();
    let body = seen["body"].as_str().unwrap();
    assert!(subject.contains(&number), "{subject}");
    for what in [
        number.as_str(),
        GIVEN,
        "ЦОН",
        "ХҚКО",
        "pki.gov.kz",
        "отзовите",
    ] {
        assert!(body.contains(what), "{what} not in {body}");
    }
}
