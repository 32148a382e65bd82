//! The rendered PDF judged by an outside reader: poppler's `pdftotext`, `pdfinfo` and
//! `pdffonts` (Debian's `poppler-utils`, in the Makefile's DEB_PACKAGES). The text must come
//! back as the letters that went in, Kazakh ones included; the font must be embedded; the pages
//! must be as many as the layout says. A missing tool fails the test, it never skips it.

use std::path::Path;
use std::process::Command;

use nuc_report::{
    CertificateReport, EntryState, KeyStorageWord, ReportEntry, RevocationLine, render_pdf,
};

const ALIYA: &str = "Әлия Қайратқызы Өмірбекова";
const GALYMZHAN: &str = "Ғалымжан Ұлықбекұлы Һ";
/// 2026-12-03 16:34 UTC.
const GENERATED_AT: i64 = 1_796_315_640;
const SIGNER: &str = "5a0c3e77d1f4b9021c6e8a4f3b7d2e19a0c4f6e1";

/// Runs a poppler tool on `pdf` and returns its standard output; panics with what to install
/// when the tool is not there.
fn poppler(tool: &str, args: &[&str], pdf: &Path) -> String {
    let output = Command::new(tool)
        .args(args)
        .arg(pdf)
        .args(if tool == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool} cannot be run ({e}): install Debian's poppler-utils (`make deps`)")
        });
    assert!(
        output.status.success(),
        "{tool} failed on {}: {}",
        pdf.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    // poppler reports a malformed object on stderr and still exits 0: none is accepted.
    assert!(
        output.stderr.is_empty(),
        "{tool} complained about {}: {}",
        pdf.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("poppler prints UTF-8 with -enc UTF-8")
}

/// Writes `pdf` into the test's temporary `dir`, and also into the directory named by
/// `NUC_REPORT_OUT` when it is set, for a person to look at the pages.
fn write(dir: &tempfile::TempDir, name: &str, pdf: &[u8]) -> std::path::PathBuf {
    if let Some(out) = std::env::var_os("NUC_REPORT_OUT") {
        std::fs::write(Path::new(&out).join(name), pdf).unwrap();
    }
    let path = dir.path().join(name);
    std::fs::write(&path, pdf).unwrap();
    path
}

fn text_of(pdf: &Path) -> String {
    poppler("pdftotext", &["-enc", "UTF-8"], pdf)
}

fn pages_of(pdf: &Path) -> usize {
    let info = poppler("pdfinfo", &[], pdf);
    let line = info
        .lines()
        .find(|l| l.starts_with("Pages:"))
        .unwrap_or_else(|| panic!("pdfinfo names no page count:\n{info}"));
    line["Pages:".len()..].trim().parse().unwrap()
}

/// pdftotext puts a line break where the layout wrapped a line; names and words are compared
/// with the text's whitespace made single spaces.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn entry(holder: &str, serial: String, state: EntryState, storage: KeyStorageWord) -> ReportEntry {
    ReportEntry {
        holder_name: holder.to_owned(),
        profile: "individual-auth".to_owned(),
        serial_hex: serial,
        not_before: 1_767_225_600, // 2026-01-01 00:00
        not_after: 1_798_761_600,  // 2027-01-01 00:00
        state,
        issued_how: "ЦОН 001, оператор 1a2b".to_owned(),
        key_storage: storage,
        revocation: None,
    }
}

/// One entry of each state and each key storage, a revocation with a known reason and one with
/// a reason the report does not know.
fn all_kinds() -> CertificateReport {
    let mut revoked = entry(
        GALYMZHAN,
        "3f00aa11bb22cc33dd44ee55ff6677889900abcd".to_owned(),
        EntryState::Revoked,
        KeyStorageWord::SimCard,
    );
    revoked.revocation = Some(RevocationLine {
        at: 1_780_000_000,
        reason: "keyCompromise".to_owned(),
    });
    let mut odd_reason = entry(
        GALYMZHAN,
        "4400000000000000000000000000000000000001".to_owned(),
        EntryState::Revoked,
        KeyStorageWord::Token,
    );
    odd_reason.revocation = Some(RevocationLine {
        at: 1_780_000_000,
        reason: "lost-in-the-steppe".to_owned(),
    });
    let mut renewed = entry(
        ALIYA,
        "1a2b3c4d5e6f708192a3b4c5d6e7f80910111213".to_owned(),
        EntryState::Expired,
        KeyStorageWord::File,
    );
    renewed.issued_how = "remote renewal of 3f00aa11".to_owned();
    CertificateReport {
        holder_name: ALIYA.to_owned(),
        subject_id: "IIN 900101300123".to_owned(),
        generated_at: GENERATED_AT,
        signed_by: SIGNER.to_owned(),
        entries: vec![
            entry(
                ALIYA,
                "0102030405060708090a0b0c0d0e0f1011121314".to_owned(),
                EntryState::Valid,
                KeyStorageWord::IdCard,
            ),
            renewed,
            revoked,
            odd_reason,
        ],
    }
}

