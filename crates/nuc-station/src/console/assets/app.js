// The console's page. It holds the session token in memory only (never in a cookie or in
// storage: a reload means logging in again) and sends it in the X-Nuc-Session header. It
// never sees a key; the token PIN leaves it once, in the login request to its own agent.
"use strict";

const state = {
  lang: "kk", labels: null, session: null, lastError: null, number: null,
  reader: null, enrollment: null,
};

const $ = (id) => document.getElementById(id);
const t = (key) => (state.labels && state.labels[state.lang][key]) || key;

function applyLabels() {
  document.documentElement.lang = state.lang;
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  $("live").textContent = t($("live").dataset.state === "ok" ? "live.ok" : "live.lost");
  // Values that are words (a state, a reason) are said again in the new language.
  for (const el of document.querySelectorAll("[data-i18n-value]")) {
    el.textContent = t(el.dataset.i18nValue);
  }
  if (state.reader) showReader(state.reader);
  if (state.enrollment) showEnrollment(state.enrollment);
  if (state.lastError) showError(state.lastError);
}

function showError(err) {
  state.lastError = err;
  const words = (err.explain && err.explain[state.lang]) || { what: "", next: "" };
  $("error-what").textContent = words.what +
    (err.tries_left !== undefined ? " " + t("f4.tries") + ": " + err.tries_left + "." : "");
  $("error-next").textContent = words.next;
  $("error-code").textContent = err.code || "";
  $("error-message").textContent = err.message ? "(" + err.message + ")" : "";
  $("error").hidden = false;
}

function clearError() {
  state.lastError = null;
  $("error").hidden = true;
}

async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.session) headers["X-Nuc-Session"] = state.session;
  $("busy").hidden = false;
  try {
    const resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    const json = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = json.error || { code: "HTTP_" + resp.status, message: "", explain: null };
      if (resp.status === 401) loggedOut();
      throw err;
    }
    clearError();
    return json;
  } finally {
    $("busy").hidden = true;
  }
}

function fill(dl, rows) {
  dl.replaceChildren();
  for (const [key, value] of rows) {
    if (value === "" || value === null || value === undefined) continue;
    const dt = document.createElement("dt");
    dt.dataset.i18n = key;
    dt.textContent = t(key);
    const dd = document.createElement("dd");
    // { i18n: key }: a word of ours, said again when the language changes.
    if (typeof value === "object") {
      dd.dataset.i18nValue = value.i18n;
      dd.textContent = t(value.i18n);
    } else {
      dd.textContent = value;
    }
    dl.append(dt, dd);
  }
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString(state.lang === "kk" ? "kk-KZ" : "ru-RU") : "";
}

function loggedIn(json) {
  state.session = json.session;
  $("who-name").textContent = json.operator.name;
  $("who-serial").textContent = json.operator.serial_hex;
  $("who").hidden = false;
  $("logout").hidden = false;
  $("live").hidden = false;
  $("login").hidden = true;
  $("work").hidden = false;
  $("iin").focus();
  listen();
}

function loggedOut() {
  state.session = null;
  $("who").hidden = true;
  $("logout").hidden = true;
  // The live channel runs only in a session: before login there is nothing to be lost.
  $("live").hidden = true;
  $("work").hidden = true;
  $("login").hidden = false;
  $("pin").focus();
}

