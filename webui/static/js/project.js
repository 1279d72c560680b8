// Admin dashboard of one project: polls GET /projects/{pid}/stats every few seconds and updates
// figures, charts and tables in place (no reload); actions: pause/resume, budget and query design,
// invites, imports, exports, a browser of the known clusters, and annotator quality (exclude / include).
import { api, el, fmtAgo, fmtDuration, fmtInt, fmtPct, imageUrl, toast, wireSignOut } from "./api.js";
import { makeCharts } from "./charts.js";
import { wireMembers } from "./members.js";

const $ = (id) => document.getElementById(id);
const root = $("dashboard");
const pid = Number(root.dataset.projectId);
// ?poll_ms=N overrides the refresh interval (at least 500 ms), e.g. for a wall display or the tests.
const POLL_MS = Math.max(500, Number(new URLSearchParams(location.search).get("poll_ms")) || Number(root.dataset.pollMs) || 4000);
const CLUSTER_PAGE = 48;

let latest = null;
let charts = null;
let settingsLoaded = false;

function text(id, value) {
  const node = $(id);
  if (node.textContent !== String(value)) node.textContent = value;
}

function timeOfDay(iso) {
  return new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

// ------------------------------------------------------------------ figures

function renderKpis(s) {
  const b = s.budget;
  text("k-spent", fmtInt(b.spent));
  text("k-cap", fmtInt(b.cap));
  const bar = $("k-budget-bar");
  bar.max = Math.max(b.cap, 1);
  bar.value = b.spent;
  bar.classList.toggle("high", b.cap > 0 && b.spent / b.cap > 0.9);
  text("k-burn", b.burn_per_hour
    ? `${fmtInt(b.burn_per_hour)} grids / h · runs out in ${fmtDuration(b.hours_left)} (${timeOfDay(b.projected_exhaustion_at)})`
    : b.remaining ? "no grids issued in the last hour" : "budget spent");
  const t = s.throughput;
  text("k-aph", fmtInt(t.answers_last_hour));
  text("k-answers", fmtInt(t.answers_total));
  text("k-today", fmtInt(t.answers_today));
  text("k-active", fmtInt(t.active_annotators));
  text("k-holding", fmtInt(t.annotators_holding_tasks));
  text("k-members", fmtInt(s.annotators.filter((a) => a.member).length));
  const g = s.graph;
  text("k-clusters", fmtInt(g.known_clusters));
  text("k-in-clusters", fmtInt(g.items_in_clusters));
  text("k-items", fmtInt(s.items));
  text("k-contradictions", fmtInt(g.contradictions));
  text("k-match", fmtPct(s.oracle.match_rate));
  text("k-target", fmtPct(s.oracle.target_match_share));
  text("k-oracle", s.oracle.name);
  const tr = s.trainer;
  text("k-version", tr.current_version ? `v${tr.current_version}` : "–");
  const knn = tr.metrics && typeof tr.metrics.knn_accuracy === "number" ? ` · kNN ${fmtPct(tr.metrics.knn_accuracy, 1)}` : "";
  text("k-trainer-note", tr.current_version ? `published ${fmtAgo(tr.age_seconds)}${knn}` : "no embedding yet");
  const pill = $("status-pill");
  const spent = b.cap > 0 && b.spent >= b.cap;
  pill.textContent = s.project.paused ? "Paused" : spent ? "Budget spent" : "Running";
  pill.className = `pill ${s.project.paused ? "paused" : spent ? "spent" : "running"}`;
  text("btn-pause", s.project.paused ? "Resume" : "Pause");
  text("project-title", s.project.name);
}

function pct(x) {
  return x === null || x === undefined ? "–" : fmtPct(x, 1);
}

function renderAnnotators(list) {
  const body = $("annotators-body");
  if (!list.length) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 9, class: "empty-state",
      text: "No annotators yet: create an invite link below and send it." })));
    return;
  }
  body.replaceChildren(...list.map((a) => el("tr", {},
    el("td", {}, a.name || a.email, a.name ? el("span", { class: "sub", text: a.email }) : null),
    el("td", { class: "num", text: fmtInt(a.answers) }),
    el("td", { class: "num", text: fmtInt(a.answers_today) }),
    el("td", { class: "num", text: fmtInt(a.answers_last_hour) }),
    el("td", { class: "num", text: fmtInt(a.cant_tell) }),
    el("td", { class: "num", text: a.median_seconds === null ? "–" : a.median_seconds.toFixed(1) }),
    el("td", { class: "num", text: a.gold_checked ? `${pct(a.gold_accuracy)} (${fmtInt(a.gold_checked)})` : "–" }),
    el("td", { class: "num", text: a.agreement_pairs ? `${pct(a.agreement)} (${fmtInt(a.agreement_pairs)})` : "–" }),
    el("td", { text: a.last_answer_at ? fmtAgo((Date.now() - Date.parse(a.last_answer_at)) / 1000) : "never" }),
  )));
}

