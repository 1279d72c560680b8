// Admin: users and their lifecycle. Disable or enable an account, end its sessions, set a new
// password, list, issue and revoke its API tokens. Every change goes through /api/v1/users and is
// refused there with a message naming the field; the page shows that message as it is.
import { api, el, fmtInt, toast, wireSignOut } from "./api.js";

const $ = (id) => document.getElementById(id);
const me = Number(document.body.dataset.userId);
let selected = null; // the user whose panel is open

function fmtDate(value) {
  return value ? new Date(value).toLocaleString("en-GB", { day: "numeric", month: "short", year: "numeric",
    hour: "2-digit", minute: "2-digit" }) : "never";
}

function statusPill(u) {
  return u.is_active ? el("span", { class: "pill running", text: "Active" })
    : el("span", { class: "pill disabled", text: "Disabled" });
}

function action(label, onClick, attrs = {}) {
  const button = el("button", { type: "button", class: "btn", text: label, ...attrs });
  button.addEventListener("click", async () => {
    button.disabled = true;
    $("users-error").textContent = "";
    try {
      await onClick();
    } catch (err) {
      $("users-error").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function userRow(u) {
  const who = u.email;
  const buttons = [];
  if (u.id !== me) {  // the server refuses self-disabling too; the button would only mislead
    buttons.push(action(u.is_active ? "Disable" : "Enable", async () => {
      await api("PATCH", `users/${u.id}`, { is_active: !u.is_active });
      toast(`${who} ${u.is_active ? "disabled: signed out, tokens refused" : "enabled"}`);
      await loadUsers();
    }, { "data-action": "toggle", "aria-label": `${u.is_active ? "Disable" : "Enable"} ${who}` }));
  }
  buttons.push(action("End sessions", async () => {
    const { ended } = await api("DELETE", `users/${u.id}/sessions`);
    toast(`${who}: ${ended} session${ended === 1 ? "" : "s"} ended`);
    await loadUsers();
  }, { "data-action": "end-sessions", "aria-label": `End sessions of ${who}` }));
  buttons.push(action("Manage", async () => openPanel(u),
    { "data-action": "manage", "aria-label": `Manage ${who}: password and tokens` }));
  return el("tr", { "data-user-id": u.id },
    el("td", {}, u.name || u.email, u.name ? el("span", { class: "sub", text: u.email }) : null),
    el("td", { text: u.role }),
    el("td", {}, statusPill(u)),
    el("td", { class: "num", text: fmtInt(u.sessions) }),
    el("td", { class: "num", text: fmtInt(u.tokens) }),
    el("td", {}, ...(u.project_ids.length ? u.project_ids.flatMap((pid, i) => [i ? ", " : null,
      el("a", { href: `/admin/projects/${pid}`, text: `#${pid}` })]) : ["–"])),
    el("td", {}, el("div", { class: "row-actions" }, ...buttons)),
  );
}

async function loadUsers() {
  const users = await api("GET", "users");
  $("users-body").replaceChildren(...users.map(userRow));
  if (selected) selected = users.find((u) => u.id === selected.id) || null;
}

function tokenStatus(t) {
  if (t.revoked_at) return "revoked";
  if (t.expires_at && Date.parse(t.expires_at) <= Date.now()) return "expired";
  return "active";
}

async function loadTokens() {
  const tokens = await api("GET", `users/${selected.id}/tokens`);
  if (!tokens.length) {
    $("tokens-body").replaceChildren(el("tr", {}, el("td", { colSpan: 5, class: "muted", text: "No API token." })));
    return;
  }
  $("tokens-body").replaceChildren(...tokens.map((t) => {
    const status = tokenStatus(t);
    const revoke = status === "revoked" ? null : action("Revoke", async () => {
      await api("DELETE", `tokens/${t.id}`);
      toast(`Token ${t.name || t.id} revoked`);
      await Promise.all([loadTokens(), loadUsers()]);
    }, { "data-action": "revoke", "aria-label": `Revoke token ${t.name || t.id}` });
    return el("tr", { "data-token-id": t.id },
      el("td", { text: t.name || "–" }), el("td", { text: fmtDate(t.created_at) }),
      el("td", { text: t.expires_at ? fmtDate(t.expires_at) : "never" }), el("td", { text: status }),
      el("td", {}, revoke));
  }));
}

async function openPanel(u) {
  selected = u;
  $("user-panel").hidden = false;
  $("user-panel-title").textContent = u.name ? `${u.name} (${u.email})` : u.email;
  $("token-result").hidden = true;
  for (const id of ["password-error", "token-error"]) $(id).textContent = "";
  await loadTokens();
  $("user-panel").scrollIntoView({ block: "nearest" });
}

function wireForms() {
  $("password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("password-error").textContent = "";
    try {
      await api("PATCH", `users/${selected.id}`, { password: $("pw-new").value });
      $("pw-new").value = "";
      toast(`New password set for ${selected.email}; their sessions ended`);
      await loadUsers();
    } catch (err) {
      $("password-error").textContent = err.message;
    }
  });
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("token-error").textContent = "";
    const days = $("t-days").value;
    try {
      const body = { name: $("t-name").value.trim() };
      if (days !== "") body.expires_days = Number(days);
      const issued = await api("POST", `users/${selected.id}/tokens`, body);
      $("token-value").value = issued.token;
      $("token-result").hidden = false;
      $("token-value").select();
      await Promise.all([loadTokens(), loadUsers()]);
    } catch (err) {
      $("token-error").textContent = err.message;
    }
  });
}

wireSignOut();
wireForms();
loadUsers().catch((err) => {
  $("users-body").replaceChildren(el("tr", {}, el("td", { colSpan: 7, class: "form-error", text: err.message })));
});
