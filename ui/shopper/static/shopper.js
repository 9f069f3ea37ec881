// Shopper screen. The session is the one owner of state: this page only
// shows it (GET /api/ui/state once, then the event stream) and sends the
// shopper's input (PIN pad, cancel). Digits typed live only in `digits`
// (the MRZ fields in `mrz`) until they are posted to /api/session/password
// and are then cleared; nothing typed is stored or sent anywhere else.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    lang: "zh-CN", defaultLang: "zh-CN",
    cat: {}, status: null, service: { out_of_service: false, reason: "" },
    components: {}, notReady: "", speechKeys: {}, faceTimeoutMs: 30000, faceSince: 0, smileTimeoutMs: 10000, smileSince: 0, merchant: "", chip: {}, guidance: "",
    retriesLeft: null, wrong: false, kind: "can", digits: "", sending: false, mrz: null, needsMRZ: false, bankEID: false,
    staff: { open: false, token: "", digits: "" }, awakeUntil: 0, screen: "",
    // Bus event time → DOM updated, and → next frame painted (ms).
    latencies: [], paints: [], handled: 0,
    // Keys pressed and screen touches seen (the keys-only test reads them).
    keys: 0, pointers: 0,
  };
  window.kioskUI = ui; // read by the browser tests and benchmarks

  // ---- strings ----
  const t = (key, vars) => {
    let s = ui.cat[key];
    if (s === undefined) { return key; }
    for (const [k, v] of Object.entries(vars || {})) { s = s.replace("{" + k + "}", v); }
    return s;
  };
  // kioskd may restart under the screen: a failed request keeps the page as
  // it is (the event stream reconnects and resyncs), it never throws.
  async function loadLang(lang) {
    let cat;
    try {
      const r = await fetch("i18n/" + lang + ".json");
      if (!r.ok) { return; }
      cat = await r.json();
    } catch (e) {
      return;
    }
    ui.cat = cat;
    ui.lang = lang;
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-i18n]")) { el.textContent = t(el.dataset.i18n); }
    $("lang").textContent = t("lang.other");
    render();
  }
  function money(req) {
    if (!req || !req.currency) { return ""; }
    try {
      const f = new Intl.NumberFormat(ui.lang, { style: "currency", currency: req.currency, currencyDisplay: "narrowSymbol" });
      const digits = f.resolvedOptions().maximumFractionDigits;
      return f.format(req.amount_minor / Math.pow(10, digits));
    } catch (e) {
      return (req.amount_minor / 100).toFixed(2) + " " + req.currency;
    }
  }

  // ---- sound (Web Audio; created on the first touch, as browsers ask) ----
  let audio = null;
  document.addEventListener("pointerdown", () => {
    if (!audio && window.AudioContext) { audio = new AudioContext(); }
    ui.awakeUntil = Date.now() + 30000;
    render();
  }, { capture: true });
  function beep(freqs, dur) {
    if (!audio || audio.state !== "running") { return; }
    let at = audio.currentTime;
    for (const f of freqs) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = f; g.gain.setValueAtTime(0.25, at); g.gain.exponentialRampToValueAtTime(0.001, at + dur);
      o.connect(g).connect(audio.destination); o.start(at); o.stop(at + dur);
      at += dur + 0.06;
    }
  }
  const sounds = {
    attention: () => beep([880, 880, 880], 0.12),
    success: () => beep([660, 990], 0.18),
    failure: () => beep([220], 0.6),
    tick: () => beep([1320], 0.05),
    key: () => beep([1000], 0.03),
  };

  // ---- which screen ----
  const stepOf = { insert_card: "card", enter_password: "code", reading_chip: "chip", face_match: "face", smile: "face", authorizing: "pay", result: "pay", remove_card: "pay" };
  const stepOrder = ["card", "code", "chip", "face", "pay"];
  function componentDown() {
    // The server's answer is the till's: a session would be refused now.
    if (ui.notReady) { return ui.notReady.replace(/_down$/, ""); }
    for (const name of ["cardreader", "camera", "face"]) {
      const c = ui.components[name];
      if (c && c.state === "down") { return name; }
    }
    return "";
  }
  function screenFor() {
    if (ui.staff.open) { return "staff"; }
    const st = ui.status ? ui.status.state : "idle";
    if (st === "idle") {
      if (ui.service.out_of_service) { return ui.service.reason === "maintenance" ? "maintenance" : "out_of_service"; }
      // A firmware update installing: serviced, not broken.
      if (ui.notReady === "updating") { return "maintenance"; }
      if (componentDown()) { return "out_of_service"; }
      return "attract";
    }
    if (st === "face_match" || st === "smile") { return "face"; }
    return st;
  }

  // ---- rendering ----
  function render() {
    if (!ui.cat["brand"]) { return; }
    const st = ui.status || { state: "idle" };
    const screen = screenFor();
    const changed = screen !== ui.screen;
    ui.screen = screen;
    document.body.dataset.screen = screen;
    document.body.dataset.state = st.state;
    document.body.classList.toggle("landscape", innerWidth > innerHeight);

    const req = st.request;
    $("amount-box").hidden = !req || screen === "staff";
    if (req) {
      // A branch service has no amount: its name stands in the amount's place.
      $("amount").textContent = req.kind === "service" ? t("service.name", { service: req.service }) : money(req);
      $("ref").textContent = req.merchant_ref || req.id.slice(0, 8);
    }
    $("merchant").textContent = ui.merchant ? ui.merchant + " ·" : "";

    const step = stepOf[st.state];
    const at = stepOrder.indexOf(step);
    for (const li of document.querySelectorAll("#steps li")) {
      const i = stepOrder.indexOf(li.dataset.step);
      li.classList.toggle("now", i === at);
      li.classList.toggle("done", at >= 0 && i < at);
    }
    $("cancel").hidden = !["insert_card", "enter_password", "face"].includes(screen);
    $("staff-open").hidden = screen !== "attract" && screen !== "out_of_service" && screen !== "maintenance";

    switch (screen) {
      case "attract":
        $("attract-sub").textContent = Date.now() < ui.awakeUntil ? t("idle.awake") : t("attract.sub");
        break;
      case "enter_password": renderPad(); break;
      case "face": renderFace(st); break;
      case "result": renderResult(st); break;
      case "remove_card": {
        const o = st.outcome;
        $("remove-result").textContent = o ? (o.approved ? "✓ " + t("result.approved") : "✗ " + t("result.declined")) : "";
        break;
      }
      case "out_of_service": {
        const down = componentDown();
        $("oos-text").textContent = ui.service.out_of_service || !down ? t("oos.tamper") : t("oos.component") + " (" + t("component." + down) + ")";
        break;
      }
      case "staff": renderStaff(); break;
    }
    preview(screen === "face");
    renderMoreTime(st);
    if (changed) { onScreenChange(screen, st); }
  }

  // The session offers more time before a step the shopper paces times
  // out; the offer takes the focus, so Enter on the keypad accepts it.
  function renderMoreTime(st) {
    const o = st.more_time;
    const on = !!o && o.step === st.state && !ui.staff.open;
    const box = $("more-time");
    const was = !box.hidden;
    box.hidden = !on;
    if (!on) { return; }
    const left = Math.max(0, Math.ceil((Date.parse(o.until) - Date.now()) / 1000));
    $("more-time-text").textContent = t("more_time.offer", { s: left });
    if (!was) { $("more-time-btn").focus(); }
  }
  $("more-time-btn").addEventListener("click", () => { post("/api/session/more-time", {}); });

  function onScreenChange(screen, st) {
    if (screen !== "enter_password") { ui.digits = ""; ui.mrz = null; ui.sending = false; }
    if (screen === "insert_card" || screen === "remove_card") { sounds.attention(); }
    if (screen === "result") { (st.outcome && st.outcome.approved ? sounds.success : sounds.failure)(); }
  }

  function renderPad() {
    const kind = ui.kind, can = kind === "can", mrz = kind === "mrz";
    for (const k of ["can", "pin", "mrz"]) {
      $("kind-" + k).classList.toggle("on", kind === k);
      $("kind-" + k).setAttribute("aria-pressed", kind === k);
    }
    const bank = ui.bankEID && kind === "pin";
    $("code-title").textContent = t(mrz ? "code.title_mrz" : can ? "code.title_can" : bank ? "code.title_bankeid" : "code.title_pin");
    const hint = mrz ? (ui.needsMRZ ? "code.needs_mrz" : "code.hint_mrz") : can ? "code.hint_can" : bank ? "code.hint_bankeid" : "code.hint_pin";
    $("code-hint").textContent = ui.sending ? t("code.sent") : t(hint);
    const left = ui.retriesLeft;
    $("code-error").hidden = !ui.wrong && left == null;
    $("code-error-text").textContent = (ui.wrong ? t(mrz ? "code.wrong_mrz" : "code.wrong") + " " : "") + (left != null ? t("code.retries", { n: left }) : "");
    $("pin-dots").hidden = mrz;
    document.body.classList.toggle("mrz-mode", mrz);
    $("mrz").hidden = !mrz;
    if (mrz) {
      if (!ui.mrz) { ui.mrz = newMRZ(); }
      renderMRZ();
      return;
    }
    $("letters").hidden = true;
    $("key-ok-text").textContent = t("key.ok");
    dots($("pin-dots"), ui.digits.length, can ? 6 : 6);
    const n = ui.digits.length;
    $("key-ok").disabled = ui.sending || (can ? n !== 6 : n < 4);
  }

  // ---- MRZ entry (ICAO 9303-3) ----
  // The shopper types each field as printed in the machine-readable zone,
  // then the check digit printed after it; the digit is judged as soon as
  // it is typed (§4.9: weights 7, 3, 1, A=10 … Z=35, '<'=0, modulo 10), so
  // a typo is caught at its field, before the chip is asked. The kiosk
  // checks again and the chip is the final judge.
  const mrzFields = ["document_number", "birth", "expiry"];
  const mrzErrKeys = {
    document_number: { format: "mrz.doc_format", check_digit: "mrz.doc_check" },
    birth: { format: "mrz.date_format", check_digit: "mrz.birth_check" },
    expiry: { format: "mrz.date_format", check_digit: "mrz.expiry_check" },
  };
  const mrzNowKeys = { document_number: "mrz.now_document_number", birth: "mrz.now_birth", expiry: "mrz.now_expiry" };
  function newMRZ() {
    return { at: 0, part: "value", v: { document_number: "", birth: "", expiry: "" }, cd: { document_number: "", birth: "", expiry: "" }, err: {} };
  }
  function checkDigit(s) {
    const w = [7, 3, 1];
    let sum = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      sum += (c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 90 ? c - 55 : 0) * w[i % 3];
    }
    return String(sum % 10);
  }
  function mrzValueOK(f, v) {
    if (f === "document_number") { return /^[A-Z0-9]{1,22}$/.test(v); }
    if (!/^[0-9]{6}$/.test(v)) { return false; }
    const m = +v.slice(2, 4), d = +v.slice(4, 6);
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
  }
  const mrzDone = (m) => mrzFields.every((f) => m.cd[f] !== "");
  function mrzAdvance(m) {
    // On to the first field not yet confirmed by its check digit.
    const i = mrzFields.findIndex((f) => m.cd[f] === "");
    m.at = i < 0 ? mrzFields.length : i;
    m.part = "value";
  }
  function mrzEndValue(m) {
    const f = mrzFields[m.at];
    if (!mrzValueOK(f, m.v[f])) { m.err[f] = "format"; return; }
    m.part = "check";
  }
  function mrzKey(c) {
    const m = ui.mrz;
    if (!m || m.at >= mrzFields.length) { return; }
    const f = mrzFields[m.at];
    delete m.err[f];
    if (m.part === "value") {
      const date = f !== "document_number";
      if (m.v[f].length >= (date ? 6 : 22) || (date && !/[0-9]/.test(c))) { return; }
      m.v[f] += c;
      if (date && m.v[f].length === 6) { mrzEndValue(m); }
      return;
    }
    if (!/[0-9]/.test(c)) { return; }
    if (c !== checkDigit(m.v[f])) { m.err[f] = "check_digit"; return; }
    m.cd[f] = c;
    mrzAdvance(m);
  }
  function mrzBack() {
    const m = ui.mrz;
    if (!m) { return; }
    if (m.at >= mrzFields.length) { m.at = mrzFields.length - 1; m.part = "check"; }
    let f = mrzFields[m.at];
    delete m.err[f];
    if (m.part === "check") { m.cd[f] = ""; m.part = "value"; m.v[f] = m.v[f].slice(0, -1); return; }
    if (m.v[f]) { m.v[f] = m.v[f].slice(0, -1); return; }
    if (m.at > 0) {
      m.at--; f = mrzFields[m.at];
      m.cd[f] = ""; m.part = "check";
    }
  }
  function renderMRZ() {
    const m = ui.mrz;
    for (const f of mrzFields) {
      const row = document.querySelector(`.mrz-row[data-field="${f}"]`);
      const now = mrzFields[m.at] === f;
      row.classList.toggle("now", now);
      row.classList.toggle("check", now && m.part === "check");
      row.classList.toggle("done", m.cd[f] !== "");
      $("mrz-v-" + f).textContent = m.v[f];
      $("mrz-cd-" + f).textContent = m.cd[f];
      $("mrz-err-" + f).textContent = m.err[f] ? t(mrzErrKeys[f][m.err[f]]) : "";
    }
    const f = mrzFields[m.at];
    $("mrz-now").textContent = !f ? t("mrz.now_done") : m.part === "check" ? t("mrz.now_check") : t(mrzNowKeys[f]);
    $("letters").hidden = !(f === "document_number" && m.part === "value");
    // OK ends the document number (variable length); with every field
    // confirmed it sends.
    const done = mrzDone(m);
    $("key-ok-text").textContent = t(done ? "key.ok" : "key.next");
    $("key-ok").disabled = ui.sending || !(done || (f === "document_number" && m.part === "value" && m.v[f] !== ""));
  }
  function dots(el, n, min) {
    el.replaceChildren();
    for (let i = 0; i < Math.max(n, min); i++) {
      const d = document.createElement("i");
      if (i >= n) { d.className = "empty"; }
      el.appendChild(d);
    }
  }

  const guideIcons = { come_closer: "⬆", move_back: "⬇", center_face: "✥", look_at_camera: "◉", hold_still: "◎", more_light: "☀", less_light: "☁", open_eyes: "◐", smile: "☺", one_person: "☝" };
  function renderFace(st) {
    const smiling = st.state === "smile";
    const p = st.progress || {};
    const g = p.guidance || (smiling ? "smile" : "look_at_camera");
    const service = st.request && st.request.kind === "service";
    $("face-title").textContent = !smiling ? t("face.title") : service ? t("smile.title_service") : t("smile.title", { amount: money(st.request) });
    $("guide-icon").textContent = guideIcons[g] || "ℹ";
    $("guide-text").textContent = t("guide." + g);
    $("oval").classList.toggle("good", g === "hold_still" || g === "smile");
    $("countdown").hidden = !smiling;
    if (g !== ui.guidance) { ui.guidance = g; sounds.tick(); }
    tickCountdown();
  }
  function tickCountdown() {
    if (ui.screen !== "face" || !ui.status || ui.status.state !== "smile") { return; }
    // The session says when the step ends (the earlier of its own clock
    // and the smile phase's, moved by any time the shopper took); before
    // its first word, the smile step ends at its own timeout or the face
    // step's, whichever comes first.
    const p = ui.status.progress;
    const until = p && p.until ? Date.parse(p.until) : NaN;
    const end = !isNaN(until) ? until : Math.min(ui.faceSince + ui.faceTimeoutMs, (ui.smileSince || ui.faceSince) + ui.smileTimeoutMs);
    const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    $("countdown").textContent = "◷ " + t("smile.countdown", { s: left });
  }
  setInterval(() => { tickCountdown(); chipProgress(); if (ui.status && ui.status.more_time) { renderMoreTime(ui.status); } }, 250);

  function chipProgress() {
    if (ui.screen !== "reading_chip" || !ui.status) { return; }
    // The chip reports each step of the read; between steps the bar eases
    // on a little, never past the next step.
    const s = (Date.now() - Date.parse(ui.status.since)) / 1000;
    const done = ui.chip.total ? (ui.chip.step - 1) / ui.chip.total : 0;
    const next = ui.chip.total ? ui.chip.step / ui.chip.total : 1;
    const f = done + (next - done) * (1 - Math.exp(-s / 3));
    $("chip-bar").style.width = (100 * f).toFixed(1) + "%";
  }

  function renderResult(st) {
    const o = st.outcome || { approved: false, reasons: [] };
    $("result-icon").textContent = o.approved ? "✓" : "✗";
    $("result-icon").className = "icon big " + (o.approved ? "ok" : "bad");
    $("result-title").textContent = t(o.approved ? "result.approved" : "result.declined");
    $("result-sub").textContent = o.approved ? t("result.approved_sub") : t("result.why");
    const ul = $("reasons");
    ul.replaceChildren();
    if (!o.approved) {
      const seen = new Set();
      for (const r of o.reasons || []) {
        const text = ui.cat[r.message] ? t(r.message) : t("msg.technical");
        if (seen.has(text)) { continue; }
        seen.add(text);
        const li = document.createElement("li");
        li.textContent = text;
        ul.appendChild(li);
      }
    }
  }

  // The preview streams only while this screen is on the face steps (the
  // server refuses it otherwise); leaving the steps drops the stream.
  let previewOn = false;
  function preview(on) {
    const img = $("preview");
    if (on === previewOn) { return; }
    previewOn = on;
    if (on) {
      img.onload = () => { $("no-preview").hidden = true; img.classList.remove("off"); };
      img.src = "/api/camera/preview.mjpg?t=" + Date.now();
    } else {
      img.onload = null;
      img.removeAttribute("src");
      img.classList.add("off");
      $("no-preview").hidden = false;
    }
  }

  // ---- input ----
  async function post(path, body, headers) {
    let r;
    try {
      r = await fetch(path, { method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, headers || {}), body: JSON.stringify(body) });
    } catch (e) {
      return { ok: false, status: 0, body: { error: "network" } };
    }
    let j = {};
    try { j = await r.json(); } catch (e) { /* empty body */ }
    return { ok: r.ok, status: r.status, body: j };
  }
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
    const b = document.createElement("button");
    b.type = "button"; b.className = "key"; b.dataset.d = c; b.textContent = c;
    $("letters").appendChild(b);
  }
  const onKey = (e) => {
    const k = e.target.closest("button.key[data-d]");
    if (!k || ui.sending) { return; }
    if (ui.kind === "mrz") {
      mrzKey(k.dataset.d);
    } else {
      if (ui.digits.length >= 12 || !/[0-9]/.test(k.dataset.d)) { return; }
      ui.digits += k.dataset.d;
    }
    sounds.key();
    // Speech on the kiosk says "digit entered"; the page sends that a key
    // was typed, never which.
    if (ui.status && ui.status.request) { post("/api/session/keyed", { request_id: ui.status.request.id }); }
    renderPad();
  };
  $("pad").addEventListener("click", onKey);
  $("letters").addEventListener("click", onKey);
  $("mrz").addEventListener("click", (e) => {
    // Touching a field reopens it (its check digit is asked again).
    const row = e.target.closest(".mrz-row");
    if (!row || !ui.mrz || ui.sending) { return; }
    const m = ui.mrz, i = mrzFields.indexOf(row.dataset.field);
    m.at = i; m.part = "value"; m.cd[row.dataset.field] = "";
    renderPad();
  });
  $("key-back").addEventListener("click", () => {
    if (ui.kind === "mrz") { mrzBack(); } else { ui.digits = ui.digits.slice(0, -1); }
    renderPad();
  });
  const setKind = (k) => { ui.kind = k; ui.digits = ""; ui.mrz = null; ui.wrong = false; renderPad(); };
  $("kind-can").addEventListener("click", () => setKind("can"));
  $("kind-pin").addEventListener("click", () => setKind("pin"));
  $("kind-mrz").addEventListener("click", () => setKind("mrz"));
  $("key-ok").addEventListener("click", async () => {
    let body;
    if (ui.kind === "mrz") {
      const m = ui.mrz;
      if (!m) { return; }
      if (!mrzDone(m)) { mrzEndValue(m); renderPad(); return; }
      body = {
        kind: "mrz", document_number: m.v.document_number, document_number_check: m.cd.document_number,
        birth: m.v.birth, birth_check: m.cd.birth, expiry: m.v.expiry, expiry_check: m.cd.expiry,
      };
    } else {
      body = { kind: ui.kind, digits: ui.digits };
    }
    const sent = ui.mrz;
    ui.digits = ""; ui.mrz = null; ui.sending = true; ui.wrong = false;
    renderPad();
    const r = await post("/api/session/password", body);
    body = null;
    if (!r.ok) {
      ui.sending = false;
      // The kiosk names the field it refused: reopen that one, keep the rest.
      if (sent && r.body && r.body.field && mrzFields.includes(r.body.field)) {
        ui.mrz = sent;
        sent.cd[r.body.field] = "";
        sent.err[r.body.field] = r.body.problem === "check_digit" ? "check_digit" : "format";
        mrzAdvance(sent);
      }
      renderPad();
    }
  });
  $("cancel").addEventListener("click", () => { post("/api/session/cancel", {}); });
  // ---- physical keypad ----
  // The kiosk's keypad is a USB HID keyboard: digits, Enter, Escape
  // (cancel), Backspace (one digit back), Delete (clear the entry) and F1,
  // the accessibility key (display modes in turn), and the speech keys
  // (by default F2 repeat, F3 pause, F4/F5 volume). Everything else is
  // ordinary keyboard focus: Tab moves in the page's order, Enter or Space
  // presses the focused button.
  const modeCycle = [[false, false], [true, false], [false, true], [true, true]];
  document.addEventListener("keydown", (e) => {
    ui.keys++;
    // The speech keys (speech.*_key): speech runs in the kiosk, so the
    // page only passes them on, for the session it shows.
    const speechAction = Object.keys(ui.speechKeys).find((a) => ui.speechKeys[a] === e.key);
    if (speechAction) {
      e.preventDefault();
      const st = ui.status;
      if (st && st.state !== "idle" && st.request) { post("/api/session/speech", { request_id: st.request.id, action: speechAction }); }
      return;
    }
    const digit = /^[0-9]$/.test(e.key) ? e.key : "";
    const pad = ui.screen === "enter_password" ? "pad" : ui.screen === "staff" && !ui.staff.token ? "staff-pad" : "";
    let target = null;
    if (digit && pad) {
      target = document.querySelector(`#${pad} button[data-d="${digit}"]`);
    } else if (e.key === "Enter" && pad && !(e.target instanceof HTMLButtonElement && e.target.id !== "key-ok" && e.target.id !== "staff-ok" && !e.target.closest(".pad"))) {
      // Enter confirms the entry unless another button (language, mode,
      // CAN/PIN choice) has the focus: that one it presses.
      target = $(pad === "pad" ? "key-ok" : "staff-ok");
    } else if (e.key === "Backspace" && pad) {
      target = $(pad === "pad" ? "key-back" : "staff-back");
    } else if (e.key === "Delete" && pad) {
      if (pad === "pad") { ui.digits = ""; if (ui.mrz) { ui.mrz = newMRZ(); } renderPad(); } else { ui.staff.digits = ""; renderStaff(); }
      e.preventDefault();
      return;
    } else if (e.key === "Escape") {
      target = !$("cancel").hidden ? $("cancel") : ui.staff.open ? $("staff-close") : null;
    } else if (e.key === "F1") {
      const now = modeCycle.findIndex(([l, c]) => l === document.documentElement.classList.contains("large-text") && c === document.documentElement.classList.contains("high-contrast"));
      const [l, c] = modeCycle[(now + 1) % modeCycle.length];
      setMode("large-text", l); setMode("high-contrast", c); render();
      e.preventDefault();
      return;
    }
    if (target && !target.disabled && !target.hidden) {
      e.preventDefault();
      // Typing moves the focus onto the pad, so Enter then confirms.
      if (target.closest(".pad")) { target.focus(); }
      target.click();
    }
  });
  document.addEventListener("pointerdown", () => { ui.pointers++; }, { capture: true });

  // Display modes, chosen on screen; the next shopper starts without them.
  function setMode(name, on) {
    document.documentElement.classList.toggle(name, on);
    const b = $(name === "large-text" ? "mode-large" : "mode-contrast");
    b.setAttribute("aria-pressed", on);
    b.classList.toggle("on", on);
  }
  $("mode-large").addEventListener("click", () => { setMode("large-text", !document.documentElement.classList.contains("large-text")); render(); });
  $("mode-contrast").addEventListener("click", () => { setMode("high-contrast", !document.documentElement.classList.contains("high-contrast")); render(); });
  $("lang").addEventListener("click", () => {
    const langs = ["zh-CN", "en"];
    const lang = langs[(langs.indexOf(ui.lang) + 1) % langs.length];
    // The session keeps the shopper's language, so a page loaded anew
    // (the display restarts its browser) resumes in it.
    const st = ui.status;
    if (st && st.state !== "idle" && st.request) { post("/api/session/language", { request_id: st.request.id, lang: lang }); }
    loadLang(lang);
  });

  // ---- staff ----
  $("staff-open").addEventListener("click", () => {
    ui.staff = { open: true, token: "", digits: "" };
    $("staff-error").hidden = true;
    render();
  });
  $("staff-close").addEventListener("click", async () => {
    if (ui.staff.token) { await post("/api/staff/logout", {}, { "X-Staff-Token": ui.staff.token }); }
    ui.staff = { open: false, token: "", digits: "" };
    render();
  });
  $("staff-pad").addEventListener("click", (e) => {
    const k = e.target.closest("button.key[data-d]");
    if (!k || ui.staff.digits.length >= 12) { return; }
    ui.staff.digits += k.dataset.d;
    renderStaff();
  });
  $("staff-back").addEventListener("click", () => { ui.staff.digits = ui.staff.digits.slice(0, -1); renderStaff(); });
  $("staff-ok").addEventListener("click", async () => {
    const pin = ui.staff.digits;
    ui.staff.digits = "";
    const r = await post("/api/staff/login", { pin: pin });
    if (r.ok) {
      ui.staff.token = r.body.token;
      $("staff-error").hidden = true;
      await loadStaff();
    } else {
      $("staff-error").hidden = false;
      $("staff-error-text").textContent = t(r.status === 429 ? "staff.locked" : r.status === 503 ? "staff.disabled" : "staff.wrong");
    }
    renderStaff();
  });
  $("staff-maint").addEventListener("click", async () => {
    const on = ui.service.reason !== "maintenance";
    await post("/api/staff/maintenance", { on: on }, { "X-Staff-Token": ui.staff.token });
    await loadStaff();
  });
  $("staff-reset").addEventListener("click", async () => {
    await post("/api/staff/reset-tamper", {}, { "X-Staff-Token": ui.staff.token });
    await loadStaff();
  });
  // Enrolling again after a tamper wipe: the hub's provisioning address
  // and the token from the bank; the token is cleared from the field at
  // once.
  $("staff-enroll-btn").addEventListener("click", async () => {
    const body = { hub: $("enroll-hub").value.trim(), token: $("enroll-token").value.trim() };
    $("enroll-token").value = "";
    const r = await post("/api/staff/enroll", body, { "X-Staff-Token": ui.staff.token });
    $("staff-enroll-result").textContent = r.ok ? t("staff.enrolled") : t("staff.enroll_failed") + " " + ((r.body && r.body.error) || "");
    await loadStaff();
  });
  // Diagnostics: kioskd's counters and heap/goroutine profiles (no images,
  // templates, PINs or MRZ data), offered as a file to save; the fleet
  // pulls the same archive through a job.
  $("staff-diagnostics").addEventListener("click", async () => {
    const out = $("staff-diagnostics-result");
    out.textContent = t("staff.diagnostics_collecting");
    let r;
    try {
      r = await fetch("/api/staff/diagnostics", { method: "POST", headers: { "X-Staff-Token": ui.staff.token } });
    } catch (e) {
      r = null;
    }
    if (!r || !r.ok) {
      out.textContent = t("staff.diagnostics_failed") + " " + (r ? r.status : "network");
      return;
    }
    const blob = await r.blob();
    const m = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = m ? m[1] : "kioskd-diagnostics.zip";
    // The label follows a change of language (data-i18n); the size stays.
    const label = document.createElement("span");
    label.dataset.i18n = "staff.diagnostics_save";
    label.textContent = t("staff.diagnostics_save");
    a.append(label, " (" + Math.ceil(blob.size / 1024) + " KiB)");
    out.textContent = "";
    out.appendChild(a);
  });
  // Decommissioning is for good: the first tap arms, the second does it.
  let decommissionArmed = false;
  $("staff-decommission").addEventListener("click", async () => {
    const btn = $("staff-decommission");
    if (!decommissionArmed) {
      decommissionArmed = true;
      btn.textContent = t("staff.decommission_confirm");
      return;
    }
    decommissionArmed = false;
    btn.disabled = true;
    const r = await post("/api/staff/decommission", { force: false }, { "X-Staff-Token": ui.staff.token });
    btn.disabled = false;
    btn.textContent = r.ok ? t("staff.decommissioned") : t("staff.decommission_failed") + " " + ((r.body && r.body.error) || "");
    if (r.ok) { btn.dataset.done = "1"; }
  });
  async function loadStaff() {
    let data;
    try {
      const r = await fetch("/api/staff/status", { headers: { "X-Staff-Token": ui.staff.token } });
      if (!r.ok) { ui.staff.token = ""; ui.staff.data = null; renderStaff(); return; }
      data = await r.json();
    } catch (e) {
      return;
    }
    ui.staff.data = data;
    ui.service = ui.staff.data.service;
    renderStaff();
  }
  function renderStaff() {
    const s = ui.staff;
    $("staff-login").hidden = !!s.token;
    $("staff-panel").hidden = !s.token || !s.data;
    dots($("staff-dots"), s.digits.length, 4);
    if (!s.token || !s.data) { return; }
    const h = s.data.health;
    $("st-device").textContent = h.device + " (" + h.mode + ")";
    // kioskd first, then OpenCV, Go, gocv and the face models (hash prefixes).
    const vs = s.data.versions || {};
    $("st-version").textContent = [h.version].concat(Object.keys(vs).filter((k) => k !== "kioskd").sort().map((k) => k + " " + vs[k])).join(" · ");
    $("st-uptime").textContent = Math.round(h.uptime_s) + " s";
    const tx = h.components.transactions;
    $("st-outbox").textContent = tx && tx.info && tx.info.outbox ? String(tx.info.outbox.depth) : "–";
    $("st-service").textContent = s.data.service.out_of_service ? "⊘ " + s.data.service.reason : "✓ " + t("staff.in_service");
    const tb = $("st-components");
    tb.replaceChildren();
    for (const name of Object.keys(h.components).sort()) {
      const c = h.components[name];
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.textContent = name;
      const td = document.createElement("td");
      td.className = c.state === "ok" ? "st-ok" : c.state === "disabled" ? "st-off" : "st-bad";
      td.textContent = t("state." + c.state) + (c.detail ? " — " + c.detail : "");
      tr.append(th, td); tb.appendChild(tr);
    }
    const ul = $("st-errors");
    ul.replaceChildren();
    for (const e of s.data.errors || []) {
      const li = document.createElement("li");
      li.textContent = new Date(e.time).toLocaleTimeString(ui.lang) + " " + e.kind + ": " + e.detail;
      ul.appendChild(li);
    }
    if (!ul.children.length) { const li = document.createElement("li"); li.textContent = t("staff.none"); ul.appendChild(li); }
    $("staff-maint").textContent = t(s.data.service.reason === "maintenance" ? "staff.maint_off" : "staff.maint_on");
    $("staff-reset").hidden = s.data.service.reason !== "tamper";
    $("staff-enroll").hidden = s.data.service.reason !== "tamper";
  }

  // ---- state from the kiosk ----
  function measured(ev) {
    const sent = Date.parse(ev.time);
    if (isNaN(sent)) { return; }
    const now = performance.timeOrigin + performance.now();
    push(ui.latencies, now - sent);
    requestAnimationFrame(() => push(ui.paints, performance.timeOrigin + performance.now() - sent));
  }
  function push(a, v) { a.push(v); if (a.length > 500) { a.shift(); } }

  function onSession(ev) {
    const st = ev.data;
    const prev = ui.status ? ui.status.state : "idle";
    if (st.state === "insert_card" && prev !== "insert_card") { ui.retriesLeft = null; ui.wrong = false; ui.kind = "can"; ui.needsMRZ = false; ui.bankEID = false; }
    // A bank eID card takes its PIN (no CAN, no MRZ): the pad turns to
    // PIN entry (once; the shopper may still switch).
    if (st.document === "bankeid" && !ui.bankEID) { ui.bankEID = true; ui.kind = "pin"; ui.digits = ""; }
    // The chip offers BAC only: the pad switches to MRZ entry (once; the
    // shopper may still switch back).
    if (st.needs_mrz && !ui.needsMRZ) { ui.kind = "mrz"; ui.mrz = null; ui.digits = ""; }
    ui.needsMRZ = !!st.needs_mrz;
    if (st.state === "face_match" || (st.state === "smile" && !ui.faceSince)) { ui.faceSince = Date.parse(st.since); }
    if (st.state === "smile" && prev !== "smile") { ui.smileSince = Date.parse(st.since); }
    if (st.state === "idle") {
      ui.faceSince = 0; ui.smileSince = 0; ui.guidance = "";
      // The next shopper starts in the kiosk's default language.
      if (prev !== "idle" && ui.lang !== ui.defaultLang) { loadLang(ui.defaultLang); }
      if (prev !== "idle") { setMode("large-text", false); setMode("high-contrast", false); }
    }
    if (st.state === "reading_chip" || st.state === "face_match") { ui.wrong = false; }
    if (st.state === "enter_password") { ui.chip = {}; }
    if (st.pin_retries_left != null) { ui.retriesLeft = st.pin_retries_left; }
    ui.sending = false;
    ui.status = st;
  }
  const handlers = {
    "session.progress": (ev) => { if (ui.status) { ui.status.progress = ev.data; } },
    "session.wrong_password": (ev) => {
      ui.wrong = true; ui.sending = false;
      if (ev.data.retries_left != null) { ui.retriesLeft = ev.data.retries_left; }
      sounds.attention();
    },
    "kiosk.service": (ev) => { ui.service = ev.data; if (ui.staff.token) { loadStaff(); } },
    "kiosk.wake": () => { ui.awakeUntil = Date.now() + 30000; sounds.tick(); },
    "emrtd.progress": (ev) => { ui.chip = ev.data; chipProgress(); },
    "camera.state": (ev) => { ui.components.camera = { state: ev.data.state }; refresh(); },
    "session.more_time": (ev) => { if (ui.status) { ui.status.more_time = ev.data; } },
    "session.time_extended": () => { if (ui.status) { ui.status.more_time = null; } },
    "session.more_time_withdrawn": () => { if (ui.status) { ui.status.more_time = null; } },
    "session.language": (ev) => { if (ev.data.lang !== ui.lang) { loadLang(ev.data.lang); } },
  };
  for (const s of ["idle", "insert_card", "enter_password", "reading_chip", "face_match", "smile", "authorizing", "result", "remove_card"]) {
    handlers["session." + s] = onSession;
  }

  function connect() {
    const es = new EventSource("/api/events");
    for (const [kind, f] of Object.entries(handlers)) {
      es.addEventListener(kind, (m) => {
        const ev = JSON.parse(m.data);
        f(ev);
        render();
        ui.handled++;
        measured(ev);
      });
    }
    // EventSource reconnects by itself; on reopen, resync the state.
    es.addEventListener("open", () => { refresh(); });
  }
  async function refresh() {
    try {
      const r = await fetch("/api/ui/state");
      if (!r.ok) { return; }
      const s = await r.json();
      // A snapshot older than the last event seen is stale: keep the event's.
      const cur = ui.status ? Date.parse(ui.status.since) : 0;
      if (s.session && Date.parse(s.session.since) >= cur) { onSession({ data: s.session }); }
      // Mid-session, the session's language and face-step start win over
      // this page's defaults: the page may just have been (re)loaded.
      const running = s.session && s.session.state !== "idle" && s.session.request;
      if (running && s.language && s.language !== ui.lang) { loadLang(s.language); }
      if (running && s.face_since) { ui.faceSince = Date.parse(s.face_since); }
      ui.service = s.service;
      ui.components = s.components || {};
      ui.notReady = s.not_ready || "";
      ui.faceTimeoutMs = s.face_timeout_ms || ui.faceTimeoutMs;
      ui.smileTimeoutMs = s.smile_timeout_ms || ui.smileTimeoutMs;
      ui.merchant = s.merchant || "";
      ui.speechKeys = s.speech_keys || {};
      if (s.languages && s.languages.length) { ui.defaultLang = s.languages[0]; }
      render();
    } catch (e) {
      // kioskd restarting: the event stream's reconnect will retry.
    }
  }
  // Component health changes slowly and has no single event: poll it.
  setInterval(refresh, 5000);
  addEventListener("resize", render);

  // A page loaded mid-session (the display restarted its browser) asks
  // the session's language first, so its first catalogue is the right one.
  (async () => {
    let first = ui.lang;
    try {
      const r = await fetch("/api/ui/state");
      const s = r.ok ? await r.json() : {};
      if (s.session && s.session.state !== "idle" && s.session.request && s.language) { first = s.language; }
    } catch (e) {
      // kioskd restarting: start in the default; the stream resyncs.
    }
    await loadLang(first);
    connect();
    refresh();
  })();
})();
