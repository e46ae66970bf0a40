// The v1 API as the page uses it (docs/API.md): JSON calls, uploads, the NDJSON stream, and
// the error body {"error": {"code", "message"}} turned into an ApiError with a readable message.

const KEY_STORAGE = "conceptseg.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // HTTP status, 0 when the server could not be reached
    this.code = code; // the API's short snake_case code
  }
}

export function apiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
  } catch (e) { /* storage disabled: the key lives for this page only */ }
  sessionKey = key;
}

let sessionKey = apiKey();

export function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (sessionKey) h["Authorization"] = "Bearer " + sessionKey;
  return h;
}

async function errorOf(res) {
  let code = "http_" + res.status;
  let message = res.status + " " + (res.statusText || "error");
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch (e) { /* not JSON: keep the status line */ }
  if (res.status === 429) {
    const wait = res.headers.get("Retry-After");
    if (wait) message += " (retry in " + wait + " s)";
  }
  return new ApiError(res.status, code, message);
}

async function send(method, path, body, isForm) {
  let res;
  try {
    const init = { method, headers: headers(isForm || body === undefined ? {} :
      { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = isForm ? body : JSON.stringify(body);
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", "the server could not be reached (" + e.message + ")");
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function getJSON(path) {
  return (await send("GET", path)).json();
}

export async function postJSON(path, body) {
  return (await send("POST", path, body)).json();
}

export async function del(path) {
  return (await send("DELETE", path)).json();
}

export async function upload(path, field, file) {
  const form = new FormData();
  form.append(field, file, file.name || field);
  return (await send("POST", path, form, true)).json();
}

// POST a JSON body and call onLine(object) for every frame line as it arrives; resolves with
// the last line ({"done": true, ...}). An {"error": ...} line rejects with an ApiError.
export async function postStream(path, body, onLine, signal) {
  let res;
  try {
    res = await fetch(path, { method: "POST", signal, body: JSON.stringify(body),
      headers: headers({ "Content-Type": "application/json" }) });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", "the server could not be reached (" + e.message + ")");
  }
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = null;
  const handle = (line) => {
    if (!line.trim()) return;
    const obj = JSON.parse(line);
    if (obj.error) throw new ApiError(res.status, obj.error.code || "stream_error",
      obj.error.message || "the stream failed");
    last = obj;
    if (!obj.done) onLine(obj);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      handle(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  }
  handle(buffer + decoder.decode());
  if (!last || !last.done) {
    throw new ApiError(res.status, "stream_cut", "the stream ended before its last line");
  }
  return last;
}

// Frames are images fetched with the key header, shown through object URLs.
export async function fetchBlobURL(path) {
  const res = await send("GET", path);
  return URL.createObjectURL(await res.blob());
}
