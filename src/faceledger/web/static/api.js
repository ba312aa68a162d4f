// The faceledger API, same origin, cookie session. The CSRF token lives only in this
// module (re-read from GET /v1/session on load); the API key is never kept by the page.

let session = null;
let csrf = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

export function getSession() {
  return session;
}

export function can(permission) {
  return Boolean(session && session.permissions && session.permissions.includes(permission));
}

export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

function remember(s) {
  session = s ? { ...s } : null;
  csrf = s ? s.csrf : null;
  if (session) delete session.csrf;
}

export function forget() {
  remember(null);
}

function messageOf(body, status) {
  const err = body && body.error;
  if (err && err.message) return err.message;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  if (body && typeof body.detail === "string") return body.detail;
  return `the server answered HTTP ${status}`;
}

/**
 * Call the API. opts: method, json (a body to send as JSON), form (FormData),
 * auth (false: a 401 is the caller's business, not a session that ended).
 */
export async function api(path, opts = {}) {
  const method = opts.method || "GET";
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (opts.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.json);
  } else if (opts.form) {
    init.body = opts.form;
  }
  const signIn = method === "POST" && path === "/v1/session";
  if (method !== "GET" && method !== "HEAD" && !signIn && csrf) {
    init.headers["X-CSRF-Token"] = csrf;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "NetworkError", (e && e.message) || "no answer");
  }
  const text = res.status === 204 ? "" : await res.text().catch(() => "");
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, (body && body.error && body.error.type) || "HTTPError",
      messageOf(body, res.status));
    if (res.status === 401 && opts.auth !== false) {
      forget();
      onUnauthorized();
    }
    throw err;
  }
  return body;
}

/** Words for an error, as the console shows them. */
export function errorText(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the console: ${err && err.message}`;
  if (err.status === 0) return `The faceledger server did not answer (${err.message}).`;
  if (err.status === 401) return "Your session ended; sign in again.";
  if (err.status === 403) {
    const role = session ? session.role : "unknown";
    return `Your key (role ${role}) may not do this: ${err.message}`;
  }
  return err.message;
}

export async function loadSession() {
  try {
    remember(await api("/v1/session", { auth: false }));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) remember(null);
    else throw e;
  }
  return session;
}

export async function signIn(apiKey) {
  remember(await api("/v1/session", { method: "POST", json: { api_key: apiKey }, auth: false }));
  return session;
}

export async function signOut() {
  try {
    await api("/v1/session", { method: "DELETE", auth: false });
  } finally {
    forget();
  }
}

/** The API path of a subject: a name holding "/" is encoded twice. */
export function subjectPath(name) {
  const once = encodeURIComponent(name);
  return `/v1/subjects/${name.includes("/") ? encodeURIComponent(once) : once}`;
}

/** The console route of a subject. */
export function subjectRoute(name) {
  return `#/subjects/${encodeURIComponent(name)}`;
}
