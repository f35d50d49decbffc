// The ops console: reads the JSON API with the token the operator typed, follows /events live, and sends
// the kill switch and the pause/exit controls with the operator token after a confirmation.
// Data is written with textContent only (never parsed as HTML). The token lives in sessionStorage (this tab).
"use strict";
const $ = (s) => document.querySelector(s);
const KEY = "bnml.console.token";
let token = sessionStorage.getItem(KEY) || "";
let lastEventId = null;
let streamAbort = null;
const filters = { symbol: "", side: "", status: "" };

class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; this.detail = detail; }
}

function explain(err) {
  if (!(err instanceof ApiError)) return `cannot reach ops_api (${err.message}); use the command line below`;
  if (err.status === 401) return "wrong or missing token: check the token you typed (" + err.detail + ")";
  if (err.status === 403) return "this token may only read: the operator token is needed (" + err.detail + ")";
  if (err.status === 429) return "too many failed attempts from here; wait a minute (" + err.detail + ")";
  return err.message;
}

async function api(path, { method = "GET", body, auth = token, headers = {} } = {}) {
  const opts = { method, headers: { ...headers, Authorization: "Bearer " + auth } };
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { data = { detail: r.statusText }; }
  if (!r.ok && r.status !== 202) throw new ApiError(r.status, (data && data.detail) || r.statusText);
  return data;
}

// -- rendering ------------------------------------------------------------------------------------
function num(v, digits = 2) {
  if (v === null || v === undefined || v === "") return "—";
  const n = Number(v);
  return Number.isFinite(n) ? n.toLocaleString(undefined, { maximumFractionDigits: digits }) : String(v);
}
function signed(td, v) { if (v !== null && v !== undefined) td.className = "num " + (Number(v) >= 0 ? "pos" : "neg"); }
function time(v) { return v ? String(v).replace("T", " ").slice(0, 19) : "—"; }

// cols: [header, (row) => value, kind] where kind is "num", "pnl" or text
function table(el, rows, cols, empty = "nothing yet") {
  el.replaceChildren();
  const head = el.createTHead().insertRow();
  for (const [h] of cols) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  const body = el.createTBody();
  if (!rows.length) { const td = body.insertRow().insertCell(); td.colSpan = cols.length; td.textContent = empty; }
  for (const row of rows) body.appendChild(tableRow(row, cols));
  return body;
}
function tableRow(row, cols) {
  const tr = document.createElement("tr");
  for (const [, get, kind] of cols) {
    const td = tr.insertCell(); const v = get(row);
    td.textContent = kind === "num" || kind === "pnl" ? num(v, kind === "num" ? 8 : 2) : (v ?? "—");
    if (kind === "num") td.className = "num";
    if (kind === "pnl") signed(td, v);
  }
  return tr;
}

function badge(el, text, cls) { el.textContent = text; el.className = "badge " + (cls || ""); }
function stateClass(s) { return s === "ACTIVE" ? "ok" : s === "HALTED" ? "bad" : "warn"; }

const FILL_COLS = [["time", (f) => time(f.ts)], ["symbol", (f) => f.symbol], ["side", (f) => f.side],
  ["qty", (f) => f.quantity, "num"], ["price", (f) => f.price, "num"], ["fee USDT", (f) => f.fee_usdt, "num"],
  ["P&L", (f) => f.realized_pnl_usdt, "pnl"], ["order", (f) => f.client_order_id]];
const ORDER_COLS = [["created", (o) => time(o.created_at)], ["symbol", (o) => o.symbol], ["side", (o) => o.side],
  ["status", (o) => o.status], ["qty", (o) => o.quantity, "num"], ["filled", (o) => o.filled_quantity, "num"],
  ["avg price", (o) => o.average_price, "num"], ["reason", (o) => o.reason], ["id", (o) => o.client_order_id]];

function renderStatus(s) {
  badge($("#mode"), s.mode);
  badge($("#trading-state"), s.trading_state, stateClass(s.trading_state));
  renderKillSwitch(s.kill_switch);
  table($("#services-table"), Object.entries(s.services),
    [["service", ([n]) => n], ["status", ([, v]) => v.status], ["heartbeat age (s)", ([, v]) => v.heartbeat_age_s, "num"]]);
  const m = s.model;
  $("#model").textContent = m ? `model ${m.version ?? "—"}, gate ${m.gate_passed ? "passed" : "not passed"}` :
    `orders ${s.counts.orders}, fills ${s.counts.fills}, open orders ${s.counts.open_orders}`;
}
function renderKillSwitch(ks) {
  const engaged = ks.engaged;
  badge($("#kill-switch"), engaged ? "KILL SWITCH ENGAGED" : "kill switch off", engaged ? "bad" : "ok");
  if (engaged) badge($("#trading-state"), "HALTED", "bad");
  $("#status-line").textContent = "kill switch: " + (engaged ? `engaged since ${time(ks.since)} (${ks.reason || ""})` : "released");
}

