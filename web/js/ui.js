// ui.js — small DOM helpers and formatters shared by the pages. No framework: h() builds
// elements, pages re-render the parts that change.

// Builds an element: h('a', {href: '#/jobs', class: 'x', onclick: fn}, 'text', child, ...).
// Attributes starting with "on" become listeners; null/false attributes and children are skipped;
// strings become text nodes (never HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replaces the children of el.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const TERMINAL = ['succeeded', 'failed', 'cancelled'];
export const STATUSES = ['queued', 'running', ...TERMINAL];

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}`, 'data-status': status }, status);
}

// A progress bar with "step / total" text; fraction in [0, 1].
export function progressBar(step, total, label) {
  const frac = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
  return h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total || 0,
                    'aria-valuenow': step || 0, 'aria-label': label || 'progress' },
    h('div', { class: 'progress-fill', style: `width:${(frac * 100).toFixed(1)}%` }),
    h('span', { class: 'progress-text' }, total ? `${fmtInt(step || 0)} / ${fmtInt(total)}` : '—'));
}

export function fmtInt(n) { return n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US'); }

// A number with 4 significant digits (losses, FID), '—' when absent.
export function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

// A count with a unit and two significant digits or its whole part: "950", "51 k", "1.2 M", "33 M".
export function fmtCount(n) {
  if (n === null || n === undefined) return '—';
  for (const [unit, size] of [['B', 1e9], ['M', 1e6], ['k', 1e3]]) {
    if (Math.abs(n) >= size) {
      const v = n / size;
      return `${v < 10 ? Number(v.toFixed(1)) : Math.round(v)} ${unit}`;
    }
  }
  return String(n);
}

// The parameter-efficient methods of a job spec's "peft".
export const PEFT_NAMES = { difffit: 'DiffFit', bitfit: 'BitFit', lora: 'LoRA' };

// A job's method with its peft: "diff_tuning + LoRA r8", "full + DiffFit", "pretrain".
export function methodLabel(job) {
  const peft = job?.spec?.peft;
  if (!peft) return job?.method ?? '—';
  const rank = peft === 'lora' && job.spec.peft_options?.rank ? ` r${job.spec.peft_options.rank}` : '';
  return `${job.method} + ${PEFT_NAMES[peft] || peft}${rank}`;
}

// A job's "parameters" as a phrase: "1.2 M of 33 M trainable (3.6%)", "all 33 M trainable";
// '' when the job has no counts (jobs created before they were recorded).
export function fmtTrainable(p) {
  if (!p || !p.total) return '';
  if (p.trainable === p.total) return `all ${fmtCount(p.total)} trainable`;
  if (!p.trainable) return `${fmtCount(p.total)}, none trainable`;
  const pct = (100 * p.trainable) / p.total;
  const shown = pct >= 10 ? pct.toFixed(0) : pct >= 1 ? pct.toFixed(1) : String(Number(pct.toPrecision(2)));
  return `${fmtCount(p.trainable)} of ${fmtCount(p.total)} trainable (${shown}%)`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// Unix seconds as local date and time.
export function fmtTime(t) {
  if (!t) return '—';
  return new Date(t * 1000).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

export function fmtAgo(t) {
  if (!t) return '—';
  return fmtDuration(Date.now() / 1000 - t) + ' ago';
}

// "ds_0123…cdef" — an id short enough for a table cell (the full id in the title).
export function shortId(id) {
  return id ? h('code', { title: id }, id.length > 14 ? `${id.slice(0, 7)}…${id.slice(-4)}` : id) : '—';
}

// An error box a user can read: the message, the code, and the request id to quote.
export function errorBox(err, title = 'Something went wrong') {
  return h('div', { class: 'error-box', role: 'alert' },
    h('strong', {}, title),
    h('p', {}, err?.message || String(err)),
    err?.code ? h('p', { class: 'muted' }, 'code ', h('code', {}, err.code),
                  err.requestId ? [' · request ', h('code', {}, err.requestId)] : null) : null);
}

// A short-lived notice at the bottom of the screen.
export function toast(message, kind = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

// A page section with a heading.
export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

// Shows an image full size in a modal dialog; arrow keys move through images (an array of
// {src, caption}), Escape closes.
export function lightbox(images, index) {
  let i = index;
  const img = h('img', { alt: '' });
  const caption = h('p', { class: 'caption' });
  const show = () => { img.src = images[i].src; img.alt = images[i].caption; caption.textContent = images[i].caption; };
  const step = (d) => { i = (i + d + images.length) % images.length; show(); };
  const dlg = h('dialog', { class: 'lightbox', 'aria-label': 'sample grid' },
    h('div', { class: 'lightbox-body' }, img, caption,
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => step(-1), 'aria-label': 'previous' }, '←'),
        h('button', { type: 'button', onclick: () => step(1), 'aria-label': 'next' }, '→'),
        h('button', { type: 'button', class: 'primary', onclick: () => dlg.close() }, 'Close'))));
  dlg.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft') step(-1);
    if (e.key === 'ArrowRight') step(1);
  });
  dlg.addEventListener('click', (e) => { if (e.target === dlg) dlg.close(); });
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  show();
  dlg.showModal();
}

// Runs fn every ms while the page shows el; stops once el leaves the document.
export function every(el, ms, fn) {
  const timer = setInterval(() => {
    if (!el.isConnected) clearInterval(timer);
    else fn();
  }, ms);
  return () => clearInterval(timer);
}
