//! The console page seen through the browser, for the browser tests (tests/console_browser.rs,
//! tests/console_cards.rs): filling and clicking by CSS selector, waiting for what is shown,
//! screenshots checked against the 1366×768 viewport, and the click-to-result timing measured
//! in the page. It drives and measures; it never decides what the page should show.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::webdriver::Browser;

/// Generous for a 2-core CI machine: a step normally takes well under a second.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where screenshots go, if asked for.
pub fn screenshot_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("NUC_CONSOLE_SCREENSHOTS")?);
    Some(if dir.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)
    } else {
        dir
    })
}

/// Takes a screenshot, checks it is the 1366×768 viewport and that the screen fits it (no
/// scrolling, sideways or down), and writes it as `name` when screenshots are asked for.
pub fn shot(b: &Browser, name: &str) {
    let png = b.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}: a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1366, 768), "{name}: the viewport");
    let overflow = b.exec(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        json!([]),
    );
    assert_eq!(overflow, json!(0), "{name}: the page scrolls sideways");
    let tall = b.exec("return document.documentElement.scrollHeight;", json!([]));
    println!("{name}: 1366×768, the page {tall} px tall");
    assert!(
        tall.as_u64().is_some_and(|h| h <= 768),
        "{name}: the screen is {tall} px tall, more than the 768 px window"
    );
    if let Some(dir) = screenshot_dir() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
    }
}

/// Whether the element `css` is rendered (present and not hidden).
pub fn is_shown(b: &Browser, css: &str) -> bool {
    b.exec(
        "const e = document.querySelector(arguments[0]); \
         return !!e && e.getClientRects().length > 0;",
        json!([css]),
    ) == json!(true)
}

/// Types `text` into the field `css`, replacing what it held.
pub fn fill(b: &Browser, css: &str, text: &str) {
    let el = b.shown(css, WAIT);
    b.clear(&el);
    b.type_into(&el, text);
}

pub fn click(b: &Browser, css: &str) {
    let el = b.shown(css, WAIT);
    b.click(&el);
}

/// Picks `lang` in the language switch and waits for the page to say so.
pub fn switch_language(b: &Browser, lang: &str) {
    // An option has no box of its own: found, not waited for as shown.
    let option = b
        .find(&format!("#lang option[value={lang}]"))
        .unwrap_or_else(|e| panic!("the {lang} option: {e}"));
    b.click(&option);
    b.wait_until(
        "return document.documentElement.lang === arguments[0];",
        json!([lang]),
        WAIT,
        &format!("the page in {lang}"),
    );
}

/// Arms a measurement: `result` is hidden and emptied, then the time of the next click's
/// dispatch (its event timestamp) and of the first frame after `result` is shown holding
/// `needle` are recorded in `window.__timing`.
pub const ARM: &str = r#"
const [sel, needle] = arguments;
const result = document.querySelector(sel);
result.hidden = true;
for (const dl of result.querySelectorAll("dl")) dl.replaceChildren();
const t = { click: null, shown: null };
window.__timing = t;
document.addEventListener("click", (e) => { if (t.click === null) t.click = e.timeStamp; },
  { capture: true, once: true });
const ready = () => !result.hidden && result.textContent.includes(needle);
const mo = new MutationObserver(() => {
  if (t.shown === null && ready()) {
    mo.disconnect();
    requestAnimationFrame(() => { t.shown = performance.now(); });
  }
});
mo.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
"#;

/// One click on `button`, timed until `result` shows `needle`; milliseconds.
pub fn timed_click(b: &Browser, button: &str, result: &str, needle: &str) -> f64 {
    b.exec(ARM, json!([result, needle]));
    click(b, button);
    b.wait_until(
        "return window.__timing.shown !== null;",
        json!([]),
        WAIT,
        &format!("{result} showing the result"),
    );
    let t = b.exec("return window.__timing;", json!([]));
    let (clicked, shown) = (t["click"].as_f64(), t["shown"].as_f64());
    match (clicked, shown) {
        (Some(c), Some(s)) => s - c,
        _ => panic!("timing of {button}: {t}"),
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits until `js` (a function body returning a boolean) holds in the page.
pub fn wait_for(b: &Browser, js: &str, args: serde_json::Value, what: &str) {
    b.wait_until(js, args, WAIT, what);
}