// ------------------------------------------------------------------ annotator quality

function fmtAcc(x) {
  return x.toFixed(2);
}

function qualityRow(q) {
  const who = q.name || q.email || `user ${q.user_id}`;
  const status = q.excluded ? el("span", { class: "pill excluded", text: "Excluded" })
    : q.flagged ? el("span", { class: "pill flagged", text: "Flagged",
      title: "At least 30 decided marks, and even the top of the interval is more than 0.1 below the team's median" })
      : el("span", { class: "muted", text: q.decided ? "ok" : "too few marks" });
  let action = null;
  if (q.member) {
    action = el("button", { type: "button", class: q.excluded ? "btn" : "btn btn-quiet",
      text: q.excluded ? "Include" : "Exclude", "data-user-id": String(q.user_id),
      "data-action": q.excluded ? "include" : "exclude", "aria-label": `${q.excluded ? "Include" : "Exclude"} ${who}` });
  }
  const meter = el("meter", { min: 0, max: 1, low: 0.7, high: 0.85, optimum: 1, value: q.accuracy,
    "aria-label": `Estimated accuracy of ${who}` });
  return el("tr", { "data-user-id": String(q.user_id), class: q.flagged ? "flagged" : "" },
    el("td", {}, who, q.name ? el("span", { class: "sub", text: q.email }) : null),
    el("td", { class: "accuracy" }, `${fmtAcc(q.accuracy)} (${fmtAcc(q.low)}–${fmtAcc(q.high)})`, meter),
    el("td", { class: "num", text: `${fmtInt(q.agreed)} / ${fmtInt(q.decided)}`,
      title: "decided marks that agree with the others (and gold) / decided marks" }),
    el("td", { class: "num", text: fmtInt(q.edges) }),
    el("td", {}, status),
    el("td", {}, action),
  );
}

async function refreshQuality() {
  const rows = await api("GET", `projects/${pid}/annotators/quality`);
  const body = $("quality-body");
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 6, class: "empty-state", text: "No annotators yet." })));
    return;
  }
  body.replaceChildren(...rows.map(qualityRow));
}

function wireQuality() {
  $("quality-body").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const { action, userId } = button.dataset;
    const who = button.closest("tr").querySelector("td").firstChild.textContent;
    if (action === "exclude" && !window.confirm(`Exclude ${who}? Their answers are withdrawn from the graph and `
      + "their new answers are refused. The budget they used stays spent; including them later does not bring "
      + "the withdrawn answers back.")) return;
    button.disabled = true;
    try {
      const result = await api("POST", `projects/${pid}/annotators/${userId}/${action}`);
      toast(action === "exclude"
        ? `${who} excluded: ${fmtInt(result.retracted_edges)} edges withdrawn.`
        : `${who} may answer again.`);
      await refreshQuality();
    } catch (err) {
      toast(err.message, "error");
      button.disabled = false;
    }
  });
}

function facts(id, rows) {
  $(id).replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}

const METRIC_NAMES = { knn_accuracy: "kNN accuracy", cluster_accuracy: "Cluster accuracy", loss: "Loss" };

function renderFacts(s) {
  const g = s.graph;
  facts("graph-facts", [
    ["Images", fmtInt(s.items)],
    ["Images with an answer", fmtInt(g.items_with_edges)],
    ["Live edges", `${fmtInt(g.edges)} (+${fmtInt(g.positive_edges)} / −${fmtInt(g.negative_edges)})`],
    ["Known clusters", fmtInt(g.known_clusters)],
    ["Images in clusters", fmtInt(g.items_in_clusters)],
    ["Cannot-links", fmtInt(g.cannot_links)],
    ["Contradictions", fmtInt(g.contradictions)],
  ]);
  text("largest-clusters", g.largest_clusters.length ? g.largest_clusters.map(fmtInt).join(" · ") : "none yet");
  const tr = s.trainer;
  if (!tr.current_version) {
    facts("trainer-facts", [["Status", "waiting for the first embedding"], ["Versions", fmtInt(tr.versions)]]);
    return;
  }
  const metrics = Object.entries(tr.metrics || {})
    .filter(([, v]) => typeof v === "number")
    .slice(0, 8)
    .map(([k, v]) => [METRIC_NAMES[k] || k.replace(/_/g, " "),
      k.endsWith("accuracy") ? fmtPct(v, 1) : Number.isInteger(v) ? fmtInt(v) : v.toPrecision(4)]);
  facts("trainer-facts", [
    ["Current version", `v${tr.current_version} of ${fmtInt(tr.versions)}`],
    ["Published", fmtAgo(tr.age_seconds)],
    ["Answers at upload", fmtInt(tr.answers_at_upload)],
    ["Answers since", fmtInt(tr.answers_since)],
    ["Embedding", `${fmtInt(tr.n_items)} × ${fmtInt(tr.dim)}`],
    ...metrics,
  ]);
}

