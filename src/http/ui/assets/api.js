// The admin API client. The admin token lives in this module's memory only: never in a
// cookie, localStorage or sessionStorage, so it is gone when the tab closes or reloads.

let token = null;
const signedOutListeners = [];

/** An error answered by the router, in its own shape (`error.message`, `code`, `param`). */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the router answered ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.param = e.param || null;
    this.type = e.type || null;
  }

  /** A 404 from the router's fallback: the route does not exist on this version. */
  get missingRoute() {
    return this.status === 404 && /^no route for /.test(this.message);
  }
}

export function setToken(t) {
  token = t;
}

export function signedIn() {
  return token !== null;
}

/** Forgets the token and tells the page (sign-out, or the token stopped working). */
export function signOut(reason = "") {
  const was = token !== null;
  token = null;
  if (was) for (const f of signedOutListeners) f(reason);
}

export function onSignedOut(f) {
  signedOutListeners.push(f);
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token}`, ...extra };
}

/** Calls the admin API; answers the parsed JSON or throws an `ApiError`. */
export async function api(method, path, body, { signal } = {}) {
  if (token === null) throw new ApiError(401, { error: { message: "not signed in" } });
  const init = { method, headers: headers(), cache: "no-store", signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { error: { message: "the router cannot be reached" } });
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401) signOut("The admin token was refused; sign in again.");
    throw err;
  }
  return data;
}

/** Checks a token without keeping it: true when the router accepts it. */
export async function tryToken(candidate) {
  const resp = await fetch("/api/health-check/config", {
    headers: { Authorization: `Bearer ${candidate}` },
    cache: "no-store",
  });
  if (resp.status === 401) return false;
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  return true;
}

/**
 * Reads `/api/events` with fetch (EventSource cannot send the Authorization header) and
 * calls `onEvent(type, data)` per server-sent event until the stream ends or `signal`
 * aborts; `onOpen()` once subscribed. Resolves when the stream ends; throws `ApiError` on a
 * refused subscription.
 */
export async function readEvents(onEvent, signal, onOpen = () => {}) {
  const resp = await fetch("/api/events", {
    headers: headers({ Accept: "text/event-stream" }),
    cache: "no-store",
    signal,
  });
  if (!resp.ok) {
    const err = new ApiError(resp.status, await resp.json().catch(() => null));
    if (resp.status === 401) signOut("The admin token was refused; sign in again.");
    throw err;
  }
  onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    // An event is a block of lines ended by a blank line; keep the unfinished tail.
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onEvent);
    }
    // A stream that never sends a blank line must not grow the buffer without bound.
    if (buffer.length > 1_000_000) buffer = "";
  }
}

function dispatch(block, onEvent) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // comment: subscribed, keepalive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  onEvent(type, parsed);
}
