//! The card side of vpcd's protocol: connect to the virtual reader and answer it.
//!
//! Framing: a 2-byte big-endian length, then the payload. A 1-byte payload from vpcd is a
//! control code (power off, power on, reset: no answer; get ATR: the ATR); a longer one is a
//! C-APDU, answered with the R-APDU. Closing the connection pulls the card out.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::applet::Applet;
use crate::state::Store;

/// vpcd's default address (reader.conf's CHANNELID 0x8C7B).
pub const DEFAULT_ADDR: &str = "127.0.0.1:35963";

const CTRL_OFF: u8 = 0x00;
const CTRL_ON: u8 = 0x01;
const CTRL_RESET: u8 = 0x02;
const CTRL_ATR: u8 = 0x04;

/// When the card is pulled out by itself, for tests of interrupted operations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Removal {
    /// Answer this many APDUs, then pull the card out when the next one arrives.
    pub after_apdus: Option<u64>,
    /// Execute that next APDU before pulling out: its effect happens, its answer is lost.
    pub lose_answer: bool,
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// vpcd closed the connection (pcscd stopped, or the reader went away).
    ReaderClosed { apdus: u64 },
    /// The card was pulled out as [`Removal`] asked.
    Removed { apdus: u64 },
}

/// Connects to vpcd, retrying until `timeout` (pcscd may still be starting). `TCP_NODELAY` is
/// set: without it every small answer waits for a delayed ACK (~40-50 ms per APDU).
pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    loop {
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_millis(500)) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Something to tell about each APDU, for `--trace`.
pub type Trace<'a> = &'a mut dyn FnMut(&[u8], &[u8]);

/// Answers vpcd until it closes the connection or the card is pulled out.
pub fn serve<S: Store>(
    mut stream: TcpStream,
    applet: &mut Applet<S>,
    removal: Removal,
    trace: Option<Trace<'_>>,
) -> io::Result<Ended> {
    let mut trace = trace;
    let mut apdus = 0u64;
    applet.reset();
    loop {
        let Some(message) = read_message(&mut stream)? else {
            applet.reset();
            return Ok(Ended::ReaderClosed { apdus });
        };
        match message.as_slice() {
            [] => {}
            [CTRL_OFF] | [CTRL_ON] | [CTRL_RESET] => applet.reset(),
            [CTRL_ATR] => write_message(&mut stream, &applet.atr())?,
            // An unknown control code: nothing to answer, nothing to do.
            [_] => {}
            apdu => {
                if removal.after_apdus == Some(apdus) {
                    if removal.lose_answer {
                        applet.process(apdu);
                    }
                    applet.reset();
                    // Dropping the stream closes it: the reader sees the card go.
                    return Ok(Ended::Removed { apdus });
                }
                let answer = applet.process(apdu);
                if let Some(t) = trace.as_mut() {
                    t(apdu, &answer);
                }
                write_message(&mut stream, &answer)?;
                apdus += 1;
            }
        }
    }
}

/// One message, or `None` when vpcd closed the connection between messages.
fn read_message(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    ack_at_once(stream);
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if is_closed(&e) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    match stream.read_exact(&mut payload) {
        Ok(()) => Ok(Some(payload)),
        Err(e) if is_closed(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// vpcd sends the length and the payload of a message in two writes without TCP_NODELAY, so
/// its payload waits (Nagle) until the length is acknowledged; a delayed ACK here would cost
/// ~40 ms per APDU. Linux leaves quick-ACK mode by itself, so this is asked before every read.
fn ack_at_once(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::TcpStreamExt;
        // Only speed is at stake: a failure here changes nothing else.
        let _ = stream.set_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// One message in one write, so that it leaves in one segment.
fn write_message(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535 bytes"))?;
    let mut buf = Vec::with_capacity(payload.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    stream.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::CardKind;
    use crate::state::{CardState, MemoryStore};
    use std::net::TcpListener;

    /// A stand-in for vpcd: listen, let the card connect, speak the framing.
    #[test]
    fn framing_control_codes_and_removal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let card = std::thread::spawn(move || {
            let state = CardState::personalise(CardKind::Sim, b"1234", None).unwrap();
            let mut applet = Applet::new(state, MemoryStore::default());
            let stream = connect(&addr, Duration::from_secs(5)).unwrap();
            let removal = Removal {
                after_apdus: Some(2),
                lose_answer: false,
            };
            serve(stream, &mut applet, removal, None).unwrap()
        });
        let (mut vpcd, _) = listener.accept().unwrap();
        let mut ask = |payload: &[u8], answered: bool| {
            write_message(&mut vpcd, payload).unwrap();
            if answered {
                read_message(&mut vpcd).unwrap()
            } else {
                None
            }
        };
        ask(&[CTRL_ON], false);
        assert_eq!(ask(&[CTRL_ATR], true).unwrap(), CardKind::Sim.atr());
        let mut select = vec![0, 0xA4, 4, 0x0C, CardKind::Sim.aid().len() as u8];
        select.extend_from_slice(CardKind::Sim.aid());
        assert_eq!(ask(&select, true).unwrap(), [0x90, 0x00]);
        assert_eq!(ask(&[0, 0xCA, 1, 0, 0], true).unwrap()[..2], [0x80, 0x01]);
        // The third APDU finds the card gone.
        assert_eq!(ask(&[0, 0xCA, 1, 0, 0], true), None);
        assert_eq!(card.join().unwrap(), Ended::Removed { apdus: 2 });
    }
}
