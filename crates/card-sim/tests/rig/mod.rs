//! The test rig: vpcd's port held for this test, pcscd (ours or the machine's), one `card-sim`
//! at a time in the reader, and nuc-card's view of it through pcscd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use card_sim::harness::{self, Pcscd, SimCard, SimOptions, VpcdLock};
use card_sim::vpcd::Removal;
use nuc_card::{Card, Pcsc};

/// How long a card may take to be seen (pcscd polls vpcd's reader about every 400 ms).
pub const CARD_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Rig {
    // Dropped in this order: the card, the PC/SC context, pcscd, the port, the files.
    sim: Option<SimCard>,
    pub pcsc: Pcsc,
    _pcscd: Pcscd,
    _lock: VpcdLock,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    /// vpcd's reader (port 35963).
    reader: String,
}

impl Rig {
    pub fn new() -> Rig {
        let lock = harness::lock_vpcd().expect("lock vpcd's port");
        let pcscd = Pcscd::ensure(Duration::from_secs(10)).expect("pcscd");
        let pcsc = Pcsc::establish().expect("connect to pcscd");
        let rig = Rig {
            sim: None,
            pcsc,
            _pcscd: pcscd,
            _lock: lock,
            dir: tempfile::tempdir().unwrap(),
            bin: PathBuf::from(env!("CARGO_BIN_EXE_card-sim")),
            reader: String::new(),
        };
        // vpcd's reader, as soon as pcscd lists it.
        let deadline = std::time::Instant::now() + CARD_TIMEOUT;
        let reader = loop {
            let readers = rig.pcsc.readers().expect("list readers");
            if let Some(r) = harness::vpcd_reader(&readers) {
                break r.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no vpcd reader in {readers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // A card left by an earlier test must be gone from pcscd's view before ours comes.
        rig.pcsc
            .wait_for_removal(&reader, CARD_TIMEOUT)
            .expect("vpcd's reader empty");
        Rig { reader, ..rig }
    }

    /// A freshly personalised card's state file in the rig's directory.
    pub fn personalise(&self, name: &str, kind: card_sim::CardKind, pin: &str) -> PathBuf {
        let state = self.dir.path().join(name);
        SimCard::personalise(&self.bin, &state, kind, pin, None).expect("personalise");
        state
    }

    /// Puts the card of `state` into the reader and connects to it.
    pub fn insert(&mut self, state: &Path) -> Card {
        self.insert_with(state, Removal::default())
    }

    /// The same, with the card pulled out by itself as `removal` says.
    pub fn insert_with(&mut self, state: &Path, removal: Removal) -> Card {
        assert!(self.sim.is_none(), "one card at a time");
        let options = SimOptions {
            removal,
            ..SimOptions::default()
        };
        self.sim = Some(SimCard::insert(&self.bin, state, &options).expect("start card-sim"));
        self.pcsc
            .wait_for_card(Some(&self.reader), CARD_TIMEOUT)
            .expect("card seen by pcscd");
        self.pcsc
            .connect(&self.reader)
            .expect("connect to the card")
    }

    /// Pulls the card out (kills card-sim) and waits until pcscd has seen it go.
    pub fn pull_out(&mut self, card: Card) {
        drop(card);
        if let Some(sim) = self.sim.take() {
            sim.pull_out();
        }
        self.wait_reader_empty();
    }

    /// After `--remove-after`: waits for card-sim to leave by itself, then for pcscd to see it.
    pub fn wait_gone(&mut self, card: Card) {
        drop(card);
        if let Some(mut sim) = self.sim.take() {
            let status = sim.wait_gone(CARD_TIMEOUT).expect("card-sim leaves");
            assert!(status.success(), "card-sim: {status}");
        }
        self.wait_reader_empty();
    }

    fn wait_reader_empty(&mut self) {
        self.pcsc
            .wait_for_removal(&self.reader, CARD_TIMEOUT)
            .expect("pcscd sees the card go");
    }
}

/// Runs openssl, the outside judge; panics with its stderr when it fails.
pub fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A throwaway CA (P-256) in `dir`: ca.key, ca.pem.
pub fn throwaway_ca(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Throwaway test CA",
            "-days",
            "1",
        ],
        dir,
    );
}

/// The throwaway CA certifies the key of the request `csr_der` (written as `name`.csr); gives
/// the certificate's DER. `extra_sans` SAN entries make it as large as a test wants.
pub fn issue(dir: &Path, name: &str, csr_der: &[u8], extra_sans: usize) -> Vec<u8> {
    let csr = format!("{name}.csr");
    std::fs::write(dir.join(&csr), csr_der).unwrap();
    let ext = format!("{name}.ext");
    let sans: Vec<String> = (0..extra_sans)
        .map(|i| format!("DNS:host-{i:04}.card-test.example.kz"))
        .collect();
    let mut text =
        String::from("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n");
    if !sans.is_empty() {
        text.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    std::fs::write(dir.join(&ext), text).unwrap();
    let cert = format!("{name}.der");
    openssl(
        &[
            "x509",
            "-req",
            "-inform",
            "DER",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "7",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-outform",
            "DER",
            "-out",
            &cert,
        ],
        dir,
    );
    std::fs::read(dir.join(cert)).unwrap()
}
