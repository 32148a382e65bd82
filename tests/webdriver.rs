//! A minimal W3C WebDriver client for the console's browser test (tests/console_browser.rs):
//! starts Debian's `chromedriver` on a free loopback port, opens one session of headless
//! Chromium with a throw-away profile, and speaks the handful of commands the test needs
//! (navigate, find, click, type, read text, run a script, screenshot, windows) as JSON over
//! plain HTTP/1.1 on loopback. It never talks to anything but 127.0.0.1 and never outlives
//! its owner: dropping the session ends it and kills chromedriver (and with it the browser).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A refusal from the driver: the W3C error code (`no such element`, …) and its message, or a
/// transport failure (`http`).
#[derive(Debug, Clone)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "webdriver {}: {}", self.error, self.message)
    }
}

impl std::error::Error for WdError {}

fn transport(message: impl std::fmt::Display) -> WdError {
    WdError {
        error: "http".into(),
        message: message.to_string(),
    }
}

/// A free loopback port, never one handed to another test of this process.
pub fn free_port() -> u16 {
    crate::free_port()
}

/// One HTTP/1.1 request with a JSON body on loopback; the status and the body as JSON.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), WdError> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(transport)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(transport)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(transport)?;
    s.write_all(body.as_bytes()).map_err(transport)?;
    // chromedriver may keep the connection open despite `Connection: close`: read the head,
    // then exactly the body it announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let mut body_at = None;
    let mut wanted: Option<usize> = None;
    let mut chunked = false;
    loop {
        if let Some(at) = body_at {
            let have = raw.len() - at;
            let complete = match wanted {
                Some(n) => have >= n,
                None => chunked && raw.ends_with(b"0\r\n\r\n"),
            };
            if complete {
                break;
            }
        }
        let n = s.read(&mut buf).map_err(transport)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let end_of_head = match body_at {
            None => raw.windows(4).position(|w| w == b"\r\n\r\n"),
            Some(_) => None,
        };
        if let Some(split) = end_of_head {
            body_at = Some(split + 4);
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            for line in head.lines() {
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim() {
                        "content-length" => wanted = value.trim().parse().ok(),
                        "transfer-encoding" => chunked = value.contains("chunked"),
                        _ => {}
                    }
                }
            }
        }
    }
    let split = body_at.ok_or_else(|| transport("no end of headers"))? - 4;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    if let Some(n) = wanted {
        payload.truncate(n);
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| transport(format!("status line {head:?}")))?;
    if chunked {
        payload = dechunk(&payload)?;
    }
    let json = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload).map_err(transport)?
    };
    Ok((status, json))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, WdError> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| transport("chunk size"))?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(transport)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(transport("short chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session. Dropping it deletes the session and stops chromedriver.
pub struct Browser {
    driver: Driver,
    id: String,
    _profile: tempfile::TempDir,
}

/// An element found in the page (its WebDriver reference).
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Headless Chromium (`/usr/bin/chromium`) at 1366×768 through `chromedriver` on a free
    /// loopback port, with a fresh profile and nothing that phones home.
    pub fn start() -> Browser {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, installed by `make deps`)");
        let driver = Driver { child, port };
        let ready = Instant::now();
        loop {
            let status = http(port, "GET", "/status", None);
            if matches!(&status, Ok((200, v)) if v["value"]["ready"] == true) {
                break;
            }
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "chromedriver did not become ready on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1366,768".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let (status, v) = http(port, "POST", "/session", Some(&caps)).expect("new session");
        assert_eq!(status, 200, "new session: {v}");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {v}"))
            .to_owned();
        let b = Browser {
            driver,
            id,
            _profile: profile,
        };
        b.viewport(1366, 768);
        b
    }

    /// Sizes the window so that the page itself (the viewport, what a screenshot shows) is
    /// `width`×`height`: the window size flag counts the browser's own bars too.
    pub fn viewport(&self, width: i64, height: i64) {
        let bars = self.exec(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            json!([]),
        );
        let (dw, dh) = (bars[0].as_i64().unwrap_or(0), bars[1].as_i64().unwrap_or(0));
        self.must(
            "POST",
            "/window/rect",
            Some(json!({"width": width + dw, "height": height + dh})),
        );
    }

    /// A command of this session; its `value`, or the driver's error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let full = format!("/session/{}{path}", self.id);
        let (status, mut v) = http(self.driver.port, method, &full, body.as_ref())?;
        let value = v["value"].take();
        if status == 200 {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            })
        }
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// The first element matching `css`, if any now.
    pub fn find(&self, css: &str) -> Result<Element, WdError> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| transport(format!("element reference in {v}")))
    }

    /// The element matching `css`, waiting for it to exist and be shown (up to `timeout`).
    pub fn shown(&self, css: &str, timeout: Duration) -> Element {
        let js = "const e = document.querySelector(arguments[0]); \
                  return !!e && e.getClientRects().length > 0;";
        self.wait_until(js, json!([css]), timeout, &format!("{css} shown"));
        self.find(css).unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub fn click(&self, el: &Element) {
        self.must("POST", &format!("/element/{}/click", el.0), Some(json!({})));
    }

    pub fn clear(&self, el: &Element) {
        self.must("POST", &format!("/element/{}/clear", el.0), Some(json!({})));
    }

    pub fn type_into(&self, el: &Element, text: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        );
    }

    /// Keys pressed on the keyboard, into whatever has the focus (as a person types: no element
    /// is chosen). WebDriver's key codes work: `\u{E004}` Tab, `\u{E007}` Enter; with `shift`,
    /// Shift is held down around them.
    pub fn keys(&self, text: &str, shift: bool) {
        const SHIFT: &str = "\u{E008}";
        let mut actions = Vec::new();
        if shift {
            actions.push(json!({"type": "keyDown", "value": SHIFT}));
        }
        for c in text.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        if shift {
            actions.push(json!({"type": "keyUp", "value": SHIFT}));
        }
        self.must(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// The rendered (visible) text of an element.
    pub fn text(&self, el: &Element) -> String {
        self.must("GET", &format!("/element/{}/text", el.0), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The rendered text of the element matching `css` (empty if there is none).
    pub fn text_of(&self, css: &str) -> String {
        match self.find(css) {
            Ok(el) => self.text(&el),
            Err(_) => String::new(),
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; what it returns.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script` in the page until it calls `arguments[arguments.length - 1]` (its last
    /// argument); the value it was called with.
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls `script` (returning a boolean) until it is true; panics naming `what` after
    /// `timeout`.
    pub fn wait_until(&self, script: &str, args: Value, timeout: Duration, what: &str) {
        let since = Instant::now();
        loop {
            if self.exec(script, args.clone()) == Value::Bool(true) {
                return;
            }
            assert!(
                since.elapsed() < timeout,
                "waited {timeout:?} for {what}; the page says: {}",
                self.text_of("body")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.must("GET", "/screenshot", None);
        openssl::base64::decode_block(b64.as_str().unwrap_or("")).expect("the screenshot in base64")
    }

    /// The current window's handle.
    pub fn window(&self) -> String {
        self.must("GET", "/window", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Opens a new tab and switches to it; its handle.
    pub fn new_tab(&self) -> String {
        let v = self.must("POST", "/window/new", Some(json!({"type": "tab"})));
        let handle = v["handle"].as_str().unwrap_or("").to_owned();
        self.switch_to(&handle);
        handle
    }

    pub fn switch_to(&self, handle: &str) {
        self.must("POST", "/window", Some(json!({ "handle": handle })));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.cmd("DELETE", "", None);
    }
}
