// The page of `bbb-migrate serve`: reads /api/status every few seconds and draws it, and the
// gallery (/api/gallery, with each contact sheet from /sheet/<job id>) whenever the placed
// outputs change. Every text from the ledger (record ids, names, paths, error messages: they come
// from the old server) is set as textContent, never parsed as HTML.
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

// A media time as a clock: tenths under a minute (short recordings), else m:ss or h:mm:ss.
function clock(secs) {
  if (secs < 60) return secs.toFixed(1) + " s";
  const t = Math.floor(secs), h = Math.floor(t / 3600), m = Math.floor(t % 3600 / 60), s = t % 60;
  const two = n => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
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

// A button that asks the server to retry, cancel or flag a recording's job, then shows the
// answer. `extra` gives more of the request's body (a flag's note), or null to send nothing.
function action(name, recordId, label, extra) {
  const b = el("button", label || name, "action");
  b.type = "button";
  b.dataset.action = name;
  b.addEventListener("click", async () => {
    const more = extra ? extra() : {};
    if (more === null) return;
    b.disabled = true;
    const headers = Object.assign(authHeaders(), {
      "Content-Type": "application/json",
      "X-Bbb-Migrate": "1",
    });
    const notice = document.getElementById("notice");
    try {
      const r = await fetch("/api/" + name, {
        method: "POST", headers, body: JSON.stringify(Object.assign({ record_id: recordId }, more)),
      });
      const answer = await r.json();
      notice.textContent = answer.message;
    } catch (e) {
      notice.textContent = name + " failed: " + e.message;
    }
    notice.hidden = false;
    galleryKey = null;
    await refresh();
  });
  return b;
}

// A recording's attempts, asked when its failure is opened.
function history(recordId) {
  const d = el("details", null, "attempts");
  d.append(el("summary", "attempts"));
  d.addEventListener("toggle", async () => {
    if (!d.open || d.dataset.loaded) return;
    d.dataset.loaded = "1";
    const r = await fetch("/api/attempts/" + encodeURIComponent(recordId), { headers: authHeaders() });
    if (!r.ok) { d.append(el("p", `${r.status}`)); return; }
    const list = el("ol");
    for (const { target, attempt: a } of (await r.json()).attempts) {
      const when = new Date(a.started_ms).toLocaleString();
      const took = a.ended_ms ? duration((a.ended_ms - a.started_ms) / 1000) : "no end";
      const li = el("li", `${when} · ${a.worker} · ${target} · ${a.outcome || "unfinished"} · ${took}`);
      if (a.error) li.append(el("span", a.error, "error"));
      list.append(li);
    }
    d.append(list);
  });
  return d;
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
    const key = (f.phase || "?") + " · " + (f.error_class || "unknown") + " · " + f.state;
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
      item.append(el("span", f.last_error, "error"), history(f.record_id));
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
  // The gallery is read again only when the placed outputs changed (or an action was taken).
  const key = s.outputs.map(o => o.record_id + (o.flagged ? "!" : "")).join(",");
  if (key !== galleryKey) {
    galleryKey = key;
    loadGallery();
  }
}

let galleryKey = null;
let placed = [];
// Object URLs of the sheets fetched, by job id: fetched with the token, kept while shown.
const sheetUrls = new Map();

async function loadGallery() {
  const r = await fetch("/api/gallery", { headers: authHeaders(), cache: "no-store" });
  if (!r.ok) return;
  placed = (await r.json()).placed;
  const origins = document.getElementById("f-origin");
  const chosen = origins.value;
  const names = [...new Set(placed.map(p => p.origin).filter(o => o))].sort();
  origins.replaceChildren(el("option", "any"));
  origins.firstChild.value = "";
  for (const o of names) { const opt = el("option", o); opt.value = o; origins.append(opt); }
  origins.value = names.includes(chosen) ? chosen : "";
  drawGallery();
}

function matches(p) {
  const show = document.getElementById("f-show").value;
  if (show === "flagged" && !p.flagged) return false;
  if (show === "concerns" && !p.flagged && !p.concerns.length) return false;
  if (show === "fine" && (p.flagged || p.concerns.length)) return false;
  const origin = document.getElementById("f-origin").value;
  if (origin && p.origin !== origin) return false;
  const from = document.getElementById("f-from").valueAsNumber;
  const to = document.getElementById("f-to").valueAsNumber;
  if (!isNaN(from) && !(p.start_time_ms >= from)) return false;
  if (!isNaN(to) && !(p.start_time_ms < to + 86400000)) return false;
  const text = document.getElementById("f-text").value.trim().toLowerCase();
  if (text && !((p.name || "").toLowerCase().includes(text) || p.record_id.toLowerCase().includes(text))) return false;
  return true;
}

// The sheet as one picture, with each tile's time over it (cut out by the sheet's layout).
function sheetView(p) {
  const box = el("div", null, "sheet");
  const img = document.createElement("img");
  img.alt = "contact sheet of " + p.record_id;
  img.decoding = "async";
  box.append(img);
  const s = p.sheet;
  const grid = el("div", null, "tiles");
  grid.style.gridTemplateColumns = `repeat(${s.columns}, 1fr)`;
  grid.style.gridTemplateRows = `repeat(${Math.ceil(s.tiles.length / s.columns)}, 1fr)`;
  // The picture's last row may hold fewer tiles; the grid keeps the picture's proportions.
  box.style.aspectRatio = `${s.columns * s.tile_width} / ${Math.ceil(s.tiles.length / s.columns) * s.tile_height}`;
  for (const t of s.tiles) {
    const cell = el("div", null, "tile " + t.kind + (t.flat ? " flat" : ""));
    cell.title = (t.kind === "change" ? "after a change, " : "") + clock(t.at) + (t.flat ? " · one flat colour" : "");
    cell.append(el("span", clock(t.at)));
    grid.append(cell);
  }
  box.append(grid);
  const url = sheetUrls.get(p.job_id);
  if (url) img.src = url;
  else fetch("/sheet/" + p.job_id, { headers: authHeaders() }).then(async r => {
    if (!r.ok) return;
    const u = URL.createObjectURL(await r.blob());
    sheetUrls.set(p.job_id, u);
    img.src = u;
  });
  return box;
}

// Cards drawn at once, and added by "show more": a migration has thousands of outputs, and each
// card fetches its sheet.
const PAGE_CARDS = 48;
let cardsShown = PAGE_CARDS;

function drawGallery() {
  const gallery = document.getElementById("gallery");
  gallery.replaceChildren();
  const matching = placed.filter(matches);
  const shown = matching.slice(0, cardsShown);
  document.getElementById("gallery-count").textContent =
    `${matching.length} of ${placed.length} placed recordings` +
    (shown.length < matching.length ? ` (the first ${shown.length} shown)` : "");
  for (const p of shown) {
    const card = el("div", null, "card" + (p.flagged ? " flagged" : ""));
    card.dataset.recordId = p.record_id;
    card.append(el("h3", p.name || p.record_id));
    const date = p.start_time_ms ? new Date(p.start_time_ms).toLocaleString() : "?";
    card.append(el("div", `${p.record_id} · ${date} · ${p.origin || "origin unknown"}`, "meta"));
    card.append(el("div", `${p.duration_secs === null ? "?" : duration(p.duration_secs)} · ${bytes(p.bytes || 0)} · ${p.kind || "?"}${p.mode ? ` (${p.mode})` : ""} → ${p.target} · ${p.path || ""}`, "meta"));
    if (p.sheet) card.append(sheetView(p));
    for (const c of p.concerns) card.append(el("div", c, "concern"));
    if (p.flagged) card.append(el("div", "flagged: " + (p.flag_note || ""), "note"));
    if (actions) {
      if (p.flagged) {
        card.append(action("flag", p.record_id, "unflag", () => ({ note: null })));
      } else {
        const why = el("input", null, "flag-note");
        why.placeholder = "what is wrong";
        why.setAttribute("aria-label", "what is wrong with " + p.record_id);
        const row = el("div", null, "flag");
        row.append(why, " ", action("flag", p.record_id, "flag as wrong", () => {
          if (why.value.trim()) return { note: why.value };
          why.focus();
          return null;
        }));
        card.append(row);
      }
    }
    gallery.append(card);
  }
  if (!placed.length) gallery.append(el("p", "nothing placed yet", "empty"));
  if (shown.length < matching.length) {
    const more = el("button", `show ${Math.min(PAGE_CARDS, matching.length - shown.length)} more`, "more");
    more.type = "button";
    more.addEventListener("click", () => { cardsShown += PAGE_CARDS; drawGallery(); });
    gallery.append(more);
  }
}

document.getElementById("filters").addEventListener("input", () => {
  cardsShown = PAGE_CARDS;
  drawGallery();
});
document.getElementById("filters").addEventListener("submit", e => e.preventDefault());

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