function fillSettings(p) {
  const form = $("settings-form");
  for (const name of ["budget_cap", "n_candidates", "redundancy", "gold_rate", "target_match_share", "oracle"]) {
    form.elements[name].value = p[name];
  }
  settingsLoaded = true;
}

// Committed answers the edge feed cannot deliver yet: the trainer and other server processes do
// not see them until the transaction that holds them back ends (docs/operations.md).
function renderHeldBack(held) {
  const el = $("feed-held");
  el.hidden = !held;
  if (!held) return;
  const who = held.blocker_pid == null ? "an open transaction"
    : `transaction pid ${held.blocker_pid} in database “${held.blocker_database}” (${held.blocker_state || "running"}, ` +
      `open ${Math.round(held.blocker_age_s)} s)`;
  el.textContent = `${fmtInt(held.edges)} committed edges are held back from the trainer for ` +
    `${Math.round(held.oldest_edge_age_s)} s by ${who}.`;
}

async function poll() {
  try {
    const s = await api("GET", `projects/${pid}/stats`);
    latest = s;
    renderKpis(s);
    renderAnnotators(s.annotators);
    renderFacts(s);
    renderHeldBack(s.feed_held_back);
    if (!settingsLoaded) fillSettings(s.project);
    if (!charts && window.Chart) charts = makeCharts(window.Chart);
    if (charts) charts.update(s);
    $("quality-empty").hidden = s.quality.length > 0;
    text("updated", `Updated ${new Date(s.generated_at).toLocaleTimeString("en-GB")} · refreshes every ${POLL_MS / 1000} s`);
    maybeRefreshClusters(s).catch(() => { browser.known = -1; }); // retried on the next poll
    refreshQuality().catch(() => {}); // retried on the next poll
  } catch (err) {
    text("updated", `Update failed: ${err.message}; retrying`);
  }
}

async function pollLoop() {
  if (document.visibilityState === "visible") await poll();
  setTimeout(pollLoop, POLL_MS);
}

// ------------------------------------------------------------------ actions

async function patch(changes, doneMessage) {
  const project = await api("PATCH", `projects/${pid}`, changes);
  if (doneMessage) toast(doneMessage);
  await poll();
  return project;
}

function wirePause() {
  $("btn-pause").addEventListener("click", async () => {
    if (!latest) return;
    const paused = !latest.project.paused;
    try {
      await patch({ paused }, paused ? "Project paused: annotators see a pause message." : "Project resumed.");
    } catch (err) {
      toast(err.message, "error");
    }
  });
}

function wireSettings() {
  const form = $("settings-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("settings-error").textContent = "";
    const changes = {};
    for (const name of ["budget_cap", "n_candidates", "redundancy", "gold_rate", "target_match_share"]) {
      const value = form.elements[name].value;
      if (value !== "" && latest && Number(value) !== latest.project[name]) changes[name] = Number(value);
    }
    if (latest && form.elements.oracle.value !== latest.project.oracle) changes.oracle = form.elements.oracle.value;
    if (!Object.keys(changes).length) {
      text("settings-saved", "Nothing changed.");
      return;
    }
    try {
      const project = await patch(changes);
      fillSettings(project);
      text("settings-saved", "Saved.");
      setTimeout(() => text("settings-saved", ""), 3000);
    } catch (err) {
      $("settings-error").textContent = err.message;
    }
  });
}

function wireInvite() {
  $("invite-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("invite-error").textContent = "";
    const email = $("invite-email").value.trim();
    try {
      const invite = await api("POST", `projects/${pid}/invites`, email ? { email } : {});
      $("invite-link").value = invite.url;
      $("invite-result").hidden = false;
      $("invite-link").select();
    } catch (err) {
      $("invite-error").textContent = err.message;
    }
  });
  $("btn-copy").addEventListener("click", async () => {
    const input = $("invite-link");
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      input.select();
      document.execCommand("copy");
    }
    toast("Invite link copied.");
  });
}

// One file, posted as a form to `path`; the result (or the error) is written into `out`.
function wireUpload({ form, input, button, out, missing, busy, path, done, failed }) {
  $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $(input).files[0];
    if (!file) {
      $(out).textContent = missing;
      return;
    }
    const data = new FormData();
    data.append("file", file);
    $(button).disabled = true;
    $(out).textContent = `${busy} ${file.name}…`;
    try {
      $(out).textContent = await done(await api("POST", path, data));
    } catch (err) {
      $(out).textContent = `${failed}: ${err.message}`;
    } finally {
      $(button).disabled = false;
    }
  });
}

