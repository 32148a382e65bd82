//! F4 and F5 from the operator's console page in headless Chromium (issue 14), against the
//! real `nuc serve`, real pcscd with the vpcd virtual reader and `card-sim` playing the
//! applicant's ID card and SIM card: the reader's state shown live as cards go in and out, the
//! applicant's PIN typed into the page, the steps with their times, the result screen, a card
//! pulled out in the middle of the write and finished once it is back, a wrong PIN, a blocked
//! PIN, and a revocation at the counter. Each step is judged in what the page shows and in
//! what the NUC stored; the certificates written are read back from the card and judged by
//! `openssl verify`. The time from the click to the result on screen, without the card's own
//! steps, is reported (p95 < 1 s).
//!
//! vpcd's port is fixed: one card at a time on this machine (`card_sim::harness::lock_vpcd`).
//! With `NUC_CONSOLE_SCREENSHOTS=docs/console` the test writes the screenshots of the F4 and F5
//! screens.

use std::time::Duration;

use card_sim::harness::{Pcscd, lock_vpcd};
use card_sim::vpcd::Removal;
use nuc_e2e::api::*;
use nuc_e2e::cards::{self, CARD_PIN};
use nuc_e2e::console_page::*;
use nuc_e2e::desk::*;
use nuc_e2e::webdriver::Browser;
use nuc_e2e::{openssl_verify, unmasked_fixture_iins};
use serde_json::json;

/// Waits until the page shows `card` (`none`, `id-card`, `sim-card`) as the reader's state.
fn reader_shows(b: &Browser, card: &str) {
    wait_for(
        b,
        "return document.getElementById('reader').dataset.card === arguments[0];",
        json!([card]),
        &format!("the reader showing {card}"),
    );
}

fn requests(desk: &Desk) -> i64 {
    desk.svc.home.count("SELECT COUNT(*) FROM requests")
}

/// The applicant's data and the card's `pin`, typed into the F4 form.
fn fill_f4(b: &Browser, pin: &str) {
    fill(b, "#f4-iin", IIN);
    fill(b, "#f4-email", EMAIL);
    fill(b, "#f4-pin", pin);
}

/// Hides the error shown, so that the next one is seen as new.
fn clear_error(b: &Browser) {
    b.exec(
        "document.getElementById('error').hidden = true; \
         document.getElementById('error-code').textContent = '';",
        json!([]),
    );
}

