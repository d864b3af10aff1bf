// api.js — the only way the UI talks to the server: JSON requests, uploads with progress and
// SSE streams, all through the public HTTP API (openapi.json). It adds the API key when one is
// set, asks for one when the server answers 401, and reports whether the server is reachable.

const KEY_STORAGE = 'difftune.apiKey';

// An error answer of the API ({"error":{"code","message","param"}}), or a network failure
// (status 0, code "unreachable").
export class ApiError extends Error {
  constructor(status, error, requestId) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code || 'http_' + status;
    this.param = error?.param || null;
    this.requestId = requestId || error?.request_id || null;
  }
}

let authPrompt = null;        // async (message) => true when a key was entered
const reachListeners = new Set();
let reachable = true;

// Sets the function that asks the user for an API key (the app's dialog).
export function setAuthPrompt(fn) { authPrompt = fn; }

export function apiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
  } catch { /* private mode: the key lives as long as the page */ }
}

// Opens a browser session with the saved key (POST /session): the server sets an HttpOnly
// cookie that lets <img> tags, download links and other GETs that cannot send a header through.
// Fetches keep sending the key itself. Resolves true when a session is open (or none is needed).
export async function openSession() {
  const key = apiKey();
  if (!key) return true;
  try {
    const res = await fetch('/session', { method: 'POST', headers: authHeaders({ Accept: 'application/json' }) });
    return res.ok;
  } catch {
    return false;
  }
}

// Calls fn(true|false) whenever the server becomes reachable or unreachable.
export function onReachability(fn) { reachListeners.add(fn); return () => reachListeners.delete(fn); }

function setReachable(ok) {
  if (ok === reachable) return;
  reachable = ok;
  for (const fn of reachListeners) fn(ok);
}

function authHeaders(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: a proxy's page */ }
  return new ApiError(res.status, body?.error || { message: `${res.status} ${res.statusText}` },
                      res.headers.get('X-Request-Id'));
}

// One JSON request. body (an object) is sent as JSON; headers are added. Resolves to the parsed
// answer (null for an empty one), rejects with ApiError. A 401 asks for a key once and retries.
export async function request(method, path, { body, headers = {}, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const h = authHeaders({ Accept: 'application/json', ...headers });
    if (body !== undefined) h['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers: h, signal,
                                body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      setReachable(false);
      throw new ApiError(0, { code: 'unreachable', message: 'The difftune server cannot be reached.' });
    }
    setReachable(res.status !== 502 && res.status !== 504);
    if (res.status === 401 && attempt === 0 && authPrompt) {
      const err = await errorOf(res);
      if (await authPrompt(err.message)) continue;
      throw err;
    }
    if (!res.ok) throw await errorOf(res);
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

// Reads every page of a list endpoint (GET path?limit=&after=; the API allows 100 a page) into one
// array, up to max items.
export async function getAll(path, { limit = 100, max = 2000, signal } = {}) {
  const out = [];
  let after = '';
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}limit=${limit}${after ? '&after=' + encodeURIComponent(after) : ''}`, { signal });
    out.push(...page.data);
    if (!page.has_more || out.length >= max) return out;
    after = page.last_id;
  }
}

// Uploads a File as multipart/form-data (the part "file", and "name" when given), reporting
// onProgress(sentBytes, totalBytes). XMLHttpRequest because fetch reports no upload progress.
// Returns { promise, abort }.
export function upload(path, file, { name, onProgress } = {}) {
  let xhr = null;
  const send = (resolve, reject, attempt) => {
    xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    const h = authHeaders({ Accept: 'application/json' });
    for (const [k, v] of Object.entries(h)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onerror = () => {
      setReachable(false);
      reject(new ApiError(0, { code: 'unreachable', message: 'The upload was cut off: the server cannot be reached.' }));
    };
    xhr.onabort = () => reject(new DOMException('upload cancelled', 'AbortError'));
    xhr.onload = async () => {
      setReachable(true);
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* empty or not JSON */ }
      if (xhr.status === 401 && attempt === 0 && authPrompt &&
          await authPrompt(body?.error?.message || 'An API key is needed.')) {
        send(resolve, reject, 1);
        return;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body?.error || { message: `HTTP ${xhr.status}` },
                               xhr.getResponseHeader('X-Request-Id')));
    };
    const form = new FormData();
    if (name) form.append('name', name);
    form.append('file', file, file.name);
    xhr.send(form);
  };
  const promise = new Promise((resolve, reject) => send(resolve, reject, 0));
  return { promise, abort: () => xhr?.abort() };
}

// Follows a job's SSE stream (GET /jobs/{id}/events, text/event-stream) with fetch, so the API
// key travels in a header like on every other request. onEvent({id, type, time, data}) gets every
// event from the start (or after lastEventId); the stream reconnects with Last-Event-ID after a
// drop and stops after the job's terminal status. onState('live'|'reconnecting'|'ended') says
// where it stands. Returns a function that stops it.
export function followEvents(jobId, { onEvent, onState, lastEventId = 0 } = {}) {
  const ctrl = new AbortController();
  let last = lastEventId;
  let ended = false;
  let delay = 500;

  const dispatch = (frame) => {
    let id = null, type = 'message', data = '';
    for (const line of frame.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'id') id = Number(value);
      else if (field === 'event') type = value;
      else if (field === 'data') data += (data ? '\n' : '') + value;
    }
    if (id === null || !data) return;
    last = Math.max(last, id);
    let parsed;
    try { parsed = JSON.parse(data); } catch { return; }
    // The server sends the whole event row ({id, type, time, data}) as a frame's data: hand on
    // its data (what GET /jobs/{id}/events calls data) and its time.
    const row = parsed && typeof parsed === 'object' && parsed.type === type && 'data' in parsed;
    const payload = row ? parsed.data : parsed;
    if (type === 'status' && ['succeeded', 'failed', 'cancelled'].includes(payload?.status)) ended = true;
    onEvent?.({ id, type, time: row ? parsed.time : null, data: payload });
  };

  const run = async () => {
    while (!ctrl.signal.aborted && !ended) {
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (last) headers['Last-Event-ID'] = String(last);
        const res = await fetch(`/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal: ctrl.signal });
        if (res.status === 401 && authPrompt && await authPrompt((await errorOf(res)).message)) continue;
        if (!res.ok) throw await errorOf(res);
        setReachable(true);
        onState?.('live');
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            dispatch(buf.slice(0, cut));
            buf = buf.slice(cut + 2);
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
        if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
          onState?.('ended', e);
          return;
        }
        if (!(e instanceof ApiError)) setReachable(false);
      }
      if (ended || ctrl.signal.aborted) break;
      onState?.('reconnecting');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
    if (!ctrl.signal.aborted) onState?.('ended');
  };
  run();
  return () => ctrl.abort();
}

// A fresh Idempotency-Key (crypto.getRandomValues works on plain-HTTP origins too, unlike
// crypto.randomUUID).
export function newIdempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return 'ui-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