// The live channel: server-sent events read through fetch, so that the session token goes in
// a header (EventSource cannot send one).
async function listen() {
  const token = state.session;
  while (state.session === token) {
    try {
      const resp = await fetch("/api/events", {
        headers: { "X-Nuc-Session": token, "Accept": "text/event-stream" },
        credentials: "omit", cache: "no-store",
      });
      if (resp.status === 401) { loggedOut(); return; }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      setLive(true);
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          onEvent(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      // fall through: show the loss and retry
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onEvent(block) {
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (name === "session") {
    const s = JSON.parse(data);
    if (!s.logged_in) loggedOut();
  } else if (name === "reader") {
    showReader(JSON.parse(data));
  } else if (name === "enrollment") {
    showEnrollment(JSON.parse(data).enrollment);
  }
}

function setLive(ok) {
  $("live").dataset.state = ok ? "ok" : "lost";
  $("live").textContent = t(ok ? "live.ok" : "live.lost");
}

async function onLogin(ev) {
  ev.preventDefault();
  const pin = $("pin").value;
  $("pin").value = "";
  try {
    loggedIn(await call("POST", "/api/login", { pin }));
  } catch (err) {
    showError(err);
    $("pin").focus();
  }
}

async function onSearch(ev) {
  ev.preventDefault();
  $("applicant").hidden = true;
  try {
    const { applicant: a } = await call("POST", "/api/applicant", { iin: $("iin").value, bin: $("bin").value });
    fill($("applicant-fields"), [
      ["field.iin", a.iin], ["field.surname", a.surname], ["field.name", a.name],
      ["field.patronymic", a.patronymic], ["field.bin", a.bin],
      ["field.organization", a.organization], ["field.role", a.role],
    ]);
    $("applicant").hidden = false;
  } catch (err) { showError(err); }
}

function showApplication(a) {
  state.number = a.request_number;
  state.application = a;
  fill($("application-fields"), [
    ["field.number", a.request_number], ["field.state", { i18n: "state." + a.state }],
    ["field.iin", a.iin], ["field.surname", a.surname], ["field.name", a.name],
    ["field.patronymic", a.patronymic], ["field.bin", a.bin],
    ["field.organization", a.organization], ["field.role", a.role],
    ["field.email", a.email], ["field.registered_at", when(a.registered_at)],
    ["field.expires_at", when(a.expires_at)],
  ]);
  $("decide").hidden = a.state !== "REGISTERED";
  $("decided").hidden = true;
  $("application").hidden = false;
}

async function onFind(ev) {
  ev.preventDefault();
  $("application").hidden = true;
  try {
    const { application } = await call("GET", "/api/application/" + encodeURIComponent($("number").value.trim()));
    showApplication(application);
  } catch (err) { showError(err); }
}

async function decide(decision) {
  const buttons = [$("confirm"), $("refuse")];
  buttons.forEach((b) => (b.disabled = true));
  try {
    const r = await call("POST", "/api/application/" + encodeURIComponent(state.number) + "/decision",
      { decision, reason: $("reason").value });
    fill($("decided-fields"), [
      ["field.number", r.request_number], ["field.state", { i18n: "state." + r.state }],
      ["app.certificates", r.certificates.map((c) => c.profile + " " + c.serial_hex).join("\n")],
    ]);
    // The application above shows the state the decision left it in, not the old one.
    showApplication({ ...state.application, state: r.state });
    $("decide").hidden = true;
    $("decided").hidden = false;
    $("decided").setAttribute("tabindex", "-1");
    $("decided").focus();
  } catch (err) {
    showError(err);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function start() {
  state.lang = localStorage.getItem("nuc-console-lang") === "ru" ? "ru" : "kk";
  $("lang").value = state.lang;
  state.labels = await (await fetch("/i18n.json", { credentials: "omit" })).json();
  applyLabels();
  $("lang").addEventListener("change", () => {
    state.lang = $("lang").value;
    localStorage.setItem("nuc-console-lang", state.lang);
    applyLabels();
  });
  $("login-form").addEventListener("submit", onLogin);
  $("search-form").addEventListener("submit", onSearch);
  $("app-form").addEventListener("submit", onFind);
  $("confirm").addEventListener("click", () => decide("confirm"));
  $("refuse").addEventListener("click", () => decide("refuse"));
  $("logout").addEventListener("click", async () => {
    try { await call("POST", "/api/logout", {}); } catch (err) { /* already gone */ }
    loggedOut();
  });
  $("pin").focus();
}

document.addEventListener("DOMContentLoaded", start);

// --- Applications waiting for the CON, found by IIN, and F5 revocation at the counter. ---
// Kept apart from the code above: it only adds listeners and uses call(), fill(), t().

async function findPending(ev) {
  if (ev) ev.preventDefault();
  $("pending").hidden = true;
  const iin = $("iin").value;
  if (!/^[0-9]{12}$/.test(iin)) return;
  try {
    // Not through call(): a success here must not hide the registry lookup's error beside it.
    const resp = await fetch("/api/applications", {
      method: "POST", credentials: "omit", cache: "no-store",
      headers: { "Accept": "application/json", "Content-Type": "application/json",
                 "X-Nuc-Session": state.session || "" },
      body: JSON.stringify({ iin }),
    });
    const json = await resp.json().catch(() => ({}));
    if (!resp.ok) throw json.error || { code: "HTTP_" + resp.status, message: "", explain: null };
    const { applications } = json;
    const list = $("pending-list");
    list.replaceChildren();
    for (const a of applications) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "open-pending";
      b.dataset.number = a.request_number;
      b.textContent = t("pending.open") + " " + a.request_number;
      b.setAttribute("aria-label", t("pending.open") + " " + a.request_number);
      b.addEventListener("click", () => {
        $("number").value = a.request_number;
        showApplication(a);
        $("application").setAttribute("tabindex", "-1");
        $("application").focus();
      });
      const when_ = document.createElement("span");
      when_.className = "small";
      when_.textContent = " " + when(a.registered_at);
      li.append(b, when_);
      list.append(li);
    }
    $("pending-none").hidden = applications.length > 0;
    $("pending").hidden = false;
  } catch (err) { showError(err); }
}

async function onRevoke(ev) {
  ev.preventDefault();
  $("revoked").hidden = true;
  $("revoke-submit").disabled = true;
  try {
    const r = await call("POST", "/api/revocation", {
      serial_hex: $("revoke-serial").value.trim(),
      iin: $("revoke-iin").value.trim(),
      reason: $("revoke-reason").value,
    });
    fill($("revoked-fields"), [
      ["revoke.serial", r.serial_hex], ["revoke.reason", { i18n: "reason." + r.reason }],
      ["revoke.at", when(r.revoked_at)],
    ]);
    $("revoked").hidden = false;
    $("revoked").setAttribute("tabindex", "-1");
    $("revoked").focus();
  } catch (err) {
    showError(err);
  } finally {
    $("revoke-submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", findPending);
  $("revoke-form").addEventListener("submit", onRevoke);
});

// --- F4 at the counter: the reader's state and the enrollment's steps come over the live
// channel; the card's PIN leaves the page once, in the request that starts the enrollment. ---

function readerWord(view) {
  if (!view.service) return "no-service";
  if (view.readers.length === 0) return "no-reader";
  const r = view.readers.find((x) => x.card !== "none") || view.readers[0];
  return r.card;
}

function showReader(view) {
  state.reader = view;
  const word = readerWord(view);
  $("reader").dataset.card = word;
  $("reader").textContent = t("reader." + word);
}

function showEnrollment(e) {
  state.enrollment = e;
  if (!e) return;
  const ol = $("f4-steps");
  ol.replaceChildren();
  for (const s of e.steps) {
    const li = document.createElement("li");
    li.dataset.key = s.key;
    li.dataset.phase = s.phase;
    li.dataset.done = String(s.done);
    const time = document.createElement("span");
    time.className = "ms";
    // A step left unfinished: the enrollment failed there, or the card left during it.
    const word = s.done ? null
      : e.state === "failed" ? "f4.failed"
      : s.phase === "enroll" && e.phase === "finish" ? "f4.cut"
      : "f4.running";
    time.textContent = " — " + (word ? t(word) : s.ms + " " + t("f4.ms"));
    li.append(t("step." + s.key) + (s.phase === "finish" ? " (" + t("f4.finish") + ")" : ""), time);
    ol.append(li);
  }
  $("f4-progress").hidden = e.steps.length === 0;
  const reinsert = e.state === "reinsert";
  if (reinsert && $("f4-reinsert").hidden) {
    // Wherever the operator is, the card is what matters now.
    showTab("f4");
    $("f4-reinsert").hidden = false;
    $("f4-reinsert").scrollIntoView({ block: "nearest" });
  }
  $("f4-reinsert").hidden = !reinsert;
  if (e.state === "done" && e.result) {
    showEnrolled(e.result);
  } else {
    $("f4-result").hidden = true;
  }
}

function showEnrolled(r) {
  fill($("f4-result-fields"), [
    ["field.number", r.request_number], ["f4.card", { i18n: "reader." + r.card_kind }],
    ["f4.serial", r.card_serial], ["f4.total", r.total_ms + " " + t("f4.ms")],
  ]);
  const box = $("f4-certificates");
  box.replaceChildren();
  for (const c of r.certificates) {
    const dl = document.createElement("dl");
    dl.className = "certificate";
    dl.dataset.serial = c.serial_hex;
    fill(dl, [
      ["f4.profile", c.profile], ["f4.subject", c.subject], ["f4.serial", c.serial_hex],
      ["f4.validity", when(c.not_before) + " — " + when(c.not_after)],
    ]);
    box.append(dl);
  }
  $("f4-result").hidden = false;
}

function showTab(name) {
  for (const tab of document.querySelectorAll("#tabs [role=tab]")) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(on));
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
}

async function onEnroll(ev) {
  ev.preventDefault();
  // A refusal of the last try is not this one's.
  clearError();
  const pin = $("f4-pin").value;
  $("f4-pin").value = "";
  $("f4-result").hidden = true;
  $("f4-submit").disabled = true;
  try {
    const r = await call("POST", "/api/enrollment", {
      iin: $("f4-iin").value.trim(), bin: $("f4-bin").value.trim(),
      email: $("f4-email").value.trim(), pin,
    });
    showEnrollment(r.enrollment);
    $("f4-result").setAttribute("tabindex", "-1");
    $("f4-result").focus();
  } catch (err) {
    showError(err);
    $("f4-pin").focus();
  } finally {
    $("f4-submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("f4-form").addEventListener("submit", onEnroll);
  for (const tab of document.querySelectorAll("#tabs [role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
});
