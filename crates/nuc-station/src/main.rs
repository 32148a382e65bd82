//! `nuc-station`: the CON workstation agent (F4). See the crate documentation and
//! `docs/station.md`. Errors print as one line `error: STEP: …`; exit 2 when refused (wrong PIN,
//! a refusal by the NUC), 3 when the step is to be repeated with the card back in the reader
//! (or the certificates written again onto the USB token), 1 on other failures.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nuc_card::{Pcsc, Pin};
use nuc_station::StationError;
use nuc_station::enroll::{self, Applicant, CardPlace, ENROLL_STEPS};
use nuc_station::nuc::{NucConfig, connect};
use nuc_station::operator::{self, Operator};
use nuc_station::progress::Progress;
use nuc_station::token::{self, AuthPin, TokenPlace};

#[derive(Parser)]
#[command(
    name = "nuc-station",
    about = "CON workstation agent: issuance onto ID cards, SIM cards and USB tokens (F4)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct NucArgs {
    /// The NUC's gRPC address (host:port).
    #[arg(long, env = "NUC_STATION_NUC", default_value = "127.0.0.1:8471")]
    nuc: String,
    /// The name in the NUC's TLS certificate.
    #[arg(long, env = "NUC_STATION_SERVER_NAME", default_value = "localhost")]
    server_name: String,
    /// The NUC's root certificate (PEM).
    #[arg(long, env = "NUC_STATION_ROOT_CA")]
    root_ca: PathBuf,
    /// This workstation's client certificate (PEM, role `workstation`).
    #[arg(long, env = "NUC_STATION_TLS_CERT")]
    tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "NUC_STATION_TLS_KEY")]
    tls_key: PathBuf,
}

#[derive(Args, Clone)]
struct TokenArgs {
    /// PKCS#11 module of the operator's token.
    #[arg(
        long,
        env = "NUC_STATION_PKCS11_MODULE",
        default_value = "/usr/lib/softhsm/libsofthsm2.so"
    )]
    pkcs11_module: PathBuf,
    /// Label of the operator's token.
    #[arg(long, env = "NUC_STATION_TOKEN")]
    token: String,
    /// Label of the operator's key in the token.
    #[arg(long, env = "NUC_STATION_KEY", default_value = "operator")]
    key_label: String,
}