function renderProfit(p, bal) {
  const box = $("#profit"); box.replaceChildren();
  const items = [["equity USDT", bal.total_usdt + (bal.complete ? "" : " +?")], ["realized", p.realized_pnl_usdt],
    ["unrealized", p.unrealized_pnl_usdt], ["fees", p.fees_usdt], ["win rate", p.win_rate === null ? "—" :
      (Number(p.win_rate) * 100).toFixed(1) + " %"], ["trades closed", p.trades_closed],
    ["max drawdown", p.max_drawdown_usdt], ["best / worst", `${num(p.best_trade?.realized_pnl_usdt)} / ${num(p.worst_trade?.realized_pnl_usdt)}`]];
  for (const [label, value] of items) {
    const d = document.createElement("div"); const b = document.createElement("b");
    b.textContent = typeof value === "string" && /^-?[0-9.]+$/.test(value) ? num(value) : value;
    d.append(b, label); box.appendChild(d);
  }
}

function renderEquity(days, equityNow) {
  // equity at the end of each day = today's equity minus the realized P&L booked after that day
  const pnl = days.periods.map((p) => Number(p.realized_pnl_usdt));
  let after = 0; const pts = new Array(pnl.length);
  for (let i = pnl.length - 1; i >= 0; i--) { pts[i] = Number(equityNow) - after; after += pnl[i]; }
  const svg = $("#equity"); svg.replaceChildren();
  if (!pts.length) return;
  const lo = Math.min(...pts), hi = Math.max(...pts), span = hi - lo || 1;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts.map((v, i) => `${(i / Math.max(1, pts.length - 1)) * 600},${150 - ((v - lo) / span) * 140}`).join(" "));
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = `from ${num(pts[0])} to ${num(pts[pts.length - 1])} USDT`;
  svg.append(title, line);
}

async function loadJournal() {
  const q = new URLSearchParams(Object.entries(filters).filter(([k, v]) => v && k !== "status"));
  const oq = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  q.set("limit", "50"); oq.set("limit", "50");
  const [fills, orders, trades] = await Promise.all([api("/fills?" + q), api("/orders?" + oq),
    api("/trades?limit=30" + (filters.symbol ? "&symbol=" + encodeURIComponent(filters.symbol) : ""))]);
  table($("#fills"), fills.items, FILL_COLS);
  table($("#orders"), orders.items, ORDER_COLS);
  table($("#trades"), trades.items, [["opened", (t) => time(t.opened_at)], ["symbol", (t) => t.symbol],
    ["state", (t) => (t.is_open ? "open" : "closed")], ["entry", (t) => t.entry_price, "num"],
    ["exit", (t) => t.exit_price, "num"], ["qty", (t) => t.entry_quantity, "num"], ["P&L", (t) => t.realized_pnl_usdt, "pnl"],
    ["fees", (t) => t.fees_usdt, "num"]]);
}

async function loadAll() {
  const journal = loadJournal();  // in parallel with the rest: the slowest reads (round trips) start first
  const [status, profit, bal, positions, daily, breakers, refusals, dod, incidents] = await Promise.all([
    api("/status"), api("/profit"), api("/balance"), api("/positions"), api("/daily?count=30"), api("/breakers?limit=20"),
    api("/refusals?hours=24"), api("/dod/summary?days=7"), api("/incidents?limit=20")]);
  renderStatus(status);
  renderProfit(profit, bal);
  renderEquity(daily, bal.total_usdt);
  table($("#positions"), positions.positions, [["symbol", (p) => p.symbol], ["qty", (p) => p.quantity, "num"],
    ["avg cost", (p) => p.average_cost, "num"], ["last", (p) => p.last_price, "num"],
    ["unrealized", (p) => p.unrealized_pnl_usdt, "pnl"], ["exposure USDT", (p) => p.exposure_usdt, "pnl"]], "flat");
  table($("#daily"), daily.periods.slice(-14).reverse(), [["day", (d) => d.period_start],
    ["P&L", (d) => d.realized_pnl_usdt, "pnl"], ["fees", (d) => d.fees_usdt, "num"], ["fills", (d) => d.fills],
    ["trades", (d) => d.trades_closed]]);
  const active = Object.entries(breakers.active || {}).map(([b, reason]) => ({ breaker: b, kind: "ACTIVE", reason }));
  table($("#breakers"), active.concat(breakers.events), [["when", (b) => time(b.ts)], ["breaker", (b) => b.breaker],
    ["state", (b) => b.kind], ["symbol", (b) => b.symbol], ["reason", (b) => b.reason]], "no breaker");
  table($("#refusals"), refusals.refusals.map((r) => ({ what: "refused: " + r.reason, n: r.n })).concat(
    refusals.breaker_trips.map((b) => ({ what: "breaker tripped: " + b.breaker, n: b.trips }))),
  [["reason", (r) => r.what], ["count", (r) => r.n]], "no refusal, no trip");
  table($("#dod"), dod.reports, [["day", (r) => r.day], ["status", (r) => r.status],
    ["violations", (r) => (r.violations || []).join("; ")]]);
  table($("#incidents"), incidents.items, [["opened", (i) => time(i.opened_at)], ["sev", (i) => i.severity],
    ["title", (i) => i.title], ["resolved", (i) => time(i.resolved_at)]], "no incident");
  await journal;
}

