//! `card-sim`: an emulated NUC ID card or SIM card in vpcd's virtual reader.
//!
//! ```text
//! card-sim --state card.json --personalise --kind id-card|sim --pin 1234 [--serial S] [--force]
//! card-sim --state card.json [--vpcd 127.0.0.1:35963] [--remove-after N [--lose-answer]] [--trace]
//! card-sim --state card.json --show
//! ```
//!
//! Serving inserts the card (connects to vpcd) and runs until vpcd closes the connection or the
//! card is pulled out: by `--remove-after N` (the card answers N APDUs and is gone when the next
//! one arrives; with `--lose-answer` that one is executed first and its answer lost), or by
//! killing the process (any signal: the state file is replaced atomically, never torn). Exit
//! status 0 when the card was removed or the reader closed, 1 on an error, 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use card_sim::vpcd::{self, Ended, Removal};
use card_sim::{Applet, CardKind, CardState, FileStore};
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(
    name = "card-sim",
    about = "Emulated NUC ID card / SIM card for the vpcd virtual reader"
)]
struct Args {
    /// The card's state file (keys, certificates, PIN, counter).
    #[arg(long)]
    state: PathBuf,
    /// Make a new card into --state, then exit.
    #[arg(long)]
    personalise: bool,
    /// With --personalise: the kind of card.
    #[arg(long, value_enum, default_value = "id-card")]
    kind: Kind,
    /// With --personalise: the PIN, 4 to 12 digits.
    #[arg(long, env = "CARD_SIM_PIN", hide_env_values = true)]
    pin: Option<String>,
    /// With --personalise: the card's serial (default: random, in the kind's style).
    #[arg(long)]
    serial: Option<String>,
    /// With --personalise: replace an existing state file.
    #[arg(long)]
    force: bool,
    /// Print what can be shown of the card (no secrets), then exit.
    #[arg(long)]
    show: bool,
    /// vpcd's address (the reader side listens there).
    #[arg(long, default_value = vpcd::DEFAULT_ADDR)]
    vpcd: String,
    /// Pull the card out when APDU number N+1 arrives (after answering N).
    #[arg(long, value_name = "N")]
    remove_after: Option<u64>,
    /// With --remove-after: execute that APDU before pulling out (its answer is lost).
    #[arg(long, requires = "remove_after")]
    lose_answer: bool,
    /// How long to keep trying to reach vpcd, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    connect_timeout_ms: u64,
    /// Print each APDU's header and status word on stderr (never its data).
    #[arg(long)]
    trace: bool,
    /// Say nothing on stderr except errors.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    IdCard,
    Sim,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("card-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.personalise {
        return personalise(args);
    }
    let state = CardState::load(&args.state)?;
    if args.show {
        print!("{}", state.public_summary());
        return Ok(());
    }
    let kind = state.kind;
    let serial = state.serial.clone();
    let mut applet = Applet::new(state, FileStore::new(&args.state));
    let stream = vpcd::connect(&args.vpcd, Duration::from_millis(args.connect_timeout_ms))
        .map_err(|e| format!("cannot reach vpcd at {}: {e}", args.vpcd))?;
    if !args.quiet {
        eprintln!(
            "card-sim: {} {serial} inserted into vpcd at {}",
            kind.name(),
            args.vpcd
        );
    }
    let removal = Removal {
        after_apdus: args.remove_after,
        lose_answer: args.lose_answer,
    };
    let mut print_trace = |c: &[u8], r: &[u8]| eprintln!("card-sim: {}", trace_line(c, r));
    let trace: Option<vpcd::Trace<'_>> = if args.trace {
        Some(&mut print_trace)
    } else {
        None
    };
    let ended = vpcd::serve(stream, &mut applet, removal, trace)?;
    if !args.quiet {
        match ended {
            Ended::ReaderClosed { apdus } => {
                eprintln!("card-sim: the reader closed the connection after {apdus} APDUs")
            }
            Ended::Removed { apdus } => eprintln!("card-sim: card pulled out after {apdus} APDUs"),
        }
    }
    Ok(())
}

fn personalise(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let pin = args
        .pin
        .as_deref()
        .ok_or("--personalise needs --pin (or CARD_SIM_PIN)")?;
    let kind = match args.kind {
        Kind::IdCard => CardKind::IdCard,
        Kind::Sim => CardKind::Sim,
    };
    let state = CardState::personalise(kind, pin.as_bytes(), args.serial.as_deref())?;
    FileStore::new(&args.state).create(&state, args.force)?;
    if !args.quiet {
        eprintln!("card-sim: personalised {} {}", kind.name(), state.serial);
    }
    Ok(())
}

/// Header, Lc and status word: never the data, which may be a PIN.
fn trace_line(command: &[u8], answer: &[u8]) -> String {
    let header: Vec<String> = command.iter().take(4).map(|b| format!("{b:02X}")).collect();
    let sw = match answer {
        [.., a, b] => format!("{a:02X}{b:02X}"),
        _ => "----".into(),
    };
    format!(
        "{} ({} bytes) -> {} bytes, SW {sw}",
        header.join(" "),
        command.len(),
        answer.len().saturating_sub(2)
    )
}
