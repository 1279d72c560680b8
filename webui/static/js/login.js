// Sign-in and invite acceptance. On success the CSRF token is kept in sessionStorage and the
// browser goes to ?next= (same-site paths only, checked by the server) or to the role's home page.
import { api, setCsrf } from "./api.js";

const params = new URLSearchParams(location.search);
const root = document.getElementById("login");
const invite = root.dataset.invite;

function destination(user) {
  // ?next= as the server checked it (safe_next in server/routers/pages.py): a path on this site,
  // never "//host", "/\host" or "/<tab>/host" (browsers drop tabs and line breaks), or "".
  const next = root.dataset.next;
  if (next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\")) {
    if (user.role === "admin" || !next.startsWith("/admin")) return next;
  }
  return user.role === "admin" ? "/admin" : "/annotate";
}

function showError(node, err) {
  node.textContent = err.message || "Something went wrong; please try again.";
}

function bind(formId, errorId, submit) {
  const form = document.getElementById(formId);
  const error = document.getElementById(errorId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const result = await submit(new FormData(form));
      setCsrf(result.csrf_token);
      if (result.user.role === "trainer") {
        error.textContent = "This is a trainer account: it has no pages. Use its API token.";
        return;
      }
      location.assign(destination(result.user));
    } catch (err) {
      showError(error, err);
    } finally {
      button.disabled = false;
    }
  });
}

bind("login-form", "login-error", (data) =>
  api("POST", "auth/login", { email: data.get("email"), password: data.get("password") }, { noRedirect: true }));

bind("invite-form", "invite-error", (data) =>
  api("POST", `auth/invites/${encodeURIComponent(invite)}/accept`,
    { email: data.get("email"), name: data.get("name") || "", password: data.get("password") },
    { noRedirect: true }));

if (params.get("role")) {
  document.getElementById("login-error").textContent = "That page is for annotators and admins; sign in with such an account.";
}
document.getElementById(invite ? "invite-name" : "email").focus();