// -- live updates (fetch stream: EventSource cannot send the Authorization header) ---------------------
function logEvent(text) {
  const li = document.createElement("li"); li.textContent = `${new Date().toISOString().slice(11, 19)} ${text}`;
  const list = $("#events"); list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
}
let refreshTimer = null;
function refreshSoon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => loadAll().catch(() => {}), 700); }

function onEvent(type, d) {
  if (type === "fill") {
    const body = $("#fills").tBodies[0];
    if (body && body.rows.length === 1 && body.rows[0].cells.length === 1) body.rows[0].remove();
    const tr = tableRow({ ...d, fee_usdt: d.fee_asset === "USDT" ? d.fee : null }, FILL_COLS);
    tr.classList.add("flash"); tr.dataset.trade = d.trade_id;
    if (body) body.prepend(tr);
    logEvent(`fill ${d.symbol} ${d.side} ${d.quantity} @ ${d.price}`);
    refreshSoon();
  } else if (type === "order") {
    logEvent(`order ${d.symbol} ${d.side} ${d.status} ${d.client_order_id}`);
  } else if (type === "trading_state") {
    badge($("#trading-state"), d.state, stateClass(d.state)); logEvent(`trading state ${d.previous} -> ${d.state}: ${d.reason}`);
  } else if (type === "kill_switch") {
    renderKillSwitch({ engaged: d.action === "engage", since: d.ts, reason: d.reason });
    logEvent(`kill switch ${d.action} by ${d.actor}: ${d.reason}`);
  } else if (type === "kill_switch_ack" || type === "kill_switch_latched") {
    const text = `${d.service} ${type === "kill_switch_ack" ? "acknowledged" : "latched"} ${d.engaged ? "engage" : "release"}`;
    addAck(text); logEvent(text);
  } else if (type.startsWith("breaker")) {
    logEvent(`${type.replace("_", " ")} ${d.breaker} ${d.symbol || ""}: ${d.reason}`); refreshSoon();
  } else if (type === "control_result") {
    logEvent(`${d.action} ${d.accepted ? "applied" : "refused"} by ${d.service}: ${d.detail} (now ${d.trading_state})`);
    badge($("#trading-state"), d.trading_state, stateClass(d.trading_state));
  } else if (type === "dropped") {
    logEvent("live stream dropped: " + d.reason);
  }
}

async function follow() {
  if (streamAbort) streamAbort.abort();
  const ctl = new AbortController(); streamAbort = ctl;
  while (!ctl.signal.aborted && token) {
    try {
      const headers = { Authorization: "Bearer " + token };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const r = await fetch("/events", { headers, signal: ctl.signal });
      if (!r.ok) { badge($("#live"), "live: refused " + r.status, "bad"); return; }
      badge($("#live"), "live", "ok");
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let type = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("id: ")) lastEventId = line.slice(4);
            else if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) { try { onEvent(type, JSON.parse(data)); } catch (e) { logEvent("unreadable event: " + e.message); } }
        }
      }
    } catch (e) { if (ctl.signal.aborted) return; }
    badge($("#live"), "live: reconnecting", "warn");
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

// -- controls ------------------------------------------------------------------------------------
let pending = null;  // {title, go, path, body()}
function confirmPanel(spec) {
  pending = spec;
  $("#ks-confirm").hidden = false;
  $("#ks-confirm-title").textContent = spec.title;
  $("#ks-confirm-go").textContent = spec.go;
  $("#ks-reason").value = spec.reason || "";
  $("#ks-flatten-label").hidden = !spec.flatten;
  if (!$("#op-token").value && token) $("#op-token").value = "";
  $("#op-token").focus();
}
function result(text, ok) { const el = $("#ks-result"); el.textContent = text; el.className = ok ? "ok" : "bad"; }

