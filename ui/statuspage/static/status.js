"use strict";
// Status page logic: polls /api/status, follows /api/events, and drives
// simulated devices through /api/sim/*. No external resources.
const $ = (id) => document.getElementById(id);
let simulation = false;

function badge(el, state) {
  el.textContent = state || "unknown";
  el.className = "badge " + (state || "");
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ error: r.statusText }));
    alert(e.error || r.statusText);
  }
  refresh();
}

function renderPins(gpio) {
  const tbody = $("pins");
  tbody.textContent = "";
  const pins = (gpio.info && gpio.info.pins) || [];
  for (const p of pins) {
    const tr = document.createElement("tr");
    tr.dataset.role = p.role;
    for (const v of [p.role, p.line, p.output ? "out" : "in", p.active ? "active" : "inactive"]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    if (!p.output && simulation) {
      const b = document.createElement("button");
      b.textContent = p.active ? "release" : "activate";
      b.className = "gpio-toggle";
      b.onclick = () => post("/api/sim/gpio", { role: p.role, active: !p.active });
      td.appendChild(b);
    }
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

async function refresh() {
  let h;
  try {
    h = await (await fetch("/api/status")).json();
  } catch (e) {
    badge($("overall"), "down");
    return;
  }
  simulation = h.mode === "simulation";
  $("device").textContent = h.device;
  $("mode").textContent = h.mode;
  $("version").textContent = h.version;
  $("uptime").textContent = Math.round(h.uptime_s);
  badge($("overall"), h.status);
  for (const name of ["camera", "cardreader", "gpio", "hub"]) {
    const c = h.components[name] || {};
    badge($(name + "-state"), c.state);
    $(name + "-detail").textContent = c.detail || "";
  }
  const cam = (h.components.camera || {}).info;
  if (cam) {
    $("fps").textContent = cam.fps.toFixed(1);
    $("frames").textContent = `${cam.frames} / ${cam.drops} / ${cam.reopens}`;
    $("size").textContent = `${cam.width}×${cam.height}`;
    $("source").textContent = cam.source;
  }
  const cr = (h.components.cardreader || {}).info;
  const ul = $("readers");
  ul.textContent = "";
  for (const r of (cr && cr.readers) || []) {
    const li = document.createElement("li");
    li.textContent = `${r.name}: ${r.card_present ? "card present" : "no card"}`;
    li.className = r.card_present ? "card-present" : "card-absent";
    ul.appendChild(li);
  }
  document.querySelectorAll(".sim-only").forEach((e) => (e.hidden = !simulation));
  renderPins(h.components.gpio || {});
}

async function refreshSession() {
  const r = await fetch("/api/session");
  if (!r.ok) return;
  const st = await r.json();
  badge($("session-state"), st.state);
  const q = st.request;
  $("session-request").textContent = q ? `${q.kind} ${(q.amount_minor / 100).toFixed(2)} ${q.currency} (${q.id.substring(0, 8)})` : "";
  const o = st.outcome;
  $("session-outcome").textContent = o ? (o.approved ? "APPROVED" : "DECLINED: " + (o.reasons || []).map((x) => x.code).join(", ")) : "";
  $("session-outcome").className = o ? (o.approved ? "approved" : "declined") : "";
}

function refreshThumb() {
  if (!simulation) return;
  $("thumb").src = "/api/camera/frame.jpg?t=" + Date.now();
}

function follow() {
  const es = new EventSource("/api/events");
  es.onmessage = null;
  const add = (ev) => {
    const li = document.createElement("li");
    const e = JSON.parse(ev.data);
    li.textContent = `${e.time.substring(11, 23)} ${e.source} ${e.kind} ${e.data ? JSON.stringify(e.data) : ""}`;
    const list = $("events");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
    refresh();
    refreshSession();
  };
  for (const k of ["card.inserted", "card.removed", "reader.added", "reader.removed", "service.down", "service.up",
    "gpio.input", "camera.state", "hub.state", "kioskd.started", "tx.delivered", "outbox.alarm",
    "session.idle", "session.insert_card", "session.enter_password", "session.reading_chip", "session.face_match",
    "session.smile", "session.authorizing", "session.result", "session.remove_card", "session.wrong_password"]) {
    es.addEventListener(k, add);
  }
}

$("demo-pay").onclick = () => post("/api/sim/pay", { amount_minor: 2350, currency: "CNY" });
$("pw-send").onclick = () => {
  const digits = $("pw-digits").value;
  $("pw-digits").value = "";
  post("/api/session/password", { kind: $("pw-kind").value, digits });
};
$("session-cancel").onclick = () => post("/api/session/cancel", {});
setInterval(refreshSession, 1000);
refreshSession();
$("card-insert").onclick = () => post("/api/sim/card", { action: "insert" });
$("card-remove").onclick = () => post("/api/sim/card", { action: "remove" });
refresh().then(refreshThumb);
setInterval(refresh, 1000);
setInterval(refreshThumb, 500);
follow();
