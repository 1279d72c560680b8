// Talking to the PAL API from the browser: the session cookie authenticates, and every request
// that changes state carries the session's CSRF token in X-CSRF-Token. The token comes from the
// page's <meta name="csrf-token"> (rendered by the server), else from sessionStorage (set at
// sign-in), else from GET /api/v1/auth/me.

export const API = "/api/v1";
const CSRF_KEY = "pal.csrf";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || [];
  }
  // Worth retrying: no response at all, a timeout, overload or a server fault.
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

let csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || sessionStorage.getItem(CSRF_KEY) || "";
// Server clock minus local clock (ms), from the Date header: leases expire in server time.
export let clockSkew = 0;

export function setCsrf(token) {
  csrfToken = token || "";
  if (csrfToken) sessionStorage.setItem(CSRF_KEY, csrfToken);
}

async function refreshCsrf() {
  const res = await fetch(`${API}/auth/me`, { credentials: "same-origin" });
  if (res.ok) setCsrf((await res.json()).csrf_token);
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

async function errorOf(res) {
  let code = "http_error";
  let message = `${res.status} ${res.statusText}`;
  let fields = [];
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      fields = body.error.fields || [];
    }
  } catch (_) { /* not JSON */ }
  return new ApiError(res.status, code, message, fields);
}

// fetch() a path under /api/v1. Resolves with the parsed JSON body (null for 204); rejects with an
// ApiError (status 0 when the network failed). A 401 sends the browser to the sign-in page unless
// opts.noRedirect.
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
    let res;
    try {
      res = await fetch(path.startsWith("/") ? path : `${API}/${path}`, {
        method, headers, body: payload, credentials: "same-origin", signal: opts.signal,
      });
    } catch (err) {
      throw new ApiError(0, "network", "No connection to the server", []);
    }
    const date = res.headers.get("date");
    if (date) clockSkew = Date.parse(date) - Date.now();
    if (res.ok) {
      if (res.status === 204) return null;
      const type = res.headers.get("content-type") || "";
      return type.includes("json") ? res.json() : res;
    }
    const error = await errorOf(res);
    if (error.status === 403 && error.code === "csrf_failed" && attempt === 0) {
      await refreshCsrf();
      continue;
    }
    if (error.status === 401 && !opts.noRedirect) toLogin();
    throw error;
  }
  throw new ApiError(403, "csrf_failed", "Could not confirm the session; reload the page", []);
}

export function imageUrl(itemId, size) {
  return `${API}/items/${itemId}/image${size ? `?size=${size}` : ""}`;
}

// Small DOM helpers shared by the pages.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function toast(message, kind = "info", ms = 4000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = el("div", { class: `toast toast-${kind}`, text: message });
  box.append(item);
  setTimeout(() => item.remove(), ms);
}

export function wireSignOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      await api("POST", "auth/logout", undefined, { noRedirect: true });
    } catch (_) { /* signed out already */ }
    sessionStorage.removeItem(CSRF_KEY);
    location.assign("/login");
  });
}

export function fmtInt(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

export function fmtPct(x, digits = 0) {
  return x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)} %`;
}

export function fmtAgo(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86400).toFixed(1)} days ago`;
}

export function fmtDuration(hours) {
  if (hours === null || hours === undefined) return "–";
  if (hours < 1) return `${Math.max(1, Math.round(hours * 60))} min`;
  if (hours < 48) return `${hours.toFixed(1)} h`;
  return `${(hours / 24).toFixed(1)} days`;
}
