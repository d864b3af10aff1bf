// pages/jobs.js — the jobs list (#/jobs, #/jobs?status=S): status, method (with its peft and
// the trainable parameter count), dataset, base model, progress with ETA, latest loss and FID, refreshed every 2 seconds so new jobs and status
// changes appear by themselves. Rows can be picked for the compare page.

import { get, getAll } from '../api.js';
import {
  h, fill, errorBox, statusBadge, progressBar, fmtNum, fmtDuration, fmtAgo, shortId, methodLabel, fmtTrainable,
  STATUSES, TERMINAL, every,
} from '../ui.js';

const PAGE = 50;
const REFRESH_MS = 2000;

export function render(main, _parts, query) {
  const status = STATUSES.includes(query.get('status')) ? query.get('status') : '';
  const picked = new Set();
  const state = { jobs: [], hasMore: false, lastId: null, extra: [], names: new Map(), finalLoss: new Map() };

  const compareBtn = h('a', { class: 'button', href: '#/compare', 'aria-disabled': 'true' }, 'Compare selected');
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {},
      h('th', { class: 'hide-narrow' }, h('span', { class: 'muted' }, 'Pick')), h('th', {}, 'Job'), h('th', {}, 'Status'),
      h('th', { class: 'hide-narrow' }, 'Method'), h('th', { class: 'hide-narrow' }, 'Dataset'), h('th', { class: 'hide-narrow' }, 'Base model'),
      h('th', {}, 'Progress'), h('th', { class: 'num' }, 'Loss'), h('th', { class: 'num' }, 'FID'),
      h('th', { class: 'hide-narrow' }, 'Created'))),
    body));
  const more = h('button', { type: 'button', hidden: true, onclick: () => loadMore() }, 'Load more');
  const message = h('div');
  const page = h('section', { 'data-page': 'jobs' },
    h('div', { class: 'spread' }, h('h1', {}, 'Jobs'),
      h('div', { class: 'row' }, compareBtn, h('a', { class: 'button primary', href: '#/new' }, 'New job'))),
    h('nav', { class: 'filters', 'aria-label': 'Filter by status' },
      ['', ...STATUSES].map((s) => h('a', { href: s ? `#/jobs?status=${s}` : '#/jobs',
                                            'aria-current': s === status ? 'true' : null }, s || 'all'))),
    message, table, more);
  main.append(page);
  fill(message, h('p', {}, 'Loading…'));

  const listPath = (after) => `/jobs?limit=${PAGE}${status ? `&status=${status}` : ''}${after ? `&after=${after}` : ''}`;

  // Display names of datasets and models, fetched once per page view.
  const loadNames = async () => {
    const [ds, ms] = await Promise.all([getAll('/datasets'), getAll('/models')]);
    for (const x of [...ds, ...ms]) state.names.set(x.id, x.name);
  };

  // The last loss of a finished job (its progress no longer carries one): read once, kept.
  const fetchFinalLoss = async (job) => {
    if (state.finalLoss.has(job.id)) return;
    state.finalLoss.set(job.id, null);
    try {
      const m = await get(`/jobs/${job.id}/metrics`);
      const s = m.series?.loss || [];
      state.finalLoss.set(job.id, s.length ? s[s.length - 1].value : null);
      draw();
    } catch { /* shown as — */ }
  };

  const refresh = async () => {
    try {
      const first = await get(listPath());
      state.jobs = first.data;
      if (!state.extra.length) {
        state.hasMore = first.has_more;
        state.lastId = first.last_id;
      }
      fill(message);
      draw();
    } catch (e) {
      fill(message, errorBox(e, 'The jobs could not be listed'));
    }
  };

  const loadMore = async () => {
    try {
      const next = await get(listPath(state.lastId));
      state.extra.push(...next.data);
      state.hasMore = next.has_more;
      state.lastId = next.last_id;
      draw();
    } catch (e) {
      fill(message, errorBox(e, 'More jobs could not be listed'));
    }
  };

  const row = (job) => {
    const p = job.progress || {};
    const running = job.status === 'running';
    const loss = running ? p.loss : state.finalLoss.get(job.id);
    if (TERMINAL.includes(job.status) && job.started_at) fetchFinalLoss(job);
    const ev = job.evaluation || {};
    const fd = ev.fid || ev.fd_classifier;
    const check = h('input', { type: 'checkbox', 'aria-label': `pick ${job.id} to compare`, checked: picked.has(job.id),
      onclick: (e) => e.stopPropagation(),
      onchange: (e) => { if (e.target.checked) picked.add(job.id); else picked.delete(job.id); syncCompare(); } });
    const eta = running && p.eta_seconds !== undefined ? `ETA ${fmtDuration(p.eta_seconds)}` : '';
    return h('tr', { class: 'clickable', 'data-job': job.id, onclick: () => { location.hash = `#/jobs/${job.id}`; } },
      h('td', { class: 'hide-narrow' }, check),
      h('td', {}, h('a', { href: `#/jobs/${job.id}`, onclick: (e) => e.stopPropagation() }, shortId(job.id))),
      h('td', {}, statusBadge(job.status), job.cancel_requested && !TERMINAL.includes(job.status)
        ? h('span', { class: 'muted' }, ' cancelling') : null),
      h('td', { class: 'hide-narrow' }, h('span', { class: 'tag', 'data-field': 'method' }, methodLabel(job)),
        job.parameters ? h('div', { class: 'muted small', 'data-field': 'parameters' }, fmtTrainable(job.parameters)) : null),
      h('td', { class: 'hide-narrow' }, state.names.get(job.spec?.dataset) || shortId(job.spec?.dataset)),
      h('td', { class: 'hide-narrow' }, job.spec?.base_model ? state.names.get(job.spec.base_model) || shortId(job.spec.base_model) : h('span', { class: 'muted' }, 'none')),
      h('td', {}, progressBar(p.step, p.total_steps || job.spec?.hyperparameters?.steps, `${job.id} progress`),
        h('div', { class: 'muted small' }, [running ? p.phase : null, eta].filter(Boolean).join(' · '))),
      h('td', { class: 'num' }, fmtNum(loss)),
      h('td', { class: 'num', title: fd && !fd.available ? fd.reason || 'unavailable' : null },
        fd ? (fd.available === false ? 'n/a' : fmtNum(fd.value)) : '—'),
      h('td', { class: 'hide-narrow', title: new Date(job.created_at * 1000).toLocaleString() }, fmtAgo(job.created_at)));
  };

  const draw = () => {
    const seen = new Set();
    const jobs = [...state.jobs, ...state.extra].filter((j) => !seen.has(j.id) && seen.add(j.id));
    const active = document.activeElement;
    const focused = active?.closest?.('tr[data-job]')?.dataset.job;
    const which = active?.tagName === 'INPUT' ? 'input' : 'a';
    fill(body, jobs.length ? jobs.map(row)
      : h('tr', {}, h('td', { colspan: 10, class: 'muted' },
          status ? `No ${status} jobs.` : 'No jobs yet. Upload a dataset, then create a job.')));
    if (focused) body.querySelector(`tr[data-job="${focused}"] ${which}`)?.focus();
    more.hidden = !state.hasMore;
  };

  const syncCompare = () => {
    compareBtn.href = `#/compare?jobs=${[...picked].join(',')}`;
    compareBtn.setAttribute('aria-disabled', picked.size >= 2 ? 'false' : 'true');
    compareBtn.textContent = picked.size ? `Compare selected (${picked.size})` : 'Compare selected';
  };

  loadNames().then(draw).catch(() => { /* ids are shown instead */ });
  refresh();
  return every(page, REFRESH_MS, refresh);
}
