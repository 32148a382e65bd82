//! The notification sender: works through the outbox table, one message at a time.
//!
//! A message leaves the outbox only when its delivery succeeded; a failed attempt is counted
//! and retried on the next pass, so a failing sink never loses a notification. The file sink
//! writes one RFC 5322 message per file (what a dev or a test reads); the SMTP sink hands each
//! message to a relay (plain SMTP on a trusted network, as a national CA's mail relay is).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::NotificationsConfig;
use nuc_store::Notification;
use nuc_store::Outbox;
use tokio::sync::watch;

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

/// One pass over the pending messages; returns how many were delivered.
pub fn pass(outbox: &dyn Outbox, cfg: &NotificationsConfig, home: &std::path::Path) -> usize {
    let pending = match outbox.pending_notifications(PASS_SIZE) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "outbox unreadable");
            return 0;
        }
    };
    let dir: PathBuf = home.join(&cfg.dir);
    let mut sent = 0;
    let mut outcomes = Vec::with_capacity(pending.len());
    for n in pending {
        let result = match cfg.sink.as_str() {
            "file" => deliver_to_file(&dir, &cfg.from, &n),
            "smtp" => match &cfg.smtp_relay {
                Some(relay) => smtp::deliver(relay, &cfg.from, &n),
                None => {
                    Err("[notifications] sink = \"smtp\" needs smtp_relay = \"host:port\"".into())
                }
            },
            other => Err(format!(
                "notification sink {other:?} is not available in this build"
            )),
        };
        let error = result.err();
        match &error {
            None => {
                sent += 1;
                tracing::info!(id = n.id, kind = %n.kind, "notification delivered");
            }
            Some(e) => {
                tracing::warn!(id = n.id, attempts = n.attempts + 1, error = %e, "notification not delivered; will retry")
            }
        }
        outcomes.push((n.id, error));
    }
    // One commit for the pass. Should it fail, the delivered messages are sent again on the
    // next pass: at least once, never lost.
    if let Err(e) = outbox.notifications_attempted(&outcomes) {
        tracing::error!(error = %e, "could not record the delivery attempts");
    }
    sent
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
        let sent = tokio::task::spawn_blocking(move || pass(outbox2.as_ref(), &cfg2, &home2))
            .await
            .unwrap_or(0);
        if sent == PASS_SIZE as usize {
            continue; // a full pass: there is more waiting, no pause
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// A minimal SMTP client (RFC 5321): one connection per message, every reply checked.
mod smtp {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    use nuc_store::Notification;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn reply(r: &mut BufReader<TcpStream>, want: &[u16], step: &str) -> Result<(), String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)
                .map_err(|e| format!("SMTP {step}: {e}"))?
                == 0
            {
                return Err(format!("SMTP {step}: the relay closed the connection"));
            }
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("SMTP {step}: bad reply {line:?}"))?;
            if line.as_bytes().get(3) == Some(&b'-') {
                continue; // a multi-line reply goes on
            }
            return if want.contains(&code) {
                Ok(())
            } else {
                Err(format!("SMTP {step}: relay answered {}", line.trim_end()))
            };
        }
    }

    fn header_text(s: &str) -> String {
        if s.is_ascii() {
            s.to_owned()
        } else {
            format!(
                "=?UTF-8?B?{}?=",
                openssl::base64::encode_block(s.as_bytes())
            )
        }
    }

    fn address(s: &str) -> Result<&str, String> {
        if s.is_empty() || s.contains(['<', '>', '\r', '\n', ' ']) {
            return Err(format!("SMTP: {s:?} is not a deliverable address"));
        }
        Ok(s)
    }

    pub fn deliver(relay: &str, from: &str, n: &Notification) -> Result<(), String> {
        let (from, to) = (address(from)?, address(&n.recipient)?);
        let addr = relay
            .to_socket_addrs()
            .map_err(|e| format!("SMTP relay {relay}: {e}"))?
            .next()
            .ok_or_else(|| format!("SMTP relay {relay}: no address"))?;
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(|e| format!("SMTP relay {relay}: {e}"))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut w = stream.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::new(stream);
        let mut say = |text: &str,
                       r: &mut BufReader<TcpStream>,
                       want: &[u16],
                       step: &str|
         -> Result<(), String> {
            w.write_all(text.as_bytes())
                .map_err(|e| format!("SMTP {step}: {e}"))?;
            reply(r, want, step)
        };
        reply(&mut r, &[220], "greeting")?;
        say("EHLO nuc.localdomain\r\n", &mut r, &[250], "EHLO")?;
        say(
            &format!("MAIL FROM:<{from}>\r\n"),
            &mut r,
            &[250],
            "MAIL FROM",
        )?;
        say(
            &format!("RCPT TO:<{to}>\r\n"),
            &mut r,
            &[250, 251],
            "RCPT TO",
        )?;
        say("DATA\r\n", &mut r, &[354], "DATA")?;
        let body = openssl::base64::encode_block(n.body.as_bytes());
        let wrapped: Vec<&str> = body
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        let message = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\
             X-Nuc-Request: {}\r\n\r\n{}\r\n.\r\n",
            header_text(&n.subject),
            n.request_number.as_deref().unwrap_or("-"),
            wrapped.join("\r\n")
        );
        say(&message, &mut r, &[250], "message")?;
        let _ = say("QUIT\r\n", &mut r, &[221], "QUIT");
        Ok(())
    }
}
