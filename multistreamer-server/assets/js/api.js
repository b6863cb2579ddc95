// The API client: JSON in and out, the CSRF token of the session, and one place that
// notices a session that ended.

let csrf = null;
let onSignedOut = () => {};

/** Sets (or clears, with null) the session's CSRF token. */
export function setCsrf(token) { csrf = token; }
export function hasSession() { return csrf !== null; }
/** Called when a request finds the session gone (401). */
export function whenSignedOut(fn) { onSignedOut = fn; }

export async function api(method, path, body) {
  return (await apiResponse(method, path, body)).data;
}

/** A page of a list: its items and the total the server reports (X-Total-Count). */
export async function apiPage(path) {
  const { data, headers } = await apiResponse("GET", path);
  return { items: data, total: Number(headers.get("X-Total-Count") ?? data.length) };
}

async function apiResponse(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (r.status === 401 && path !== "/api/login") { onSignedOut(); throw new Error("signed out"); }
  if (!r.ok) { const e = new Error(data?.error?.message || r.statusText); e.field = data?.error?.field; e.status = r.status; throw e; }
  return { data, headers: r.headers };
}