async function sendControl() {
  const spec = pending; if (!spec) return;
  const reason = $("#ks-reason").value.trim();
  const op = $("#op-token").value.trim();
  if (!reason) { result("a reason is required", false); return; }
  if (!op) { result("type the operator token to confirm", false); return; }
  $("#ks-confirm-go").disabled = true; $("#acks").replaceChildren();
  try {
    const ans = await api(spec.path, { method: "POST", body: spec.body(reason), auth: op,
      headers: { "Idempotency-Key": spec.key } });
    result(spec.done(ans), !ans.missing || !ans.missing.length);
    if (spec.path === "/kill-switch") {
      renderKillSwitch({ engaged: spec.body(reason).action === "engage", since: new Date().toISOString(), reason });
      const verb = spec.body(reason).action;
      for (const s of ans.acknowledged_by || []) addAck(`${s} acknowledged ${verb}`, ` (${num(ans.ack_ms[s], 1)} ms)`);
    }
    $("#ks-confirm").hidden = true; pending = null;
    refreshSoon();
  } catch (err) {
    result(explain(err), false);
  } finally { $("#ks-confirm-go").disabled = false; }
}

function addAck(text, extra = "") {
  const list = $("#acks");
  const seen = [...list.children].find((li) => li.dataset.key === text);
  if (seen) { if (extra) seen.textContent = text + extra; return; }
  const li = document.createElement("li"); li.dataset.key = text; li.textContent = text + extra; list.appendChild(li);
}
function newKey() { return (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)); }
function ksSpec(action) {
  return { title: action === "engage" ? "Halt all trading now: cancels open orders; only an operator can release."
    : "Release the kill switch: trading may resume.", go: action === "engage" ? "Confirm: halt trading" : "Confirm: release",
    reason: action === "engage" ? "engaged from the console" : "", flatten: action === "engage", key: newKey(),
    path: "/kill-switch", body: (reason) => ({ action, reason, actor: "console", flatten: action === "engage" && $("#ks-flatten").checked }),
    done: (a) => (a.missing.length ? `${action}: no acknowledgement from ${a.missing.join(", ")} yet (${a.detail})`
      : `${action === "engage" ? "HALTED" : "released"}: acknowledged by ${a.acknowledged_by.join(", ")} in ${num(a.elapsed_ms, 0)} ms`) };
}
function controlSpec(action, symbol) {
  const words = { pause: ["Pause new entries (risk goes REDUCING; exits still allowed).", "Confirm: pause"],
    resume: ["Resume entries (back to ACTIVE unless a breaker holds it).", "Confirm: resume"],
    exit: [`Exit the whole ${symbol} position through risk.`, `Confirm: exit ${symbol}`] }[action];
  return { title: words[0], go: words[1], reason: `${action} from the console`, key: newKey(), path: "/control",
    body: (reason) => ({ action, reason, actor: "console", ...(symbol ? { symbol } : {}) }),
    done: (a) => `${action}: ${a.accepted ? "applied" : "refused"} by ${a.service || "risk"} ${a.detail ? "(" + a.detail + ")" : ""}` };
}

// -- wiring ------------------------------------------------------------------------------------
async function start() {
  if (!token) { $("#auth-message").textContent = "type a token to see the figures"; return; }
  try {
    await loadAll();
    $("#auth-message").textContent = ""; $("#auth-message").className = "";
    follow();
  } catch (err) {
    $("#auth-message").textContent = explain(err); $("#auth-message").className = "bad";
  }
}

document.documentElement.classList.add("has-js");
$("#token").value = token;
$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault(); token = $("#token").value.trim(); sessionStorage.setItem(KEY, token); lastEventId = null; start();
});
$("#forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); token = ""; $("#token").value = ""; if (streamAbort) streamAbort.abort(); });
$("#filters").addEventListener("submit", (e) => {
  e.preventDefault(); const f = new FormData(e.target);
  for (const k of Object.keys(filters)) filters[k] = (f.get(k) || "").trim();
  loadJournal().catch((err) => { $("#auth-message").textContent = explain(err); $("#auth-message").className = "bad"; });
});
$("#ks-engage").addEventListener("click", () => confirmPanel(ksSpec("engage")));
$("#ks-release").addEventListener("click", () => confirmPanel(ksSpec("release")));
$("#pause-entries").addEventListener("click", () => confirmPanel(controlSpec("pause")));
$("#resume-entries").addEventListener("click", () => confirmPanel(controlSpec("resume")));
$("#exit-go").addEventListener("click", () => {
  const s = $("#exit-symbol").value.trim().toUpperCase(); if (s) confirmPanel(controlSpec("exit", s));
});
$("#ks-confirm-go").addEventListener("click", sendControl);
$("#ks-cancel").addEventListener("click", () => { $("#ks-confirm").hidden = true; pending = null; });
setInterval(() => { if (token && document.visibilityState === "visible") api("/status").then(renderStatus).catch(() => {}); }, 10000);
start();
