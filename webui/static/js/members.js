// The members card of a project's dashboard: who may annotate it. An existing user is added by
// e-mail (an annotator with an account joins a second project without a new invite); removing a
// member locks them out of the project at their next request and frees the grids they held.
import { api, el, toast } from "./api.js";

const $ = (id) => document.getElementById(id);

function memberRow(pid, m, reload) {
  const remove = el("button", { type: "button", class: "btn", text: "Remove", "data-action": "remove-member",
    "aria-label": `Remove ${m.email} from this project` });
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    $("member-error").textContent = "";
    try {
      await api("DELETE", `projects/${pid}/members/${m.user_id}`);
      toast(`${m.email} removed from the project`);
      await reload();
    } catch (err) {
      $("member-error").textContent = err.message;
      remove.disabled = false;
    }
  });
  return el("tr", { "data-user-id": m.user_id },
    el("td", {}, m.name || m.email, m.name ? el("span", { class: "sub", text: m.email }) : null),
    el("td", { text: m.is_active ? m.role : `${m.role} (disabled)` }),
    el("td", {}, el("div", { class: "row-actions" }, remove)));
}

export function wireMembers(pid) {
  const reload = async () => {
    const members = await api("GET", `projects/${pid}/members`);
    $("members-body").replaceChildren(...(members.length ? members.map((m) => memberRow(pid, m, reload))
      : [el("tr", {}, el("td", { colSpan: 3, class: "muted", text: "No member yet." }))]));
  };
  $("member-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("member-error").textContent = "";
    try {
      const added = await api("POST", `projects/${pid}/members`, { email: $("member-email").value.trim() });
      $("member-email").value = "";
      toast(`${added.email} is a member`);
      await reload();
    } catch (err) {
      $("member-error").textContent = err.message;
    }
  });
  reload().catch((err) => { $("member-error").textContent = err.message; });
}