function wireImport() {
  wireUpload({
    form: "import-form", input: "import-file", button: "btn-import", out: "import-result",
    missing: "Choose a file first.", busy: "Importing", path: `projects/${pid}/imports`, failed: "Import failed",
    done: async (report) => {
      await poll();
      // Say why, not just how many: the first few reasons, then a count of the rest.
      const shown = report.skipped.slice(0, 3).map((s) => `${s.source}: ${s.reason}`).join("; ");
      const more = report.skipped.length > 3 ? `; and ${fmtInt(report.skipped.length - 3)} more` : "";
      const skipped = report.skipped.length ? `, skipped ${fmtInt(report.skipped.length)} (${shown}${more})` : "";
      if (!report.imported && !report.skipped.length) {
        return "Nothing imported: the file holds no images (PNG, JPEG, WebP, ... or an .npz with an images array).";
      }
      return `Imported ${fmtInt(report.imported)} images${skipped}; the project holds ${fmtInt(report.total_items)}.`;
    },
  });
}

function wireKnownLabels() {
  api("GET", `projects/${pid}/known-labels`).then((known) => {
    const kinds = new Set(known.map((k) => k.label)).size;
    if (known.length) $("known-result").textContent = `${fmtInt(known.length)} known labels of ${fmtInt(kinds)} kinds.`;
  }).catch(() => {});
  wireUpload({
    form: "known-form", input: "known-file", button: "btn-known", out: "known-result",
    missing: "Choose a CSV file first.", busy: "Reading", path: `projects/${pid}/known-labels/file`,
    failed: "Nothing stored",
    done: async (report) => `Added ${fmtInt(report.added)} known labels (${fmtInt(report.unchanged)} already known); the project has ${fmtInt(report.total)}.`,
  });
}

// ------------------------------------------------------------------ cluster browser

const browser = { root: null, offset: 0, size: 0, known: -1, lastList: 0 };

async function maybeRefreshClusters(s) {
  const known = s.graph.known_clusters ?? 0;
  // The list changes with the graph; re-read it when the count moves, at most every 20 s otherwise.
  if (known === browser.known && Date.now() - browser.lastList < 20_000) return;
  browser.known = known;
  browser.lastList = Date.now();
  const list = await api("GET", `projects/${pid}/clusters?limit=30`);
  const select = $("cluster-select");
  const previous = select.value;
  if (!list.clusters.length) {
    select.replaceChildren(el("option", { value: "", text: "No clusters yet" }));
    $("cluster-thumbs").replaceChildren(el("p", { class: "empty",
      text: "Clusters appear as annotators say that images are the same kind." }));
    return;
  }
  select.replaceChildren(...list.clusters.map((c, i) =>
    el("option", { value: String(c.root), text: `#${i + 1}: ${fmtInt(c.size)} images (item ${c.root})` })));
  if (previous && list.clusters.some((c) => String(c.root) === previous)) select.value = previous;
  if (browser.root === null || select.value !== String(browser.root)) showCluster(Number(select.value), 0);
}

async function showCluster(item, offset) {
  const page = await api("GET", `projects/${pid}/clusters/${item}/items?offset=${offset}&limit=${CLUSTER_PAGE}`);
  browser.root = item;
  browser.offset = page.offset;
  browser.size = page.size;
  $("cluster-thumbs").replaceChildren(...page.items.map((id) => {
    const img = el("img", { src: imageUrl(id, 128), alt: `Item ${id}`, loading: "lazy", title: `item ${id}` });
    img.addEventListener("load", () => img.classList.toggle("pixelated", img.naturalWidth < 72));
    return img;
  }));
  const last = Math.min(page.offset + page.items.length, page.size);
  text("cluster-page", `${fmtInt(page.offset + 1)}–${fmtInt(last)} of ${fmtInt(page.size)}`);
  $("cluster-prev").disabled = page.offset === 0;
  $("cluster-next").disabled = last >= page.size;
}

function wireClusters() {
  $("cluster-select").addEventListener("change", (e) => {
    if (e.target.value) showCluster(Number(e.target.value), 0).catch((err) => toast(err.message, "error"));
  });
  $("cluster-prev").addEventListener("click", () => showCluster(browser.root, Math.max(0, browser.offset - CLUSTER_PAGE)));
  $("cluster-next").addEventListener("click", () => showCluster(browser.root, browser.offset + CLUSTER_PAGE));
}

wireSignOut();
wirePause();
wireSettings();
wireInvite();
wireMembers(pid);
wireImport();
wireKnownLabels();
wireClusters();
wireQuality();
pollLoop();