#[test]
fn kazakh_names_and_every_word_come_out_of_pdftotext_intact() {
    let report = all_kinds();
    let pdf = render_pdf(&report).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "report.pdf", &pdf);
    let text = flat(&text_of(&path));

    for expected in [
        ALIYA,
        GALYMZHAN,
        "IIN 900101300123",
        // Title and header.
        "Тіркеу куәліктері туралы есеп",
        "Отчёт о регистрационных свидетельствах",
        "Иесі / Владелец",
        "2026-12-03 16:34 UTC",
        "2026-01-01 00:00 — 2027-01-01 00:00 UTC",
        // States.
        "Жарамды / Действительно",
        "Мерзімі өткен / Срок истёк",
        "Кері қайтарылған / Отозвано",
        // Key storages.
        "Жеке куәлік / Удостоверение личности",
        "Файл",
        "SIM-карта",
        "Токен",
        // Revocation: the RFC name with its words, and an unknown name as given.
        "keyCompromise — кілттің құпиялылығы бұзылды / компрометация ключа",
        "lost-in-the-steppe",
        "Кері қайтару себебі / Причина отзыва",
        // The caller's wording.
        "ЦОН 001, оператор 1a2b",
        "remote renewal of 3f00aa11",
        "individual-auth",
        // Footer.
        "Бет / Страница 1 (барлығы / всего 1)",
        SIGNER,
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} is not in the text:\n{text}"
        );
    }
    for entry in &report.entries {
        assert!(
            text.contains(&entry.serial_hex),
            "{} is missing",
            entry.serial_hex
        );
    }

    assert_eq!(pages_of(&path), 1);
    let fonts = poppler("pdffonts", &[], &path);
    let dejavu: Vec<&str> = fonts.lines().filter(|l| l.contains("DejaVuSans")).collect();
    assert_eq!(dejavu.len(), 2, "regular and bold:\n{fonts}");
    for line in dejavu {
        // name, type, encoding, emb, sub, uni, object, generation
        let columns: Vec<&str> = line.split_whitespace().collect();
        let n = columns.len();
        assert_eq!(
            &columns[n - 5..n - 2],
            ["yes", "yes", "yes"],
            "embedded, subset, ToUnicode:\n{fonts}"
        );
    }
}

#[test]
fn sixty_entries_make_several_pages_with_every_serial() {
    let entries: Vec<ReportEntry> = (0..60)
        .map(|i| {
            let holder = if i % 2 == 0 { ALIYA } else { GALYMZHAN };
            entry(
                holder,
                format!("{:040x}", 0xabc0_0000_u64 + i),
                EntryState::Valid,
                KeyStorageWord::Token,
            )
        })
        .collect();
    let report = CertificateReport {
        entries,
        ..all_kinds()
    };
    let pdf = render_pdf(&report).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "sixty.pdf", &pdf);
    let pages = pages_of(&path);
    assert!(pages >= 5, "{pages} pages");
    let text = flat(&text_of(&path));
    for entry in &report.entries {
        assert!(
            text.contains(&entry.serial_hex),
            "{} is missing",
            entry.serial_hex
        );
    }
    assert!(text.contains("№ 60"));
    assert!(text.contains(&format!("Бет / Страница {pages} (барлығы / всего {pages})")));
    eprintln!("60 entries: {pages} pages, {} bytes", pdf.len());
}

#[test]
fn ten_entries_stay_small() {
    let entries = all_kinds().entries.into_iter().cycle().take(10).collect();
    let report = CertificateReport {
        entries,
        ..all_kinds()
    };
    let pdf = render_pdf(&report).unwrap();
    eprintln!("10 entries: {} bytes", pdf.len());
    // Two subsets of DejaVu Sans, not the 1.4 MB of the two whole fonts.
    assert!(pdf.len() < 60_000, "{} bytes", pdf.len());
}

#[test]
fn the_same_report_renders_to_the_same_bytes() {
    let report = all_kinds();
    let first = render_pdf(&report).unwrap();
    assert_eq!(first, render_pdf(&report).unwrap());
    assert!(first.starts_with(b"%PDF-"));
    // The creation date is the report's time, not the clock's.
    let dir = tempfile::tempdir().unwrap();
    let info = poppler("pdfinfo", &["-isodates"], &write(&dir, "r.pdf", &first));
    assert!(info.contains("2026-12-03T16:34:00"), "{info}");
    let later = CertificateReport {
        generated_at: GENERATED_AT + 60,
        ..report
    };
    assert_ne!(first, render_pdf(&later).unwrap());
}

#[test]
fn odd_input_renders_without_panicking() {
    let mut weird = entry(
        "漢字 \u{0}\u{202E}evil\u{202C} Ә\u{1F600}",
        "ff".repeat(3_000),
        EntryState::Valid,
        KeyStorageWord::File,
    );
    weird.not_before = i64::MIN;
    weird.not_after = i64::MAX;
    weird.issued_how = "ЦОН ".repeat(20_000);
    weird.profile = String::new();
    weird.revocation = Some(RevocationLine {
        at: -1,
        reason: String::new(),
    });
    let report = CertificateReport {
        holder_name: "\n\t".to_owned(),
        subject_id: String::new(),
        generated_at: 0,
        signed_by: String::new(),
        entries: vec![weird],
    };
    let pdf = render_pdf(&report).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "odd.pdf", &pdf);
    let text = text_of(&path);
    // What the font lacks and the controls are a visible replacement character; the rest stays.
    assert!(
        text.contains("\u{FFFD}\u{FFFD} \u{FFFD}\u{FFFD}evil\u{FFFD} Ә\u{1F600}"),
        "{text}"
    );
    assert!(text.contains("unix -9223372036854775808"), "{text}");
    assert!(text.contains('…'), "the cut fields are marked:\n{text}");
    assert!(
        !text.contains("Ключ НУЦ"),
        "no signing key named, none printed"
    );

    let empty = CertificateReport {
        entries: Vec::new(),
        ..all_kinds()
    };
    let path = write(&dir, "empty.pdf", &render_pdf(&empty).unwrap());
    assert_eq!(pages_of(&path), 1);
    assert!(flat(&text_of(&path)).contains("Регистрационные свидетельства не выдавались."));

    let never = CertificateReport {
        generated_at: i64::MAX,
        ..empty
    };
    assert!(matches!(
        render_pdf(&never),
        Err(nuc_report::ReportError::TimeOutOfRange(_))
    ));
}
