//! E-mail retries as the relay sees them: the real `nuc` service sends a notice to a relay on
//! 127.0.0.1 (a minimal SMTP server in this test) that refuses every recipient with a
//! temporary 451 until told otherwise. With `[notifications] max_attempts = 3` and
//! `retry_base_secs = 3`, the relay must see exactly three attempts, the second wait longer
//! than the first (3 s, then 6 s), and then no more: the message is a dead letter, in the
//! store, in `nuc outbox dead` (its recipient masked) and in the audit log. `nuc outbox retry`
//! revives it, and once the relay accepts, it is delivered, once.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nuc_e2e::api::*;

/// What the relay saw: when each attempt (a RCPT) came, and the messages it took (the DATA).
#[derive(Default)]
struct Seen {
    attempts: Vec<Instant>,
    delivered: Vec<String>,
}

/// A relay that refuses every RCPT with 451 (quoting the address, as relays do) while
/// `accept` is false, and takes the message when it is true.
fn relay(listener: std::net::TcpListener, accept: Arc<AtomicBool>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut w) = conn else { return };
            let mut r = BufReader::new(w.try_clone().unwrap());
            let _ = w.write_all(b"220 relay.test ESMTP\r\n");
            let (mut in_data, mut data) = (false, String::new());
            loop {
                let mut line = Vec::new();
                if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if in_data {
                    if text == ".\r\n" {
                        in_data = false;
                        out.lock()
                            .unwrap()
                            .delivered
                            .push(std::mem::take(&mut data));
                        let _ = w.write_all(b"250 queued\r\n");
                    } else {
                        data.push_str(&text);
                    }
                    continue;
                }
                let verb = text.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply = match verb.as_str() {
                    "EHLO" => "250-relay.test\r\n250 HELP\r\n".to_owned(),
                    "HELO" | "RSET" | "NOOP" | "MAIL" => "250 ok\r\n".to_owned(),
                    "RCPT" => {
                        out.lock().unwrap().attempts.push(Instant::now());
                        if accept.load(Ordering::SeqCst) {
                            "250 ok\r\n".to_owned()
                        } else {
                            let to = text.trim_end().trim_start_matches("RCPT TO:");
                            format!("451 4.7.1 {to}: greylisted, try again later\r\n")
                        }
                    }
                    "DATA" => {
                        in_data = true;
                        "354 end with .\r\n".to_owned()
                    }
                    "QUIT" => {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => "502 not here\r\n".to_owned(),
                };
                let _ = w.write_all(reply.as_bytes());
            }
        }
    });
    seen
}

