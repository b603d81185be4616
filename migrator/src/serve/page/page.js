// The page of `bbb-migrate serve`: reads /api/status every few seconds and draws it. Every text
// from the ledger (record ids, paths, error messages: they come from the old server) is set as
// textContent, never parsed as HTML.
"use strict";

const POLL_MS = 3000;
// Set from /api/serve, asked once: whether this server offers retry and cancel
// (`--allow-actions`).
let actions = null;
const STATES = ["pending", "running", "succeeded", "dead", "cancelled"];

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
  return tr;
}

// A row of one cell across the table, saying there is nothing.
function none(text, columns) {
  const td = el("td", text, "empty");
  td.colSpan = columns;
  return row([td]);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function duration(secs) {
  secs = Math.max(0, Math.round(secs));
  const h = Math.floor(secs / 3600), m = Math.floor(secs % 3600 / 60), s = secs % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

function ago(ms) {
  return ms ? duration((Date.now() - ms) / 1000) + " ago" : "?";
}

function bar(percent) {
  const outer = el("div", null, "bar");
  const inner = el("div");
  inner.style.width = Math.min(100, Math.max(0, percent || 0)) + "%";
  outer.append(inner);
  return outer;
}

function authHeaders() {
  const headers = {};
  const token = sessionStorage.getItem("bbb-migrate-token");
  if (token) headers.Authorization = "Bearer " + token;
  return headers;
}

// A button that asks the server to retry or cancel a recording's job, then shows the answer.
function action(name, recordId) {
  const b = el("button", name, "action");
  b.type = "button";
  b.dataset.action = name;
  b.addEventListener("click", async () => {
    b.disabled = true;
    const headers = Object.assign(authHeaders(), {
      "Content-Type": "application/json",
      "X-Bbb-Migrate": "1",
    });
    const notice = document.getElementById("notice");
    try {
      const r = await fetch("/api/" + name, {
        method: "POST", headers, body: JSON.stringify({ record_id: recordId }),
      });
      const answer = await r.json();
      notice.textContent = answer.message;
    } catch (e) {
      notice.textContent = name + " failed: " + e.message;
    }
    notice.hidden = false;
    await refresh();
  });
  return b;
}

function draw(s) {
  const counts = document.getElementById("counts");
  counts.replaceChildren();
  let total = 0;
  for (const state of STATES) {
    const n = s.counts[state] || 0;
    total += n;
    const box = el("div", null, "count" + (n ? " " + state : ""));
    box.dataset.state = state;
    box.append(el("b", n), el("span", state));
    counts.append(box);
  }
  const done = (s.counts.succeeded || 0);
  document.getElementById("done-bar").style.width = (total ? 100 * done / total : 0) + "%";
  const pace = s.last_hour.succeeded;
  const eta = s.last_hour.eta_secs;
  document.getElementById("totals").textContent =
    `${done} of ${total} placed (${duration(s.recorded_secs)}, ${bytes(s.bytes_placed)}) · machine time ${duration(s.machine_time_secs)}` +
    ` · ${pace} placed in the last hour` + (eta === null ? "" : ` · about ${duration(eta)} to go at that pace`);

  const running = document.getElementById("running");
  running.replaceChildren();
  for (const r of s.running) {
    const p = r.progress;
    const cell = el("td");
    cell.append(bar(p && p.percent), el("span", p ? `${p.done}${p.total ? " / " + p.total : ""} ${p.unit}` : "starting"));
    const beat = el("td", r.lease_expired ? "lease expired" : ago(r.heartbeat_ms));
    if (actions) beat.append(" ", action("cancel", r.record_id));
    running.append(row([r.host || "?", el("td", r.record_id, "id"), cell, ago(r.since_ms), beat]));
  }
  if (!s.running.length) running.append(none("nothing running", 5));

  const failures = document.getElementById("failures");
  failures.replaceChildren();
  const groups = new Map();
  for (const f of s.failures) {
    const key = (f.error_class || "unknown") + " · " + f.state;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(f);
  }
  for (const [key, list] of groups) {
    const g = el("div", null, "group");
    g.append(el("h3", `${key} (${list.length})`));
    for (const f of list) {
      const item = el("div", null, "failure");
      item.append(el("span", f.record_id, "id"), el("span", ` after ${f.attempts} attempt(s)`));
      if (actions) item.append(" ", action(f.state === "pending" ? "cancel" : "retry", f.record_id));
      item.append(el("span", f.last_error, "error"));
      g.append(item);
    }
    failures.append(g);
  }
  if (!s.failures.length) failures.append(el("p", "no failures", "empty"));

  const outputs = document.getElementById("outputs");
  outputs.replaceChildren();
  for (const o of s.outputs) {
    outputs.append(row([el("td", o.record_id, "id"), el("td", o.path, "path"),
      o.duration_secs === null ? "?" : duration(o.duration_secs), bytes(o.bytes || 0),
      (o.degraded || []).join("; ")]));
  }
  if (!s.outputs.length) outputs.append(none("nothing placed yet", 5));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// Reads /api/status once and draws it.
async function refresh() {
  const headers = authHeaders();
  const problem = document.getElementById("problem");
  try {
    if (actions === null) {
      const info = await fetch("/api/serve", { headers, cache: "no-store" });
      if (info.ok) actions = (await info.json()).actions === true;
    }
    const r = await fetch("/api/status", { headers, cache: "no-store" });
    if (r.status === 401) {
      document.getElementById("login").hidden = false;
      return;
    }
    if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
    draw(await r.json());
    problem.hidden = true;
  } catch (e) {
    problem.textContent = "the status could not be read: " + e.message;
    problem.hidden = false;
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

document.getElementById("use-token").addEventListener("click", () => {
  sessionStorage.setItem("bbb-migrate-token", document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  refresh();
});
poll();
