// The annotator's grid: one reference, n candidates; mark the ones that are NOT the same kind.
//
// Speed: the next task is claimed and its images fetched and decoded while the current grid is
// shown, so submitting swaps in an already-decoded grid. Answers go through the outbox
// (localStorage + idempotency key + retries), so the page never waits for the server and never
// loses an answer. Leases held by this annotator are resumed on load and renewed while the page
// is visible.
//
// ?prefetch=0 turns prefetching off (the benchmark's baseline).
import { ApiError, api, clockSkew, el, imageUrl, toast, wireSignOut } from "./api.js";
import { Outbox, backoff } from "./outbox.js";

const root = document.getElementById("annotate");
const userId = document.body.dataset.userId;
const PREFETCH = new URLSearchParams(location.search).get("prefetch") !== "0";
const IMAGE_SIZE = 256; // longest side asked of the server; smaller images come back unchanged
const PIXELATED_BELOW = 128; // natural size under which images are upscaled with crisp pixels
const RENEW_SHARE = 0.4; // renew a lease when less than this share of it is left
const CLAIM_RETRIES = 6;

const $ = (id) => document.getElementById(id);
const ui = {
  question: $("question"), workspace: $("workspace"), reference: $("reference"), grid: $("grid"),
  actions: $("actions"), undo: $("btn-undo"), skip: $("btn-skip"), submit: $("btn-submit"),
  selectionCount: $("selection-count"), notice: $("notice"), noticeTitle: $("notice-title"),
  noticeText: $("notice-text"), noticeProjects: $("notice-projects"), noticeRetry: $("notice-retry"),
  loading: $("loading"), sync: $("sync"), today: $("today"), countToday: $("count-today"), help: $("help"),
  helpButton: $("btn-help"), projectName: $("project-name"), lastKey: $("last-key"),
};

const state = {
  pid: null,
  current: null, // the prepared task on screen
  queue: [], // prepared tasks waiting: prefetched or resumed leases
  claiming: null, // the claim in flight (a promise)
  stopped: null, // {reason, message} when the last claim found nothing to do
  history: [], // answers given on this page, newest last (for undo)
  busy: false, // an undo is running
  advancing: false,
};

// Measurements for the latency benchmark: ms from the key press to the next grid painted.
window.palTimings = [];
let gridSeq = 0;

const outbox = new Outbox(`pal.outbox.u${userId}`, {
  onChange: showSync,
  onRetry: () => showSync(outbox.size, true),
  onFinalError: (error) => {
    const message = error.code === "lease_lost"
      ? "An answer arrived after its grid was given to someone else, so it was not stored."
      : `An answer was not stored: ${error.message}`;
    toast(message, "error", 7000);
  },
});

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages served over plain http on a LAN address have no randomUUID: build a v4 UUID by hand.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ------------------------------------------------------------------ preparing and showing tasks

function makeImage(itemId, alt) {
  const img = new Image();
  img.alt = alt;
  img.decoding = "async";
  img.draggable = false;
  img.src = imageUrl(itemId, IMAGE_SIZE);
  return img;
}

function leaseExpiry(task) {
  return Date.parse(task.lease_expires_at) - clockSkew;
}

// Fetch and decode a task's images now, so showing it later costs no network and no decoding.
function prepare(task) {
  const ref = makeImage(task.reference, "Reference image");
  const cands = task.candidates.map((id) => makeImage(id, ""));
  const ready = Promise.all([ref, ...cands].map((img) => img.decode().catch(() => null))).then(() => {
    for (const img of [ref, ...cands]) {
      if (img.naturalWidth && Math.max(img.naturalWidth, img.naturalHeight) < PIXELATED_BELOW) {
        img.classList.add("pixelated");
      }
    }
  });
  const expiry = leaseExpiry(task);
  return { task, ref, cands, ready, selected: new Set(), expiry, leaseMs: Math.max(expiry - Date.now(), 10_000) };
}

function renderQuestion(text) {
  // "... is NOT the same ..." -> emphasise the negation, which is what people miss.
  const parts = (text || "").split(/\bNOT\b/);
  if (parts.length === 2) ui.question.replaceChildren(parts[0], el("em", { text: "not" }), parts[1]);
  else ui.question.textContent = text;
}