/// Waits until `done` holds, for at most `secs`.
fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_tried_three_times_further_apart_then_dead_until_revived() {
    let mut svc = Service::start();
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let accept = Arc::new(AtomicBool::new(false));
    let seen = relay(listener, accept.clone());
    let config = svc.home.home().join("nuc.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (default, ours) in [
        (
            "sink = \"file\"".to_owned(),
            format!("sink = \"smtp\"\nsmtp_relay = \"127.0.0.1:{relay_port}\""),
        ),
        ("interval_secs = 2".into(), "interval_secs = 1".into()),
        ("max_attempts = 10".into(), "max_attempts = 3".into()),
        ("retry_base_secs = 30".into(), "retry_base_secs = 3".into()),
        ("retry_max_secs = 3600".into(), "retry_max_secs = 60".into()),
    ] {
        assert!(text.contains(&default), "{default} not in {text}");
        text = text.replace(&default, &ours);
    }
    std::fs::write(&config, text).unwrap();
    svc.restart(&[]);
    let home = svc.home.home_str();

    let mut portal = svc.portal().await;
    let number = portal
        .submit_application(application("retry").0)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let (id, recipient): (i64, String) = svc.home.db().row(
        "SELECT id, recipient FROM notifications WHERE kind = 'application' AND request_number = ?1",
        &[&number],
    );

    // Three attempts, then a dead letter.
    wait_for(25, "the dead letter", || {
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM notifications WHERE id = {id} AND dead_at IS NOT NULL"
        )) == 1
    });
    // Three more passes: nothing more reaches the relay.
    std::thread::sleep(Duration::from_millis(3500));
    let attempts = seen.lock().unwrap().attempts.clone();
    assert_eq!(attempts.len(), 3, "attempts at the relay");
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // Waits of 3 s then 6 s, counted in whole seconds and seen by passes 1 s apart.
    assert!((2.0..=4.5).contains(&gaps[0]), "{gaps:?}");
    assert!((5.0..=7.5).contains(&gaps[1]), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "{gaps:?}");

    let (attempts_stored, last_error, sent_at): (i64, String, Option<i64>) = svc.home.db().row(
        "SELECT attempts, last_error, sent_at FROM notifications WHERE id = ?1",
        &[&id],
    );
    assert_eq!(attempts_stored, 3);
    assert!(last_error.contains("451"), "{last_error}");
    assert_eq!(sent_at, None);

    // The administrator's list: the dead letter, its recipient masked everywhere.
    let dead = svc.nuc(&["outbox", "dead", "--home", &home]);
    assert_eq!(dead.code, Some(0), "{}", dead.stderr);
    let lines: Vec<&str> = dead.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", dead.stdout);
    let line = lines[0];
    for field in [
        format!("id={id} "),
        "kind=application ".into(),
        format!("request={number} "),
        "attempts=3 ".into(),
        "dead_at=20".into(),
        "(451): 4.7.1 <".into(),
    ] {
        assert!(line.contains(&field), "{field} not in {line}");
    }
    let (local, domain) = recipient.split_once('@').unwrap();
    assert!(local.len() > 1, "{recipient}");
    assert!(!line.contains(&recipient), "{line}");
    let masked = format!("{}***@{domain}", &local[..1]);
    assert!(line.contains(&format!("recipient={masked} ")), "{line}");
    assert!(line.contains(&format!("<{masked}>: greylisted")), "{line}");

    // The service's log: each failure with its attempt and next time, the dead letter loudly,
    // and the address never.
    let log = std::fs::read_to_string(svc.home.path("serve.log")).unwrap();
    assert!(!log.contains(&recipient), "the recipient in the log");
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("notification not delivered; will retry"))
        .collect();
    assert_eq!(retries.len(), 2, "{log}");
    for (i, l) in retries.iter().enumerate() {
        assert!(l.contains("WARN"), "{l}");
        assert!(l.contains(&format!("attempt={}", i + 1)), "{l}");
        assert!(l.contains("next_attempt_at=20"), "{l}");
    }
    let died: Vec<&str> = log.lines().filter(|l| l.contains("dead letter")).collect();
    assert_eq!(died.len(), 1, "{log}");
    assert!(
        died[0].contains("ERROR") && died[0].contains(&format!("id={id}")),
        "{}",
        died[0]
    );

    // A typo is refused; the right id is revived (with its audit record) and delivered once
    // the relay accepts.
    let wrong = svc.nuc(&[
        "outbox",
        "retry",
        "--home",
        &home,
        "--id",
        &(id + 1000).to_string(),
    ]);
    assert_eq!(wrong.code, Some(2), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("no dead letter"), "{}", wrong.stderr);
    accept.store(true, Ordering::SeqCst);
    let revived = svc.nuc(&["outbox", "retry", "--home", &home, "--id", &id.to_string()]);
    assert_eq!(revived.code, Some(0), "{}", revived.stderr);
    assert_eq!(revived.stdout, format!("revived id={id}\n"));
    wait_for(10, "the delivery", || {
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM notifications WHERE id = {id} AND sent_at IS NOT NULL"
        )) == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.attempts.len(), 4, "one more attempt");
        assert_eq!(seen.delivered.len(), 1, "delivered once");
        assert!(seen.delivered[0].contains(&format!("X-Nuc-Request: {number}")));
    }
    let (attempts_stored, dead_at): (i64, Option<i64>) = svc.home.db().row(
        "SELECT attempts, dead_at FROM notifications WHERE id = ?1",
        &[&id],
    );
    assert_eq!((attempts_stored, dead_at), (1, None));
    let dead = svc.nuc(&["outbox", "dead", "--home", &home]);
    assert_eq!(
        (dead.code, dead.stdout.as_str()),
        (Some(0), ""),
        "{}",
        dead.stderr
    );

    // The audit log: given up by the sender after three attempts, revived by the administrator.
    let records: Vec<(String, String, String)> = svc.home.db().rows(
        "SELECT action, actor, details FROM audit_log WHERE object = ?1 ORDER BY seq",
        &[&format!("notification:{id}")],
    );
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].0, "notification.dead");
    assert_eq!(records[0].1, "system:outbox");
    let details: serde_json::Value = serde_json::from_str(&records[0].2).unwrap();
    assert_eq!(
        details,
        serde_json::json!({"kind": "application", "request": number, "attempts": 3})
    );
    assert_eq!(records[1].0, "notification.revived");
    assert!(records[1].1.starts_with("cli:"), "{}", records[1].1);
    let details: serde_json::Value = serde_json::from_str(&records[1].2).unwrap();
    assert_eq!(details["attempts_before"], 3);
    assert!(!records.iter().any(|r| r.2.contains(&recipient)));
}
