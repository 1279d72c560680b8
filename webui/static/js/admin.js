// Admin: the project list, and creating a project (then importing its images) in one form.
import { api, el, fmtInt, wireSignOut } from "./api.js";

const $ = (id) => document.getElementById(id);

function statusPill(p) {
  if (p.paused) return el("span", { class: "pill paused", text: "Paused" });
  if (p.budget_spent >= p.budget_cap) return el("span", { class: "pill spent", text: "Budget spent" });
  return el("span", { class: "pill running", text: "Running" });
}

function budgetCell(p) {
  const bar = el("progress", { max: Math.max(p.budget_cap, 1), value: p.budget_spent, "aria-label": `Budget of ${p.name}` });
  return el("td", { class: "budget-cell" }, `${fmtInt(p.budget_spent)} / ${fmtInt(p.budget_cap)}`, bar);
}

async function loadProjects() {
  const body = $("projects-body");
  const projects = await api("GET", "projects");
  if (!projects.length) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 6, class: "empty-state",
      text: "No project yet. Create one with “New project”; the demo data is demo/fashion-mnist-demo.npz." })));
    return;
  }
  body.replaceChildren(...projects.map((p) => el("tr", {},
    el("td", {}, el("a", { href: `/admin/projects/${p.id}`, text: p.name }),
      p.description ? el("span", { class: "sub", text: p.description }) : null),
    el("td", {}, statusPill(p)),
    el("td", { text: p.oracle }),
    el("td", { text: `${p.n_candidates} candidates × ${p.redundancy}` }),
    budgetCell(p),
    el("td", { text: new Date(p.created_at).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric" }) }),
  )));
}

function numberField(form, name) {
  const value = form.elements[name].value;
  return value === "" ? undefined : Number(value);
}

function wireCreate() {
  const toggle = $("btn-new-project");
  const section = $("new-project");
  toggle.addEventListener("click", () => {
    section.hidden = !section.hidden;
    toggle.setAttribute("aria-expanded", String(!section.hidden));
    if (!section.hidden) $("p-name").focus();
  });
  const form = $("create-form");
  const error = $("create-error");
  const progress = $("create-progress");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = $("btn-create");
    button.disabled = true;
    try {
      const body = {
        name: form.elements.name.value.trim(), n_candidates: numberField(form, "n_candidates"),
        redundancy: numberField(form, "redundancy"), oracle: form.elements.oracle.value,
        budget_cap: numberField(form, "budget_cap"), gold_rate: numberField(form, "gold_rate"),
      };
      progress.textContent = "Creating the project…";
      const project = await api("POST", "projects", body);
      const file = form.elements.file.files[0];
      if (file) {
        progress.textContent = `Importing ${file.name}… (a few seconds per thousand images)`;
        const data = new FormData();
        data.append("file", file);
        try {
          const report = await api("POST", `projects/${project.id}/imports`, data);
          progress.textContent = `Imported ${fmtInt(report.imported)} images.`;
        } catch (err) {
          // The project exists: say so, and send the admin where they can upload again.
          error.replaceChildren(`Project created, but the import failed: ${err.message} `,
            el("a", { href: `/admin/projects/${project.id}`, text: "Open the project to upload again" }));
          progress.textContent = "";
          return;
        }
      }
      location.assign(`/admin/projects/${project.id}`);
    } catch (err) {
      error.textContent = err.message;
      progress.textContent = "";
    } finally {
      button.disabled = false;
    }
  });
}

wireSignOut();
wireCreate();
loadProjects().catch((err) => {
  $("projects-body").replaceChildren(el("tr", {}, el("td", { colSpan: 6, class: "form-error", text: err.message })));
});