function tiles(n) {
  const have = ui.grid.children.length;
  for (let i = have; i < n; i++) {
    // The accessible name is the visible text plus a hidden word: "Candidate 3", "Candidate 3 Not the same".
    const tile = el("button", { type: "button", class: "tile candidate", "aria-pressed": "false",
      "data-index": String(i) },
    el("span", { class: "visually-hidden", text: "Candidate " }),
    el("span", { class: "key", text: String(i + 1) }),
    el("span", { class: "frame" }),
    el("span", { class: "mark", text: " Not the same" }));
    tile.addEventListener("click", () => toggle(i));
    ui.grid.append(tile);
  }
  while (ui.grid.children.length > n) ui.grid.lastElementChild.remove();
  const cols = n <= 3 ? n : n <= 4 ? 2 : n <= 9 ? 3 : n <= 16 ? 4 : 5;
  ui.grid.className = `grid cols-${cols} rows-${Math.ceil(n / cols)}`;
  ui.lastKey.textContent = String(Math.min(n, 9));
  return [...ui.grid.children];
}

function render(p) {
  renderQuestion(p.task.question);
  ui.reference.replaceChildren(p.ref);
  tiles(p.cands.length).forEach((tile, i) => {
    tile.querySelector(".frame").replaceChildren(p.cands[i]);
    paintTile(tile, p.selected.has(i));
  });
  updateSelectionCount(p);
  ui.workspace.hidden = false;
  ui.question.hidden = false;
  ui.actions.hidden = false;
  ui.notice.hidden = true;
  ui.loading.hidden = true;
  root.setAttribute("aria-busy", "false");
  root.dataset.taskId = String(p.task.id);
}

function paintTile(tile, selected) {
  tile.setAttribute("aria-pressed", selected ? "true" : "false");
  tile.classList.toggle("selected", selected);
}

function updateSelectionCount(p) {
  const k = p.selected.size;
  ui.selectionCount.textContent = k ? `· ${k} marked` : "· all same";
  ui.undo.disabled = state.history.length === 0;
}

function show(p, t0) {
  state.current = p;
  render(p);
  p.shownAt = performance.now();
  gridSeq += 1;
  const seq = gridSeq;
  // rAF runs just before the frame is painted; the task queued from it runs just after.
  requestAnimationFrame(() => setTimeout(() => {
    if (t0 !== undefined) window.palTimings.push(performance.now() - t0);
    document.body.dataset.gridSeq = String(seq);
  }, 0));
  fillQueue();
}

function showLoading() {
  ui.loading.hidden = false;
  root.setAttribute("aria-busy", "true");
}

function showNotice(title, text, { retry = false, projects = null } = {}) {
  ui.workspace.hidden = true;
  ui.question.hidden = true;
  ui.actions.hidden = !state.history.length; // undo stays reachable
  ui.skip.hidden = ui.submit.hidden = true;
  ui.loading.hidden = true;
  ui.notice.hidden = false;
  ui.noticeTitle.textContent = title;
  ui.noticeText.textContent = text;
  ui.noticeRetry.hidden = !retry;
  ui.noticeProjects.replaceChildren(...(projects || []).map((p) =>
    el("a", { class: "btn", href: `/annotate/${p.id}`, text: p.name })));
  ui.undo.disabled = state.history.length === 0;
  root.setAttribute("aria-busy", "false");
}

const STOP_TITLES = {
  budget_exhausted: "All done for now",
  paused: "Paused",
  no_items: "No images yet",
  done: "Nothing left to ask",
  offline: "Connection lost",
  excluded: "Your answers are not accepted here",
};

function showStopped() {
  const s = state.stopped || { reason: "done", message: "There is nothing to label right now." };
  showNotice(STOP_TITLES[s.reason] || "Nothing to do right now", s.message || "Please come back later.", { retry: true });
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(() => { if (!state.current) advance(); }, 30_000);
}

// ------------------------------------------------------------------ claiming

