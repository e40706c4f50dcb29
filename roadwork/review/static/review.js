// The review page: every value from the server goes into the page through textContent or an
// attribute set in code (never parsed as HTML), and image URLs are built from encodeURIComponent(id).
"use strict";

const state = { items: [], idx: 0, undo: [], info: null, overlayOn: true };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (!r.ok) {
    let detail = r.status + " " + r.statusText;
    try { const b = await r.json(); if (b.detail) detail = typeof b.detail === "string" ? b.detail : JSON.stringify(b.detail); } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r.json();
}

function say(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function fillSelect(select, values) {
  const keep = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = v;
    select.appendChild(o);
  }
  select.value = values.includes(keep) ? keep : "";
}

function query() {
  const q = new URLSearchParams();
  if ($("f-day").value) q.set("day", $("f-day").value);
  if ($("f-tier").value) q.set("tier", $("f-tier").value);
  q.set("pmin", $("f-pmin").value || "0");
  q.set("pmax", $("f-pmax").value || "1");
  q.set("status", $("f-status").value);
  return q.toString();
}

async function load(keepId) {
  try {
    state.info = await api("api/info");
    fillSelect($("f-day"), state.info.days);
    fillSelect($("f-tier"), state.info.tiers);
    const page = await api("api/items?" + query());
    state.items = page.items;
    let idx = keepId ? state.items.findIndex((i) => i.id === keepId) : -1;
    if (idx < 0) idx = state.items.findIndex((i) => i.label === null);
    state.idx = Math.max(0, idx);
    render();
  } catch (e) {
    say("could not load: " + e.message, true);
  }
}

function render() {
  const info = state.info;
  const labelled = state.items.filter((i) => i.label !== null).length;
  $("progress").textContent = info ? `${info.labelled} of ${info.total} labelled · ${state.items.length} shown (${labelled} labelled)` : "";
  const item = state.items[state.idx];
  $("empty").hidden = !!item;
  $("photo").hidden = !item;
  const ov = $("overlay");
  ov.hidden = true;
  if (item) {
    $("photo").src = "api/images/" + encodeURIComponent(item.id);
    if (info && info.overlay && state.overlayOn) {
      ov.onload = () => { ov.hidden = false; };
      ov.onerror = () => { ov.hidden = true; };
      ov.src = "api/images/" + encodeURIComponent(item.id) + "/overlay";
    }
  }
  $("d-prob").textContent = item ? item.prob.toFixed(4) : "";
  $("d-unc").textContent = item ? item.uncertainty.toFixed(3) + " bits" : "";
  $("d-tier").textContent = item ? item.tier : "";
  $("d-time").textContent = item ? item.time : "";
  $("d-source").textContent = item ? item.source : "";
  const dl = $("d-label");
  dl.textContent = item ? (item.label === null ? "—" : item.label + (item.reviewer ? " (" + item.reviewer + ")" : "")) : "";
  dl.className = item && item.label ? "l-" + item.label : "";
  renderList();
}

function renderList() {
  const rows = state.items.map((item, i) => {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    if (i === state.idx) tr.className = "current";
    const cells = [String(i + 1), item.prob.toFixed(3), item.tier, item.time.replace("T", " ").replace("+00:00", ""),
                   item.source, item.label === null ? "" : item.label];
    cells.forEach((text, c) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (c === 5 && item.label) td.className = "l-" + item.label;
      tr.appendChild(td);
    });
    tr.addEventListener("click", () => { state.idx = i; render(); });
    return tr;
  });
  $("list").tBodies[0].replaceChildren(...rows);
  const cur = $("list").tBodies[0].children[state.idx];
  if (cur) cur.scrollIntoView({ block: "nearest" });
}

function nextUnlabelled(from) {
  for (let i = from + 1; i < state.items.length; i++) if (state.items[i].label === null) return i;
  return Math.min(from + 1, Math.max(state.items.length - 1, 0));
}

async function give(label) {
  const item = state.items[state.idx];
  if (!item) return;
  try {
    await api("api/labels/" + encodeURIComponent(item.id), {
      method: "PUT", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: label, reviewer: $("f-reviewer").value }),
    });
  } catch (e) {
    say("not saved: " + e.message, true);
    return;
  }
  state.undo.push({ kind: "label", id: item.id, idx: state.idx, prev: item.label });
  if (item.label === null && state.info) state.info.labelled += 1;
  item.label = label;
  item.reviewer = $("f-reviewer").value;
  say("saved: " + label);
  state.idx = nextUnlabelled(state.idx);
  render();
}

function skip() {
  if (!state.items.length) return;
  state.undo.push({ kind: "skip", idx: state.idx });
  say("skipped");
  state.idx = nextUnlabelled(state.idx);
  render();
}

async function undo() {
  const last = state.undo.pop();
  if (!last) { say("nothing to undo"); return; }
  if (last.kind === "label") {
    const item = state.items.find((i) => i.id === last.id);
    try {
      if (last.prev === null) {
        await api("api/labels/" + encodeURIComponent(last.id), { method: "DELETE" });
      } else {
        await api("api/labels/" + encodeURIComponent(last.id), {
          method: "PUT", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ label: last.prev, reviewer: $("f-reviewer").value }),
        });
      }
    } catch (e) {
      state.undo.push(last);
      say("undo failed: " + e.message, true);
      return;
    }
    if (item) {
      if (last.prev === null && item.label !== null && state.info) state.info.labelled -= 1;
      item.label = last.prev;
    }
    say("undone: label of #" + (last.idx + 1));
  } else {
    say("undone: skip");
  }
  state.idx = Math.min(last.idx, Math.max(state.items.length - 1, 0));
  render();
}

function move(delta) {
  if (!state.items.length) return;
  state.idx = Math.min(Math.max(state.idx + delta, 0), state.items.length - 1);
  render();
}

document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
  if (ev.altKey || ev.metaKey) return;
  if (ev.ctrlKey && ev.key.toLowerCase() !== "z") return;
  const k = ev.key.toLowerCase();
  const act = { r: () => give("roadwork"), n: () => give("none"), s: skip, u: undo, z: undo, backspace: undo,
                arrowdown: () => move(1), j: () => move(1), arrowup: () => move(-1), k: () => move(-1),
                o: () => { state.overlayOn = !state.overlayOn; render(); } }[k];
  if (act) { ev.preventDefault(); act(); }
});

window.addEventListener("DOMContentLoaded", () => {
  $("f-reviewer").value = localStorage.getItem("roadwork.reviewer") || "";
  $("f-reviewer").addEventListener("change", () => localStorage.setItem("roadwork.reviewer", $("f-reviewer").value));
  for (const id of ["f-day", "f-tier", "f-pmin", "f-pmax", "f-status"]) {
    $(id).addEventListener("change", () => {
      $(id).blur();  // give the keys back to the shortcuts
      load(state.items[state.idx] && state.items[state.idx].id);
    });
  }
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  load();
});
