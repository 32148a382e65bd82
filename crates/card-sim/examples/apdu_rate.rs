//! APDU round trips per second through pcscd + vpcd + card-sim, and the time of the card's part
//! of an F4 enrolment (PIN, two keys generated on the card, two requests signed by it).
//!
//! ```text
//! cargo build --release -p card-sim --bins --examples
//! target/release/examples/apdu_rate [N]
//! ```
//!
//! Starts pcscd if none runs (and stops it after), and the `card-sim` binary found beside this
//! example (or `CARD_SIM_BIN`).

use std::time::{Duration, Instant};

use card_sim::CardKind;
use card_sim::harness::{self, Pcscd, SimCard, SimOptions};
use nuc_card::{KeySlot, Pcsc, Pin};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let bin = harness::locate_binary()?;
    let _lock = harness::lock_vpcd()?;
    let _pcscd = Pcscd::ensure(Duration::from_secs(10))?;
    let dir = std::env::temp_dir().join(format!("apdu-rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let state = dir.join("card.json");
    SimCard::personalise(&bin, &state, CardKind::IdCard, "1234", None)?;
    let sim = SimCard::insert(&bin, &state, &SimOptions::default())?;

    let pcsc = Pcsc::establish()?;
    let reader = harness::vpcd_reader(&pcsc.readers()?)
        .ok_or("no vpcd reader")?
        .clone();
    pcsc.wait_for_card(Some(&reader), Duration::from_secs(15))?;
    let mut card = pcsc.connect(&reader)?;
    let rt = nuc_card::bench::apdu_round_trips(&mut card, n)?;
    println!(
        "apdu round trips: {n} in {:.3} s: {:.0}/s, {:.3} ms each",
        rt.elapsed.as_secs_f64(),
        rt.per_second(),
        rt.mean().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let before = card.apdu_count().apdus;
    card.verify_pin(&Pin::new("1234")?)?;
    let subject = nuc_card::csr::minimal_subject("NUC ID card")?;
    for slot in KeySlot::ALL {
        card.generate_key(slot)?;
        card.certification_request(slot, &subject)?;
    }
    println!(
        "card side of F4 (PIN, 2 keys, 2 CSRs signed on the card): {:.1} ms, {} APDUs",
        start.elapsed().as_secs_f64() * 1e3,
        card.apdu_count().apdus - before
    );
    drop(card);
    sim.pull_out();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