async function doClaim() {
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await api("POST", `projects/${state.pid}/tasks/claim`);
      if (!result.task) {
        state.stopped = { reason: result.reason, message: result.message };
        return;
      }
      state.stopped = null;
      const known = [state.current, ...state.queue].find((p) => p && p.task.id === result.task.id);
      if (known) { // re-leased to us after expiry: keep the images, take the new token
        known.task = result.task;
        known.expiry = leaseExpiry(result.task);
      } else {
        state.queue.push(prepare(result.task));
      }
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || !err.transient || attempt >= CLAIM_RETRIES) {
        const reason = err.code === "annotator_excluded" ? "excluded" : "offline";
        state.stopped = { reason, message: err.message || "The server cannot be reached." };
        return;
      }
      await new Promise((r) => setTimeout(r, backoff(attempt)));
    }
  }
}

function claimIntoQueue() {
  if (!state.claiming) state.claiming = doClaim().finally(() => { state.claiming = null; });
  return state.claiming;
}

function fillQueue() {
  if (PREFETCH && !state.queue.length && !state.claiming && !state.stopped) claimIntoQueue();
}

async function takeNext() {
  if (state.claiming) await state.claiming;
  if (!state.queue.length) await claimIntoQueue();
  return state.queue.shift() || null;
}

async function advance(t0) {
  if (state.advancing) return;
  state.advancing = true;
  try {
    let next = state.queue.shift();
    if (!next) {
      showLoading();
      next = await takeNext();
    }
    if (!next) {
      showStopped();
      return;
    }
    await next.ready;
    ui.skip.hidden = ui.submit.hidden = false;
    show(next, t0);
  } finally {
    state.advancing = false;
  }
}

// ------------------------------------------------------------------ answering

function toggle(i) {
  const p = state.current;
  if (!p || state.busy || i >= p.cands.length) return;
  if (p.selected.has(i)) p.selected.delete(i);
  else p.selected.add(i);
  paintTile(ui.grid.children[i], p.selected.has(i));
  updateSelectionCount(p);
}

function submit(cantTell) {
  const p = state.current;
  if (!p || state.busy || state.advancing) return;
  const t0 = performance.now();
  const outliers = cantTell ? [] : [...p.selected].sort((a, b) => a - b).map((i) => p.task.candidates[i]);
  const body = {
    idempotency_key: uuid(), lease_token: p.task.lease_token, outlier_ids: outliers, cant_tell: cantTell,
    seconds: Math.round(performance.now() - p.shownAt) / 1000,
  };
  const record = { prepared: p, selected: new Set(p.selected), cantTell, done: outbox.add(p.task.id, body) };
  record.done.then(refreshCount, () => {
    state.history = state.history.filter((r) => r !== record);
    ui.undo.disabled = state.history.length === 0;
  });
  state.history.push(record);
  if (state.history.length > 50) state.history.shift();
  state.current = null;
  advance(t0);
}

async function undo() {
  const record = state.history[state.history.length - 1];
  if (state.busy || state.advancing) return;
  if (!record) {
    toast("Nothing to undo.");
    return;
  }
  state.busy = true;
  ui.undo.disabled = true;
  try {
    const answer = await record.done; // an answer still being sent is undone once it is stored
    const result = await api("DELETE", `answers/${answer.id}`);
    state.history = state.history.filter((r) => r !== record);
    if (state.current) state.queue.unshift(state.current);
    const p = record.prepared;
    p.task = result.task;
    p.expiry = leaseExpiry(result.task);
    p.selected = record.cantTell ? new Set() : new Set(record.selected);
    ui.skip.hidden = ui.submit.hidden = false;
    state.busy = false;
    show(p);
    refreshCount();
    toast("Answer undone: here is that grid again.");
  } catch (err) {
    toast(err instanceof ApiError ? err.message : "Could not undo.", "error");
    if (err instanceof ApiError && !err.transient) state.history = state.history.filter((r) => r !== record);
  } finally {
    state.busy = false;
    ui.undo.disabled = state.history.length === 0;
  }
}

// ------------------------------------------------------------------ leases

async function renewDue() {
  if (document.visibilityState !== "visible") return;
  for (const p of [state.current, ...state.queue]) {
    if (!p || p.expiry - Date.now() > p.leaseMs * RENEW_SHARE) continue;
    try {
      const task = await api("POST", `tasks/${p.task.id}/lease`, { lease_token: p.task.lease_token });
      p.task = { ...p.task, lease_expires_at: task.lease_expires_at };
      p.expiry = leaseExpiry(task);
    } catch (err) {
      if (err instanceof ApiError && !err.transient) drop(p);
    }
  }
}