#[derive(Args, Clone)]
struct CardArgs {
    /// The reader to use (default: the first one holding a card).
    #[arg(long)]
    reader: Option<String>,
    /// Seconds to wait for the card.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

#[derive(Args, Clone)]
struct CitizenTokenArgs {
    /// Issue onto the applicant's USB token (Kaztoken, JaCarta, eToken PRO, AKey) instead of a
    /// card: the PKCS#11 module of the token's vendor.
    #[arg(long)]
    token_module: Option<PathBuf>,
    /// Label of the applicant's token (default: the only token of the module, the operator's
    /// own excepted).
    #[arg(long, requires = "token_module")]
    token_label: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Issue certificates onto the card in the reader (or the applicant's USB token, with
    /// --token-module) for an applicant at the counter.
    Enroll {
        #[command(flatten)]
        nuc: NucArgs,
        #[command(flatten)]
        token: TokenArgs,
        /// The operator's certificate (PEM), issued by the NUC for the token's key.
        #[arg(long, env = "NUC_STATION_OPERATOR_CERT")]
        operator_cert: PathBuf,
        #[command(flatten)]
        card: CardArgs,
        #[command(flatten)]
        citizen_token: CitizenTokenArgs,
        #[arg(long)]
        iin: String,
        /// For a legal entity's employee.
        #[arg(long)]
        bin: Option<String>,
        #[arg(long)]
        email: String,
        /// Print the result as one JSON line on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write the certificates of an issued request onto the card (after a card was pulled out)
    /// or, with --token-module, onto the applicant's USB token.
    Write {
        #[command(flatten)]
        nuc: NucArgs,
        #[command(flatten)]
        card: CardArgs,
        #[command(flatten)]
        citizen_token: CitizenTokenArgs,
        #[arg(long)]
        request: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what is on the card in the reader (no PIN needed).
    Read {
        #[command(flatten)]
        card: CardArgs,
        /// Also write the certificates found into this directory (auth.pem, sign.pem).
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Serve the operator's console, a web page on the loopback interface (docs/console.md).
    Console {
        #[command(flatten)]
        nuc: NucArgs,
        #[command(flatten)]
        token: TokenArgs,
        /// The operator's certificate (PEM), issued by the NUC for the token's key.
        #[arg(long, env = "NUC_STATION_OPERATOR_CERT")]
        operator_cert: PathBuf,
        /// Where the page is served: a loopback address only.
        #[arg(long, env = "NUC_STATION_CONSOLE", default_value = nuc_station::console::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Minutes without a click before the session ends and the token is logged out.
        #[arg(long, default_value_t = 15)]
        idle_minutes: u64,
    },
    /// Make the operator's key pair in the operator's token and print the certificate request
    /// (PEM) for the NUC's administrators (AdminService.IssueOperatorCertificate).
    OperatorKey {
        #[command(flatten)]
        token: TokenArgs,
        /// Common name for the request (the NUC writes the registry's name into the certificate).
        #[arg(long, default_value = "NUC operator")]
        cn: String,
        /// Where to write the request (PEM).
        #[arg(long)]
        out: PathBuf,
    },
}

fn secret(var: &str, what: &str) -> Result<String, StationError> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    // Interactive: the applicant types the PIN (a PIN pad in a real CON). Never echoed back,
    // never logged: at a terminal, echo is off while it is typed.
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("{what}: "))
            .map_err(|e| StationError::Config(format!("{what}: {e}")));
    }
    // Piped (scripts, tests): one line from stdin.
    eprint!("{what}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| StationError::Config(format!("{what}: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn card_pin() -> Result<Pin, StationError> {
    Pin::new(&secret(
        "NUC_CARD_PIN",
        "card PIN (the applicant enters it)",
    )?)
    .map_err(StationError::card("PIN entry"))
}

/// The applicant's PIN of the USB token: `NUC_TOKEN_PIN`, else typed by the applicant.
fn citizen_token_pin() -> Result<AuthPin, StationError> {
    token::token_pin(secret(
        "NUC_TOKEN_PIN",
        "USB token PIN (the applicant enters it)",
    )?)
    .map_err(|source| StationError::CitizenToken {
        step: "PIN entry",
        source: Box::new(source),
    })
}

fn token_report(e: &token::TokenEnrolled, progress: &Progress, json: bool) {
    let total = progress.elapsed();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "request_number": e.request_number,
                "key_storage": "token",
                "token_label": e.token_label,
                "token_serial": e.token_serial,
                "certificates": e.certificates.iter().map(|(p, s, _)| serde_json::json!({"profile": p, "serial_hex": s})).collect::<Vec<_>>(),
                "millis": total.as_millis() as u64,
                "steps": progress.steps.iter().map(|(s, d)| serde_json::json!({"step": s, "millis": d.as_millis() as u64})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "request {}: {} on USB token {:?} ({}) in {} ms",
            e.request_number,
            e.certificates
                .iter()
                .map(|(p, s, _)| format!("{p} {s}"))
                .collect::<Vec<_>>()
                .join(", "),
            e.token_label,
            e.token_serial,
            total.as_millis()
        );
    }
}

fn nuc_config(a: &NucArgs) -> NucConfig {
    NucConfig {
        address: a.nuc.clone(),
        server_name: a.server_name.clone(),
        root_ca: a.root_ca.clone(),
        tls_cert: a.tls_cert.clone(),
        tls_key: a.tls_key.clone(),
    }
}

fn place(c: &CardArgs) -> CardPlace {
    CardPlace {
        reader: c.reader.clone(),
        wait: Duration::from_secs(c.wait_secs),
    }
}

fn pcsc() -> Result<Pcsc, StationError> {
    Pcsc::establish().map_err(StationError::card("PC/SC"))
}

fn report(e: &enroll::Enrolled, progress: &Progress, json: bool) {
    let total = progress.elapsed();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "request_number": e.request_number,
                "card_kind": format!("{}", e.card_kind),
                "card_serial": e.card_serial,
                "certificates": e.certificates.iter().map(|(p, s, _)| serde_json::json!({"profile": p, "serial_hex": s})).collect::<Vec<_>>(),
                "millis": total.as_millis() as u64,
                "apdus": e.apdus,
                "apdus_before_write": e.apdus_before_write,
                "steps": progress.steps.iter().map(|(s, d)| serde_json::json!({"step": s, "millis": d.as_millis() as u64})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "request {}: {} on card {} ({}) in {} ms",
            e.request_number,
            e.certificates
                .iter()
                .map(|(p, s, _)| format!("{p} {s}"))
                .collect::<Vec<_>>()
                .join(", "),
            e.card_serial,
            e.card_kind,
            total.as_millis()
        );
    }
}

async fn run(cli: Cli) -> Result<(), StationError> {
    match cli.command {
        Command::Enroll {
            nuc,
            token,
            operator_cert,
            card,
            citizen_token,
            iin,
            bin,
            email,
            json,
        } => {
            let operator_pin = secret("NUC_OPERATOR_PIN", "operator token PIN")?;
            let operator = Operator::open(
                &token.pkcs11_module,
                &token.token,
                &operator_pin,
                &token.key_label,
                &operator_cert,
            )?;
            drop(operator_pin);
            let mut client = connect(&nuc_config(&nuc)).await?;
            let mut key = [0u8; 16];
            openssl::rand::rand_bytes(&mut key).map_err(|e| StationError::Config(e.to_string()))?;
            let applicant = Applicant {
                iin,
                bin: bin.filter(|b| !b.is_empty()),
                email,
            };
            if let Some(module) = citizen_token.token_module {
                let pin = citizen_token_pin()?;
                let mut progress = Progress::new(ENROLL_STEPS, false);
                // The operator's token is in the way only when both come through one module.
                let same_module = match (module.canonicalize(), token.pkcs11_module.canonicalize())
                {
                    (Ok(a), Ok(b)) => a == b,
                    _ => module == token.pkcs11_module,
                };
                let place = TokenPlace {
                    module,
                    label: citizen_token.token_label,
                    operator_label: same_module.then(|| token.token.clone()),
                };
                let enrolled = token::enroll_token(
                    &mut client,
                    &operator,
                    &place,
                    &applicant,
                    &pin,
                    &hex::encode(key),
                    &mut progress,
                )
                .await?;
                token_report(&enrolled, &progress, json);
                return Ok(());
            }
            let pcsc = pcsc()?;
            let pin = card_pin()?;
            let mut progress = Progress::new(ENROLL_STEPS, false);
            let enrolled = enroll::enroll(
                &mut client,
                &operator,
                &pcsc,
                &place(&card),
                &applicant,
                &pin,
                &hex::encode(key),
                &mut progress,
            )
            .await?;
            report(&enrolled, &progress, json);
            Ok(())
        }
        Command::Write {
            nuc,
            card,
            citizen_token,
            request,
            json,
        } => {
            let mut client = connect(&nuc_config(&nuc)).await?;
            if let Some(module) = citizen_token.token_module {
                let pin = citizen_token_pin()?;
                let mut progress = Progress::new(enroll::WRITE_STEPS, false);
                let place = TokenPlace {
                    module,
                    label: citizen_token.token_label,
                    operator_label: None,
                };
                let written =
                    token::write_token_issued(&mut client, &place, &request, &pin, &mut progress)
                        .await?;
                token_report(&written, &progress, json);
                return Ok(());
            }
            let pcsc = pcsc()?;
            let pin = card_pin()?;
            let mut progress = Progress::new(enroll::WRITE_STEPS, false);
            let written = enroll::write_issued(
                &mut client,
                &pcsc,
                &place(&card),
                &request,
                &pin,
                &mut progress,
            )
            .await?;
            report(&written, &progress, json);
            Ok(())
        }
        Command::Read { card, export } => {
            let pcsc = pcsc()?;
            let c = enroll::read_card(&pcsc, &place(&card))?;
            println!("card: {} {}", c.info.kind, c.info.serial);
            println!(
                "PIN: {} of {} tries left",
                c.info.pin_tries_left, c.info.pin_max_tries
            );
            println!(
                "keys: {}",
                c.info
                    .keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for (slot, der) in &c.certificates {
                let text = openssl::x509::X509::from_der(der)
                    .map(|x| {
                        format!(
                            "serial {}, valid until {}",
                            x.serial_number()
                                .to_bn()
                                .and_then(|b| b.to_hex_str().map(|s| s.to_lowercase()))
                                .unwrap_or_default(),
                            x.not_after()
                        )
                    })
                    .unwrap_or_else(|e| format!("does not decode: {e}"));
                println!("certificate {slot}: {text}");
                if let Some(dir) = &export {
                    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
                        .map_err(|e| StationError::Config(e.to_string()))?;
                    let path = dir.join(format!("{}.pem", slot.to_string().to_lowercase()));
                    std::fs::write(&path, pem).map_err(|e| {
                        StationError::Config(format!("--export {}: {e}", path.display()))
                    })?;
                }
            }
            Ok(())
        }
        Command::Console {
            nuc,
            token,
            operator_cert,
            listen,
            idle_minutes,
        } => {
            nuc_station::console::run(nuc_station::console::ConsoleConfig {
                listen,
                nuc: nuc_config(&nuc),
                token: nuc_station::console::TokenConfig {
                    module: token.pkcs11_module,
                    label: token.token,
                    key_label: token.key_label,
                    operator_cert,
                },
                idle: Duration::from_secs(idle_minutes.max(1) * 60),
            })
            .await
        }
        Command::OperatorKey { token, cn, out } => {
            let pin = secret("NUC_OPERATOR_PIN", "operator token PIN")?;
            let csr = operator::new_key(
                &token.pkcs11_module,
                &token.token,
                &pin,
                &token.key_label,
                &cn,
            )?;
            std::fs::write(&out, csr)
                .map_err(|e| StationError::Config(format!("--out {}: {e}", out.display())))?;
            eprintln!(
                "operator key {:?} made in token {:?}; request in {}",
                token.key_label,
                token.token,
                out.display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