/// The steps the page shows: (key, phase, done, text).
fn steps(b: &Browser) -> Vec<(String, String, bool, String)> {
    let v = b.exec(
        "return Array.from(document.querySelectorAll('#f4-steps li')).map(li => \
         [li.dataset.key, li.dataset.phase, li.dataset.done === 'true', li.textContent]);",
        json!([]),
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_owned(),
                s[1].as_str().unwrap().to_owned(),
                s[2].as_bool().unwrap(),
                s[3].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Checks the result screen against the NUC's store; gives the request number and the
/// certificates' serials.
fn judge_result(b: &Browser, desk: &Desk, storage: &str, kind_word: &str) -> (String, Vec<String>) {
    let result = b.exec("return state.enrollment.result;", json!([]));
    let number = result["request_number"].as_str().unwrap().to_owned();
    let fields = b.text_of("#f4-result-fields");
    assert!(fields.contains(&number), "{fields}");
    assert!(fields.contains(kind_word), "{fields}");
    assert_eq!(desk.state_of(&number), "issued");
    let stored: String = desk.svc.home.db().row(
        "SELECT key_storage FROM requests WHERE number = ?1",
        &[&number],
    );
    assert_eq!(stored, storage);
    let serials: Vec<String> = desk.svc.home.db().rows(
        "SELECT serial FROM certificates WHERE request_number = ?1 ORDER BY serial",
        &[&number],
    );
    assert_eq!(serials.len(), 2, "{serials:?}");
    let shown = b.text_of("#f4-certificates").to_lowercase();
    for s in &serials {
        assert!(shown.contains(&s.to_lowercase()), "serial {s}: {shown}");
    }
    // Subject and validity of each, as the certificate says.
    for c in result["certificates"].as_array().unwrap() {
        let subject = c["subject"].as_str().unwrap();
        assert!(subject.contains(&format!("IIN{IIN}")), "{subject}");
        assert!(
            shown.contains(&subject.to_lowercase()),
            "{subject}: {shown}"
        );
        assert!(c["not_after"].as_i64().unwrap() > c["not_before"].as_i64().unwrap());
    }
    (number, serials)
}

/// The certificates on the card in the reader, exported by `nuc-station read` and judged by
/// `openssl verify`; they are the ones the NUC stored.
fn judge_card(desk: &Desk, tag: &str, serials: &[String]) {
    let dir = desk.path(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let read = desk
        .station()
        .args(["read", "--wait-secs", "10", "--export"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(read.status.success(), "{read:?}");
    for slot in ["auth", "sign"] {
        let pem = dir.join(format!("{slot}.pem"));
        let v = openssl_verify(&desk.svc.home, &pem);
        assert_eq!(v.code, Some(0), "{slot}: {}{}", v.stdout, v.stderr);
        let serial = openssl::x509::X509::from_pem(&std::fs::read(&pem).unwrap())
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_lowercase();
        assert!(
            serials
                .iter()
                .any(|s| s.trim_start_matches('0') == serial.trim_start_matches('0')),
            "{slot} {serial} not in {serials:?}"
        );
    }
}

/// Runs F4 from the page with the right PIN and waits for the result screen; the time from the
/// click to the result on screen without the card's own steps (ms), the result checked.
fn enroll(b: &Browser, desk: &Desk, storage: &str, kind_word: &str) -> (f64, String, Vec<String>) {
    let before = requests(desk);
    fill_f4(b, CARD_PIN);
    let ms = timed_click(b, "#f4-submit", "#f4-result", &format!("IIN{IIN}"));
    assert!(!is_shown(b, "#error"), "{}", b.text_of("#error"));
    let card_ms = b
        .exec("return state.enrollment.result.card_ms;", json!([]))
        .as_f64()
        .unwrap();
    assert_eq!(
        b.exec("return document.getElementById('f4-pin').value;", json!([])),
        "",
        "the PIN field is cleared at once"
    );
    // Every step of F4, each done with its time.
    let shown = steps(b);
    let keys: Vec<&str> = shown.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "registry", "card", "pin", "keys", "register", "sign", "issue", "write"
        ],
        "{shown:?}"
    );
    for (key, _, done, text) in &shown {
        assert!(done, "{key} not done: {text}");
        assert!(text.contains(" мс"), "{key} has no time: {text}");
    }
    assert_eq!(requests(desk), before + 1);
    let (number, serials) = judge_result(b, desk, storage, kind_word);
    (ms - card_ms, number, serials)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_onto_id_and_sim_cards_a_pulled_card_a_wrong_and_a_blocked_pin_and_f5_from_the_page() {
    let _vpcd = lock_vpcd().unwrap();
    let _pcscd = Pcscd::ensure(Duration::from_secs(30)).expect("pcscd (run as root)");
    cards::wait_empty();
    let desk = Desk::open().await;
    let (console, addr) = desk.console();
    let b = Browser::start();
    // From the keyboard alone: the PIN field has the focus when the page opens, Enter logs in,
    // the search field has it then; Shift+Tab twice reaches the F4 tab, Enter opens it, and
    // Tab twice reaches the F4 form's first field.
    b.goto(&format!("http://{addr}/"));
    b.shown("#pin", WAIT);
    wait_for(&b, "return state.labels !== null;", json!([]), "the labels");
    let focused = || b.exec("return document.activeElement.id;", json!([]));
    assert_eq!(focused(), "pin");
    b.keys(&format!("{OPERATOR_PIN}\u{E007}"), false);
    b.shown("#work", WAIT);
    assert_eq!(focused(), "iin");
    b.keys("\u{E004}\u{E004}", true);
    assert_eq!(focused(), "tab-f4");
    b.keys("\u{E007}", false);
    b.shown("#f4-form", WAIT);
    b.keys("\u{E004}\u{E004}", false);
    assert_eq!(focused(), "f4-iin");
    assert!(
        !is_shown(&b, "#search-form"),
        "one flow on screen at a time"
    );
    // Every control of every screen has a label (or its own text), for a screen reader and
    // for the keyboard user who tabs to it.
    let unlabelled = b.exec(
        "return Array.from(document.querySelectorAll('input, select, button')).filter(e => \
           (e.tagName === 'BUTTON' ? e.textContent.trim() === '' && !e.getAttribute('aria-label') \
            : !document.querySelector('label[for=\"' + e.id + '\"]'))).map(e => e.id || e.outerHTML);",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");
    let mut service_ms = Vec::new();

    // The reader's state, live: nothing, then the applicant's ID card.
    reader_shows(&b, "none");
    assert_eq!(b.text_of("#reader"), "Карта жоқ");
    let id_card = desk.path("id.json");
    cards::personalise(&id_card, card_sim::CardKind::IdCard);
    let card = cards::insert(&id_card, Removal::default());
    reader_shows(&b, "id-card");
    assert_eq!(b.text_of("#reader"), "Жеке куәлік");
    shot(&b, "f4-reader.png");

    // F4 onto the ID card.
    let (ms, _, id_serials) = enroll(&b, &desk, "id-card", "Жеке куәлік");
    service_ms.push(ms);
    shot(&b, "f4-done.png");
    judge_card(&desk, "id-export", &id_serials);
    cards::pull_out(card);
    reader_shows(&b, "none");

    // F4 onto a SIM card: the reader says so first.
    let sim = desk.path("sim.json");
    cards::personalise(&sim, card_sim::CardKind::Sim);
    let card = cards::insert(&sim, Removal::default());
    reader_shows(&b, "sim-card");
    assert_eq!(b.text_of("#reader"), "SIM-карта");
    let (ms, _, _) = enroll(&b, &desk, "sim-card", "SIM-карта");
    service_ms.push(ms);
    let result = b.exec("return state.enrollment.result;", json!([]));
    let (before_write, total) = (
        result["apdus_before_write"].as_u64().unwrap(),
        result["apdus"].as_u64().unwrap(),
    );
    assert!(total > before_write + 2, "{result}");

    // A wrong PIN: the card's refusal in plain words with the tries left; nothing registered.
    let before = requests(&desk);
    fill_f4(&b, "0000");
    click(&b, "#f4-submit");
    b.shown("#error", WAIT);
    assert_eq!(b.text_of("#error-code"), "CARD_PIN_WRONG");
    let what = b.text_of("#error-what");
    assert!(what.starts_with("Карта PIN-коды қате."), "{what}");
    assert!(what.contains("Қалған әрекет саны: 2"), "{what}");
    assert!(b.text_of("#error-next").contains("PIN бұғатталады"));
    assert_eq!(requests(&desk), before, "nothing registered");
    shot(&b, "f4-wrong-pin.png");

    // Two more wrong: the PIN is blocked; then even the right one is refused, for good.
    for left in ["1", "0"] {
        clear_error(&b);
        fill_f4(&b, "0000");
        click(&b, "#f4-submit");
        wait_for(
            &b,
            "return !document.getElementById('error').hidden && \
             (document.getElementById('error-what').textContent.includes(arguments[0]) || \
              document.getElementById('error-code').textContent === 'CARD_PIN_BLOCKED');",
            json!([format!(": {left}.")]),
            "the next wrong PIN",
        );
    }
    clear_error(&b);
    fill_f4(&b, CARD_PIN);
    click(&b, "#f4-submit");
    wait_for(
        &b,
        "return !document.getElementById('error').hidden && \
         document.getElementById('error-code').textContent === 'CARD_PIN_BLOCKED';",
        json!([]),
        "the blocked PIN",
    );
    assert!(
        b.text_of("#error-what")
            .contains("Карта PIN-коды бұғатталған")
    );
    assert_eq!(requests(&desk), before, "nothing registered");
    shot(&b, "f4-blocked.png");
    cards::pull_out(card);
    reader_shows(&b, "none");

    // A SIM card pulled out in the middle of the write: the page says to insert it again, the
    // NUC has issued; the card back in, the write is finished from where it was.
    let cut = desk.path("cut.json");
    cards::personalise(&cut, card_sim::CardKind::Sim);
    let mut card = cards::insert(
        &cut,
        Removal {
            after_apdus: Some(before_write + (total - before_write) / 2),
            lose_answer: true,
        },
    );
    reader_shows(&b, "sim-card");
    fill_f4(&b, CARD_PIN);
    click(&b, "#f4-submit");
    b.shown("#f4-reinsert", WAIT);
    assert!(b.text_of("#f4-reinsert").contains("Картаны қайта салыңыз"));
    let number = b
        .exec("return state.enrollment.request_number;", json!([]))
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(desk.state_of(&number), "issued");
    card.wait_gone(Duration::from_secs(10)).unwrap();
    drop(card);
    cards::wait_empty();
    reader_shows(&b, "none");
    shot(&b, "f4-reinsert.png");
    let card = cards::insert(&cut, Removal::default());
    b.shown("#f4-result", WAIT);
    assert!(!is_shown(&b, "#f4-reinsert"));
    assert!(!is_shown(&b, "#error"), "{}", b.text_of("#error"));
    let finished: Vec<_> = steps(&b)
        .into_iter()
        .filter(|s| s.1 == "finish")
        .map(|s| (s.0, s.2))
        .collect();
    assert_eq!(
        finished,
        [
            ("fetch".to_owned(), true),
            ("card".to_owned(), true),
            ("write".to_owned(), true)
        ]
    );
    let (again, serials) = judge_result(&b, &desk, "sim-card", "SIM-карта");
    assert_eq!(again, number, "the same request, not a new one");
    judge_card(&desk, "cut-export", &serials);
    cards::pull_out(card);

    // F5 at the counter: one of the ID card's certificates, for key compromise.
    click(&b, "#tab-f5");
    let serial = id_serials[0].to_lowercase();
    fill(&b, "#revoke-serial", &serial);
    fill(&b, "#revoke-iin", IIN);
    click(&b, "#revoke-submit");
    b.shown("#revoked", WAIT);
    let shown = b.text_of("#revoked");
    assert!(shown.contains(&serial), "{shown}");
    assert!(shown.contains("Кілт бұзылды"), "{shown}");
    let (reason, by): (i64, String) = desk.svc.home.db().row(
        "SELECT reason, revoked_by FROM revocations WHERE serial = ?1",
        &[&id_serials[0]],
    );
    assert_eq!(reason, 1, "RFC 5280 keyCompromise");
    assert!(by.starts_with("operator:"), "{by}");
    // The words on screen follow the language.
    switch_language(&b, "ru");
    assert!(b.text_of("#revoked").contains("Компрометация ключа"));
    assert_eq!(
        b.exec(
            "return document.getElementById('reader').textContent;",
            json!([])
        ),
        "Карты нет"
    );
    shot(&b, "revoke-ru.png");
    switch_language(&b, "kk");
    shot(&b, "revoke.png");
    // Once: the second order is refused with its code, and nothing more is stored.
    clear_error(&b);
    click(&b, "#revoke-submit");
    wait_for(
        &b,
        "return !document.getElementById('error').hidden && \
         document.getElementById('error-code').textContent === 'ALREADY_REVOKED';",
        json!([]),
        "the second revocation refused",
    );
    assert_eq!(desk.svc.home.count("SELECT COUNT(*) FROM revocations"), 1);

    service_ms.sort_by(f64::total_cmp);
    println!(
        "F4 from the console, click to result on screen without the card's own steps: {service_ms:?} ms (p95 {:.1})",
        percentile(&service_ms, 95.0)
    );
    assert!(percentile(&service_ms, 95.0) < 1000.0, "{service_ms:?}");
    drop(b);

    let log = console.stop();
    assert_eq!(unmasked_fixture_iins(&log), Vec::<String>::new(), "{log}");
    assert!(!log.contains(OPERATOR_PIN), "{log}");
    assert!(!log.contains(CARD_PIN), "{log}");
}