function drop(p) {
  state.queue = state.queue.filter((q) => q !== p);
  if (state.current === p) {
    state.current = null;
    toast("This grid was given back to the pool after a long pause; here is a new one.");
    advance();
  }
}

// ------------------------------------------------------------------ status line and counts

function showSync(n, retrying = false) {
  if (!n || (!retrying && n < 3)) { // one answer in flight is the normal case: say nothing
    ui.sync.textContent = "";
    ui.sync.classList.remove("warn");
    return;
  }
  ui.sync.textContent = retrying
    ? `Connection trouble: ${n} answer${n > 1 ? "s" : ""} kept on this device, retrying…`
    : `Saving ${n} answer${n > 1 ? "s" : ""}…`;
  ui.sync.classList.toggle("warn", retrying);
}

let countTimer = null;
function refreshCount() {
  if (countTimer || !state.pid) return;
  countTimer = setTimeout(async () => {
    countTimer = null;
    try {
      const counts = await api("GET", `projects/${state.pid}/me`);
      ui.countToday.textContent = counts.today.toLocaleString("en-US");
      ui.today.hidden = false;
    } catch (_) { /* the count is cosmetic */ }
  }, 300);
}

// ------------------------------------------------------------------ keys and buttons

function onKey(e) {
  if (e.altKey || e.ctrlKey || e.metaKey || e.defaultPrevented) return;
  const target = e.target instanceof Element ? e.target : document.body;
  if (ui.help.open || target.closest("input, textarea, select")) return;
  const key = e.key;
  if (key === "?") {
    e.preventDefault();
    openHelp();
    return;
  }
  if (e.repeat) return; // a held key must not submit grid after grid
  const onTile = target.classList.contains("candidate");
  const onControl = !onTile && target.closest("button, a, summary");
  if (/^[1-9]$/.test(key)) {
    e.preventDefault();
    toggle(Number(key) - 1);
  } else if (key === "Enter" && !onControl) {
    e.preventDefault();
    submit(false);
  } else if (key === " " && !onTile && !onControl) {
    e.preventDefault();
    submit(false);
  } else if (key === "s" || key === "S") {
    e.preventDefault();
    submit(true);
  } else if (key === "u" || key === "U") {
    e.preventDefault();
    undo();
  }
}

function openHelp() {
  if (!ui.help.open) ui.help.showModal();
}

document.addEventListener("keydown", onKey);
ui.submit.addEventListener("click", () => submit(false));
ui.skip.addEventListener("click", () => submit(true));
ui.undo.addEventListener("click", () => undo());
ui.helpButton.addEventListener("click", openHelp);
ui.noticeRetry.addEventListener("click", () => { state.stopped = null; advance(); });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    renewDue();
    outbox.pump();
  }
});
window.addEventListener("online", () => outbox.pump());
setInterval(renewDue, 10_000);

// ------------------------------------------------------------------ start

async function resolveProject() {
  const fromPage = root.dataset.projectId;
  if (fromPage) {
    try {
      const project = await api("GET", `projects/${fromPage}`);
      ui.projectName.textContent = project.name;
      return project.id;
    } catch (err) {
      showNotice("Project not found", "This project does not exist or you are not a member of it.");
      return null;
    }
  }
  const projects = await api("GET", "projects");
  if (projects.length === 1) {
    history.replaceState(null, "", `/annotate/${projects[0].id}${location.search}`);
    ui.projectName.textContent = projects[0].name;
    return projects[0].id;
  }
  if (!projects.length) {
    showNotice("No project yet", "You are not a member of any project yet. Ask your admin for an invite link.");
  } else {
    showNotice("Choose a project", "You are a member of several projects:", { projects });
  }
  return null;
}

async function start() {
  wireSignOut();
  outbox.pump(); // answers kept from an earlier visit go out first (same idempotency keys)
  state.pid = await resolveProject();
  if (state.pid === null) return;
  if (outbox.size) await outbox.flush(5000);
  try {
    const pending = outbox.pendingTaskIds();
    const held = await api("GET", `projects/${state.pid}/tasks/mine`);
    for (const task of held) if (!pending.has(task.id)) state.queue.push(prepare(task));
  } catch (_) { /* resuming is best effort: a new claim follows */ }
  refreshCount();
  await advance();
}

start();
