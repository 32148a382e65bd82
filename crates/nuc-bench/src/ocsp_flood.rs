//! OCSP under attack (review finding 4): what a nonce flood does to F1, and how much memory
//! 100,000 OCSP requests with unique CertIDs take.
//!
//! * **F1 under a nonce flood**: the real `nuc serve` and `nuc-registry` (as in [`crate::f1`]),
//!   `--clients` F1 clients. After `--f1-warmup` F1s, `--flood-f1-count` F1s are measured
//!   without load, then as many again while `--flood-clients` keep-alive HTTP clients post OCSP
//!   requests with a nonce to `/ocsp` as fast as they are answered (every one of them a fresh
//!   signature by the OCSP signer if it were let through). Both runs in the same service, in
//!   the same run; printed: F1 p50/p99 of each, and the flood's answers by status (successful,
//!   tryLater…) and rate.
//! * **Memory under unique CertIDs**: then `--flood-unique` requests without a nonce, each with
//!   a CertID never asked before under our issuing CA, one in two with an ordinary 20-octet
//!   serial (signed, and cached) and one in two with a `--flood-long-octets`-octet serial (what
//!   the review sent). Printed: the service's peak RSS (VmHWM from /proc) before and after, its
//!   RSS after, and the answers by status.
//!
//! No target: the figures are what the closing note of issue 10 reports. Reading them: F1 p99
//! with the flood should stay near the one without (the OCSP signer has its own bounded HSM
//! lane, `[ocsp] signing_sessions`/`signing_queue`), and the peak RSS should stay near the
//! baseline plus `[ocsp] cache_bytes` (64 MiB by default) however many CertIDs are asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nuc_ca::KeyAlgorithm;
use openssl::x509::X509;
use serde_json::json;

use crate::f1::{Bins, Service, run_f1s};
use crate::ocsp::{Client, Conn};
use crate::{Args, Run, make_csrs, ms, round};

/// id-sha1 and id-pkix-ocsp-nonce, DER content octets.
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// (start of content, end) of the TLV at `at`.
fn span(der: &[u8], at: usize) -> Option<(usize, usize)> {
    let first = *der.get(at + 1)? as usize;
    let (hl, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        let mut len = 0usize;
        for i in 0..n {
            len = len << 8 | *der.get(at + 2 + i)? as usize;
        }
        (2 + n, len)
    };
    Some((at + hl, at + hl + len))
}

/// SHA-1 of the issuer's name and of its public key's BIT STRING content: what CertIDs carry.
fn issuer_hashes(issuing: &X509) -> Result<(Vec<u8>, Vec<u8>)> {
    let name = issuing.subject_name().to_der()?;
    let spki = issuing.public_key()?.public_key_to_der()?;
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING }
    let (inner, _) = span(&spki, 0).context("SPKI")?;
    let (_, alg_end) = span(&spki, inner).context("SPKI algorithm")?;
    let (bits, bits_end) = span(&spki, alg_end).context("SPKI key")?;
    let key = spki.get(bits + 1..bits_end).context("SPKI key bits")?;
    Ok((
        openssl::sha::sha1(&name).to_vec(),
        openssl::sha::sha1(key).to_vec(),
    ))
}

