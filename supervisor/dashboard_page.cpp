#include "supervisor/dashboard_page.h"

namespace wslb::supervisor {

namespace {

// The script keeps five minutes of one-second samples for the traces; a token given as
// `?token=` on the page's address is sent on as a bearer token with every poll.
constexpr std::string_view page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wslb</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
  header { background: #1d232b; color: #fff; padding: 10px 18px; display: flex; gap: 24px;
           align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 14px;
         padding: 14px; }
  section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; }
  h2 { font-size: 14px; margin: 0 0 8px; color: #4a5563; text-transform: uppercase; }
  table { width: 100%; border-collapse: collapse; }
  td, th { padding: 3px 6px; text-align: left; white-space: nowrap; }
  th { color: #6b7684; font-weight: normal; font-size: 12px; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .bar { height: 12px; background: #3b82f6; border-radius: 2px; min-width: 1px; }
  .barcell { width: 45%; }
  .badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; }
  .up { background: #d1fae5; color: #065f46; } .down { background: #fee2e2; color: #991b1b; }
  .ready { background: #e0e7ff; color: #3730a3; } .drain { background: #fef3c7; color: #92400e; }
  .maint { background: #e5e7eb; color: #374151; }
  canvas { width: 100%; height: 120px; display: block; }
  #events { max-height: 260px; overflow-y: auto; font-family: ui-monospace, monospace; font-size: 12px; }
  #error { color: #b91c1c; }
</style>
</head>
<body>
<header>
  <h1>wslb <span id="name"></span></h1>
  <span>listen <b id="listen"></b></span>
  <span>generation <b id="generation"></b></span>
  <span>uptime <b id="uptime"></b></span>
  <span>connections <b id="total-connections">0</b></span>
  <span id="error"></span>
  <span style="margin-left:auto">updated <b id="updated" data-polls="0">never</b></span>
</header>
<main>
  <section><h2>Backends</h2>
    <table><thead><tr><th>backend</th><th>health</th><th>admin</th><th>weight</th>
      <th class="num">live</th><th class="barcell"></th><th class="num">total</th></tr></thead>
      <tbody id="backends"></tbody></table></section>
  <section><h2>Workers</h2>
    <table><thead><tr><th>slot</th><th>pid</th><th>state</th><th>gen</th>
      <th class="num">live</th><th class="barcell"></th><th class="num">accepted</th></tr></thead>
      <tbody id="workers"></tbody></table></section>
  <section><h2>New connections per second</h2><canvas id="rate" width="800" height="120"></canvas>
    <div>now <b id="rate-now">0</b>/s</div></section>
  <section><h2>Handshake latency (accept to 101), median and 99th percentile</h2>
    <canvas id="latency" width="800" height="120"></canvas>
    <div>p50 <b id="latency-p50">-</b> p99 <b id="latency-p99">-</b></div></section>
  <section style="grid-column: 1 / -1"><h2>Recent events</h2><div id="events"></div></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const keep = 300;
const rate = [], p50 = [], p99 = [];
let lastAccepted = null, lastBuckets = null, lastEvent = 0, polls = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function push(series, v) { series.push(v); if (series.length > keep) series.shift(); }
function adminState(b) { return b.admin_state || (b.state === "removed" ? "drain" : "ready"); }
function bar(value, max) {
  const td = el("td", { class: "barcell" });
  const d = el("div", { class: "bar" });
  d.style.width = (max > 0 ? 100 * value / max : 0) + "%";
  td.appendChild(d);
  return td;
}

function drawTrace(canvas, seriesList, colors, unit) {
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  let max = 0;
  for (const s of seriesList) for (const v of s) if (v !== null && v > max) max = v;
  if (max === 0) max = 1;
  g.fillStyle = "#6b7684"; g.font = "11px sans-serif";
  g.fillText(max.toPrecision(3) + unit, 4, 12);
  seriesList.forEach((s, i) => {
    g.strokeStyle = colors[i]; g.lineWidth = 1.5; g.beginPath();
    let started = false;
    s.forEach((v, x) => {
      if (v === null) { started = false; return; }
      const px = w - (s.length - 1 - x) * (w / keep), py = h - 2 - (h - 16) * v / max;
      if (started) g.lineTo(px, py); else { g.moveTo(px, py); started = true; }
    });
    g.stroke();
  });
}

function renderStatus(s) {
  document.getElementById("name").textContent = s.name;
  document.getElementById("listen").textContent = s.listen + (s.listening ? "" : " (closed)");
  document.getElementById("generation").textContent = s.generation;
  const up = s.uptime_s;
  document.getElementById("uptime").textContent =
      Math.floor(up / 3600) + "h" + String(Math.floor(up / 60) % 60).padStart(2, "0") + "m" +
      String(up % 60).padStart(2, "0") + "s";
  const tbody = document.getElementById("backends");
  tbody.replaceChildren();
  const maxB = Math.max(0, ...s.backends.map(b => b.active));
  let live = 0;
  for (const b of s.backends) {
    const tr = el("tr", { "data-backend": b.address, "data-active": b.active,
                          "data-health": b.healthy ? "up" : "down", "data-admin": adminState(b) });
    tr.appendChild(el("td", {}, b.address));
    const h = el("td"); h.appendChild(el("span", { class: "badge " + (b.healthy ? "up" : "down") },
                                          b.healthy ? "up" : "down")); tr.appendChild(h);
    const a = el("td"); a.appendChild(el("span", { class: "badge " + adminState(b) }, adminState(b)));
    tr.appendChild(a);
    tr.appendChild(el("td", { class: "num" }, b.weight));
    tr.appendChild(el("td", { class: "num active" }, b.active));
    tr.appendChild(bar(b.active, maxB));
    tr.appendChild(el("td", { class: "num" }, b.total));
    tbody.appendChild(tr);
  }
  const wbody = document.getElementById("workers");
  wbody.replaceChildren();
  const maxW = Math.max(0, ...s.workers.map(w => w.connections));
  let accepted = 0;
  for (const w of s.workers) {
    live += w.connections;
    accepted += w.accepted;
    const tr = el("tr", { "data-slot": w.slot, "data-connections": w.connections, "data-state": w.state });
    tr.appendChild(el("td", {}, w.slot));
    tr.appendChild(el("td", {}, w.pid));
    tr.appendChild(el("td", {}, w.state));
    tr.appendChild(el("td", {}, w.generation));
    tr.appendChild(el("td", { class: "num" }, w.connections));
    tr.appendChild(bar(w.connections, maxW));
    tr.appendChild(el("td", { class: "num" }, w.accepted));
    wbody.appendChild(tr);
  }
  document.getElementById("total-connections").textContent = live;
  // A worker that exits takes its accepted count with it: never show a negative rate.
  const r = lastAccepted === null ? 0 : Math.max(0, accepted - lastAccepted);
  lastAccepted = accepted;
  push(rate, r);
  document.getElementById("rate-now").textContent = r;
  drawTrace(document.getElementById("rate"), [rate], ["#3b82f6"], "/s");
}

// Cumulative buckets of wslb_handshake_duration_seconds summed over its series, by bound.
function handshakeBuckets(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    const m = line.match(/^wslb_handshake_duration_seconds_bucket\{.*le="([^"]+)".*\} (\S+)/);
    if (m) out.set(m[1], (out.get(m[1]) || 0) + Number(m[2]));
  }
  return out;
}
function quantile(deltas, q) {
  const total = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [le, n] of deltas) if (n >= q * total) return le === "+Inf" ? null : Number(le);
  return null;
}
function renderLatency(text) {
  const buckets = handshakeBuckets(text);
  let a = null, b = null;
  if (lastBuckets && buckets.size) {
    const deltas = [...buckets.entries()]
        .map(([le, n]) => [le, n - (lastBuckets.get(le) || 0)])
        .sort((x, y) => (x[0] === "+Inf" ? Infinity : Number(x[0])) - (y[0] === "+Inf" ? Infinity : Number(y[0])));
    a = quantile(deltas, 0.5); b = quantile(deltas, 0.99);
  }
  lastBuckets = buckets;
  push(p50, a === null ? null : a * 1000);
  push(p99, b === null ? null : b * 1000);
  document.getElementById("latency-p50").textContent = a === null ? "-" : (a * 1000).toPrecision(3) + " ms";
  document.getElementById("latency-p99").textContent = b === null ? "-" : (b * 1000).toPrecision(3) + " ms";
  drawTrace(document.getElementById("latency"), [p50, p99], ["#10b981", "#f59e0b"], " ms");
}

function renderEvents(events) {
  const box = document.getElementById("events");
  for (const e of events) {
    lastEvent = Math.max(lastEvent, e.seq);
    const line = el("div", { "data-kind": e.kind },
                    new Date(e.unix_ms).toISOString().substring(11, 19) + "  " + e.text);
    box.prepend(line);
  }
  while (box.childElementCount > 200) box.lastElementChild.remove();
}

async function poll() {
  try {
    const [status, events, metrics] = await Promise.all([
      fetch("status", { headers, cache: "no-store" }),
      fetch("events?after=" + lastEvent, { headers, cache: "no-store" }),
      fetch("metrics", { headers, cache: "no-store" })]);
    if (!status.ok) throw new Error("status: HTTP " + status.status);
    renderStatus(await status.json());
    if (events.ok) renderEvents(await events.json());
    if (metrics.ok) renderLatency(await metrics.text());
    document.getElementById("error").textContent = "";
    const u = document.getElementById("updated");
    u.textContent = new Date().toISOString().substring(11, 19);
    u.dataset.polls = ++polls;
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach wslb: " + e.message;
  }
}
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
)html";

}  // namespace

std::string_view dashboard_page() { return page; }

}  // namespace wslb::supervisor