/// An OCSPRequest for one serial (positive INTEGER content octets), with or without a nonce.
fn request(hashes: &(Vec<u8>, Vec<u8>), serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
    let alg = tlv(0x30, &[tlv(0x06, OID_SHA1), vec![0x05, 0x00]].concat());
    let cert_id = tlv(
        0x30,
        &[
            alg,
            tlv(0x04, &hashes.0),
            tlv(0x04, &hashes.1),
            tlv(0x02, serial),
        ]
        .concat(),
    );
    let list = tlv(0x30, &tlv(0x30, &cert_id));
    let mut tbs = list;
    if let Some(n) = nonce {
        let ext = tlv(
            0x30,
            &[tlv(0x06, OID_NONCE), tlv(0x04, &tlv(0x04, n))].concat(),
        );
        tbs.extend(tlv(0xa2, &tlv(0x30, &ext)));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

/// An HTTP POST of `body` to `/ocsp`, keep-alive.
fn post(addr: &str, body: &[u8]) -> Vec<u8> {
    [
        format!(
            "POST /ocsp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes(),
        body.to_vec(),
    ]
    .concat()
}

/// The status of an OCSPResponse (the ENUMERATED after the outer header).
fn status(der: &[u8]) -> Option<u8> {
    let (at, _) = span(der, 0)?;
    match der.get(at..at + 3)? {
        [0x0a, 0x01, s] => Some(*s),
        _ => None,
    }
}

fn status_name(s: Option<u8>) -> &'static str {
    match s {
        Some(0) => "successful",
        Some(1) => "malformedRequest",
        Some(2) => "internalError",
        Some(3) => "tryLater",
        Some(6) => "unauthorized",
        _ => "other",
    }
}

/// Answers by status.
#[derive(Default)]
struct Tally([AtomicUsize; 8]);

impl Tally {
    fn add(&self, s: Option<u8>) {
        let i = match s {
            Some(v @ 0..=6) => usize::from(v),
            _ => 7,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (i, c) in self.0.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let s = (i < 7).then_some(i as u8);
                m.insert(status_name(s).into(), n.into());
            }
        }
        m.into()
    }

    fn total(&self) -> usize {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// VmHWM and VmRSS of `pid`, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(crate) fn bench(args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bins = Bins::next_to(&exe)?;
    out!(
        "nuc-bench ocsp-flood: F1 p50/p99 ({} F1s, {} clients) without and with a concurrent \
         OCSP nonce flood ({} HTTP clients), same service, same run; then peak RSS of nuc serve \
         after {} OCSP requests with unique CertIDs (half {}-octet serials, half 20-octet)",
        args.flood_f1_count,
        args.clients,
        args.flood_clients,
        args.flood_unique,
        args.flood_long_octets
    );
    let svc = Service::start(&bins, &crate::engine::Db::Sqlite)?;
    let pid = svc.server_pid();
    let http = svc.http.clone();
    let addr: SocketAddr = http.parse().context("the HTTP address")?;
    let issuing = X509::from_pem(&std::fs::read(svc.home.join("ca").join("issuing.pem"))?)?;
    let hashes = Arc::new(issuer_hashes(&issuing)?);

    // The OCSP path answers at all, before anything is timed.
    let mut probe = Client::new(addr, Conn::KeepAlive);
    probe.exchange(&post(
        &http,
        &request(&hashes, &[0x01, 0x23], Some(b"probe")),
    ))?;
    ensure!(
        status(probe.body()) == Some(0),
        "a nonce request was answered {:?}",
        status_name(status(probe.body()))
    );
    let mem_start = memory_kib(pid);

    let n = args.flood_f1_count;
    let csrs = Arc::new(make_csrs(
        2 * (args.f1_warmup + 2 * n),
        KeyAlgorithm::EcdsaP256,
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let (clients, operator) = runtime.block_on(async {
        let operator = Arc::new(svc.make_operator().await?);
        anyhow::Ok((svc.clients(args.clients).await?, operator))
    })?;
    runtime.block_on(run_f1s(&clients, &operator, &csrs, 0, args.f1_warmup))?;
    let quiet = runtime.block_on(run_f1s(&clients, &operator, &csrs, args.f1_warmup, n))?;

    // The flood: keep-alive clients, each posting nonce requests back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let flooders: Vec<_> = (0..args.flood_clients)
        .map(|i| {
            let (stop, tally, hashes, http) =
                (stop.clone(), tally.clone(), hashes.clone(), http.clone());
            std::thread::spawn(move || -> Result<()> {
                let mut c = Client::new(addr, Conn::KeepAlive);
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let nonce = [i.to_be_bytes(), k.to_be_bytes()].concat();
                    let req = request(&hashes, &[0x01, 0x23, 0x45], Some(&nonce));
                    c.exchange(&post(&http, &req))?;
                    tally.add(status(c.body()));
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let flood_started = Instant::now();
    let before = tally.total();
    let flooded = runtime.block_on(run_f1s(&clients, &operator, &csrs, args.f1_warmup + n, n));
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let during = tally.total() - before;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join()
            .map_err(|_| anyhow::anyhow!("a flood client panicked"))??;
    }
    let flooded = flooded?;
    let lat = |r: &Run| (ms(r.percentile(50.0)), ms(r.percentile(99.0)));
    let (q50, q99) = lat(&quiet.total);
    let (f50, f99) = lat(&flooded.total);
    out!(
        "ocsp-flood: F1 without flood p50/p99 {q50:.2}/{q99:.2} ms ({:.1} F1/s); with the nonce \
         flood p50/p99 {f50:.2}/{f99:.2} ms ({:.1} F1/s); flood: {:.0} OCSP answers/s during \
         the F1s, by status {}",
        quiet.total.rate(),
        flooded.total.rate(),
        during as f64 / flood_secs,
        tally.json()
    );

    // Unique CertIDs, no nonce: half signed and cached, half long serials.
    let unique = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.flood_clients)
        .map(|_| {
            let (unique, next, hashes, http) =
                (unique.clone(), next.clone(), hashes.clone(), http.clone());
            let (total, long) = (args.flood_unique, args.flood_long_octets);
            std::thread::spawn(move || -> Result<()> {
                let mut c = Client::new(addr, Conn::KeepAlive);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total {
                        return Ok(());
                    }
                    let len = if k % 2 == 0 { 20 } else { long.max(21) };
                    let mut serial = vec![0x5a; len];
                    serial[0] = 0x01;
                    serial[len - 8..].copy_from_slice(&(k as u64).to_be_bytes());
                    c.exchange(&post(&http, &request(&hashes, &serial, None)))?;
                    unique.add(status(c.body()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    let unique_secs = started.elapsed().as_secs_f64();
    let mem_end = memory_kib(pid);
    let show = |m: Option<(u64, u64)>| {
        m.map_or("n/a".into(), |(hwm, rss)| {
            format!("VmHWM {:.1} MiB, VmRSS {:.1} MiB", mib(hwm), mib(rss))
        })
    };
    out!(
        "ocsp-flood: nuc serve memory: at start {}; after the F1 runs and {} unique-CertID \
         requests ({:.1} s, {:.0}/s, by status {}): {}",
        show(mem_start),
        args.flood_unique,
        unique_secs,
        args.flood_unique as f64 / unique_secs,
        unique.json(),
        show(mem_end)
    );
    out!(
        "{}",
        json!({
            "bench": "ocsp-flood",
            "clients": args.clients,
            "f1_count": n,
            "flood_clients": args.flood_clients,
            "f1_latency_ms": {
                "without_flood": { "p50": round(q50), "p99": round(q99) },
                "with_nonce_flood": { "p50": round(f50), "p99": round(f99) },
            },
            "f1_per_s": { "without_flood": round(quiet.total.rate()), "with_nonce_flood": round(flooded.total.rate()) },
            "flood_answers": tally.json(),
            "flood_answers_per_s": round(during as f64 / flood_secs),
            "unique_cert_ids": args.flood_unique,
            "unique_long_serial_octets": args.flood_long_octets,
            "unique_answers": unique.json(),
            "vm_hwm_mib": { "start": mem_start.map(|m| round(mib(m.0))), "end": mem_end.map(|m| round(mib(m.0))) },
            "vm_rss_mib_end": mem_end.map(|m| round(mib(m.1))),
        })
    );
    drop(clients);
    drop(runtime);
    drop(svc);
    Ok(())
}
