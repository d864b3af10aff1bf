// compare.js — jobs side by side (#/compare?jobs=a,b,…): a picker of recent jobs whose
// selection lives in the hash query, then for two or more jobs their loss and evaluation curves
// overlaid (one series per job), a table of their figures and their latest sample grids.
// While a selected job still runs, its metrics are read again every 5 seconds.

import { get, getAll } from '../api.js';
import { h, fill, statusBadge, fmtInt, fmtNum, shortId, errorBox, section, TERMINAL } from '../ui.js';
import { lineChart, PALETTE } from '../chart.js';

const MAX_JOBS = 100;       // jobs offered in the picker
const REFRESH_MS = 5000;    // metrics refresh while a selected job runs

export function render(main, parts, query) {
  const ids = (query.get('jobs') || '').split(',').map((s) => s.trim()).filter(Boolean);
  const root = h('section', { 'data-page': 'compare' },
    h('h1', {}, 'Compare jobs'), h('p', { class: 'muted' }, 'Loading…'));
  main.append(root);
  const page = new ComparePage(root, [...new Set(ids)]);
  page.start();
  return () => page.stop();
}

// "pretrain job_614…0c17": how a job is named in legends and captions.
function jobLabel(job) {
  const id = job.id;
  return `${job.method} ${id.length > 14 ? `${id.slice(0, 7)}…${id.slice(-4)}` : id}`;
}

function lastOf(list) { return list && list.length ? list[list.length - 1] : null; }

class ComparePage {
  constructor(root, selected) {
    this.root = root;
    this.selected = selected;       // job ids, in the order they were picked
    this.jobs = new Map();          // id -> job (the picker's list and any selected job beyond it)
    this.datasets = new Map();      // id -> name
    this.data = new Map();          // id -> {job, metrics, latestSample}
    this.missing = new Map();       // id -> error of a selected job that cannot be read
    this.stopped = false;
    this.generation = 0;            // bumps on every selection change: late answers are dropped
    this.timer = null;
    this.charts = null;
  }

  async start() {
    let list;
    try {
      const [jobs, datasets] = await Promise.all([
        getAll('/jobs', { limit: MAX_JOBS, max: MAX_JOBS }),
        getAll('/datasets').catch(() => []),
      ]);
      list = jobs.slice(0, MAX_JOBS);
      for (const d of datasets) this.datasets.set(d.id, d.name);
    } catch (e) {
      if (!this.stopped) fill(this.root, h('h1', {}, 'Compare jobs'), errorBox(e, 'The jobs could not be listed'));
      return;
    }
    if (this.stopped) return;
    for (const j of list) this.jobs.set(j.id, j);
    // Selected jobs older than the list: read them one by one so they can be shown and unticked.
    await Promise.all(this.selected.filter((id) => !this.jobs.has(id)).map(async (id) => {
      try { this.jobs.set(id, await get(`/jobs/${encodeURIComponent(id)}`)); } catch (e) { this.missing.set(id, e); }
    }));
    if (this.stopped) return;
    this.selected = this.selected.filter((id) => this.jobs.has(id));
    this.build();
    this.compare();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  // ---- the picker ----------------------------------------------------------------------------

  build() {
    this.filterInput = h('input', { type: 'search', placeholder: 'Filter by id, method, dataset or status',
                                    'aria-label': 'filter the jobs', class: 'compare-filter',
                                    oninput: () => this.drawPicker() });
    this.pickerList = h('div', { class: 'compare-picker', role: 'group', 'aria-label': 'jobs to compare' });
    this.pickerCount = h('span', { class: 'muted' });
    this.pickerEmpty = h('p', { class: 'muted', hidden: true });
    this.notes = h('div', {});
    this.body = h('div', { class: 'compare-body' });
    fill(this.root,
      h('h1', {}, 'Compare jobs'),
      this.notes,
      section('Jobs',
        h('div', { class: 'spread compare-picker-head' }, this.pickerCount,
          h('button', { type: 'button', class: 'small', onclick: () => this.select([]) }, 'Clear')),
        this.filterInput, this.pickerList, this.pickerEmpty),
      this.body);
    fill(this.notes, [...this.missing].map(([id, e]) =>
      errorBox(e, e.status === 404 ? `No job ${id}` : `Job ${id} could not be read`)));
    this.drawPicker();
  }

  // Rows are made once and updated in place, so a ticked box keeps the keyboard focus.
  drawPicker() {
    const needle = this.filterInput.value.trim().toLowerCase();
    this.rows = this.rows || new Map();
    let shown = 0;
    for (const job of this.jobs.values()) {
      let row = this.rows.get(job.id);
      if (!row) {
        row = this.pickerRow(job);
        this.rows.set(job.id, row);
        this.pickerList.append(row.label);
      }
      const checked = this.selected.includes(job.id);
      row.input.checked = checked;
      row.label.classList.toggle('picked', checked);
      if (row.status !== job.status) {
        row.status = job.status;
        fill(row.badge, statusBadge(job.status));
      }
      const text = [job.id, job.method, job.status, this.datasets.get(job.spec?.dataset) || ''].join(' ').toLowerCase();
      row.label.hidden = !!needle && !checked && !text.includes(needle);
      if (!row.label.hidden) shown++;
    }
    this.pickerEmpty.hidden = shown > 0;
    this.pickerEmpty.textContent = this.jobs.size ? 'No job matches the filter.' : 'No jobs yet.';
    this.pickerCount.textContent = `${this.selected.length} selected · ${this.jobs.size} recent jobs`;
  }

  pickerRow(job) {
    const input = h('input', { type: 'checkbox', name: 'job', value: job.id,
                               onchange: (e) => this.toggle(job.id, e.currentTarget.checked) });
    const badge = h('span', {});
    const dataset = this.datasets.get(job.spec?.dataset) || job.spec?.dataset || '—';
    const label = h('label', { class: 'compare-pick' },
      input,
      h('code', { class: 'compare-id' }, job.id),
      h('span', { class: 'tag' }, job.method),
      h('span', { class: 'compare-ds' }, dataset),
      badge);
    return { label, input, badge, status: null };
  }

  toggle(id, on) {
    const next = this.selected.filter((x) => x !== id);
    if (on) next.push(id);
    this.select(next);
  }

  // Changes the selection: the hash query follows (without a page reload) and the comparison
  // is built again.
  select(ids) {
    this.selected = ids;
    const hash = ids.length ? `#/compare?jobs=${ids.map(encodeURIComponent).join(',')}` : '#/compare';
    history.replaceState(null, '', hash);
    this.drawPicker();
    this.compare();
  }

  // ---- the comparison ------------------------------------------------------------------------

  compare() {
    clearTimeout(this.timer);
    const gen = ++this.generation;
    this.charts = null;
    this.sampleKey = null;
    if (this.selected.length < 2) {
      fill(this.body, h('p', { class: 'notice compare-notice' },
        this.selected.length ? 'One job selected: pick at least two jobs to compare.'
                             : 'Pick at least two jobs to compare.'));
      return;
    }
    fill(this.body, h('p', { class: 'muted' }, 'Loading…'));
    this.refresh(gen);
  }

  async refresh(gen) {
    const ids = [...this.selected];
    const results = await Promise.all(ids.map(async (id) => {
      const old = this.data.get(id);
      // A finished job's figures no longer change: read it once.
      if (old?.complete) return [id, old, null];
      try {
        const enc = encodeURIComponent(id);
        const [job, metrics, samples] = await Promise.all([
          get(`/jobs/${enc}`), get(`/jobs/${enc}/metrics`), get(`/jobs/${enc}/samples`)]);
        let latest = null;
        for (const s of samples.data || []) if (!latest || (s.step ?? -1) >= (latest.step ?? -1)) latest = s;
        return [id, { job, series: metrics.series || {}, latestSample: latest, complete: TERMINAL.includes(job.status) }, null];
      } catch (e) {
        return [id, old || null, e];
      }
    }));
    if (this.stopped || gen !== this.generation) return;
    const errors = [];
    for (const [id, d, e] of results) {
      if (d) {
        this.data.set(id, d);
        this.jobs.set(id, d.job);
      }
      if (e) errors.push([id, e]);
    }
    this.draw(ids, errors);
    this.drawPicker();
    const running = ids.some((id) => !TERMINAL.includes(this.data.get(id)?.job.status));
    if (running) this.timer = setTimeout(() => this.refresh(gen), REFRESH_MS);
  }

  draw(ids, errors) {
    const rows = ids.map((id, i) => ({ id, color: PALETTE[i % PALETTE.length], ...this.data.get(id) }))
                    .filter((r) => r.job); // one colour per job in every chart
    const hasFd = rows.some((r) => (r.series.fd_classifier || []).length);
    if (!this.charts || (hasFd && !this.charts.fd_classifier)) this.buildCharts(hasFd);
    fill(this.errorsEl, errors.map(([id, e]) => errorBox(e, `Job ${id} could not be read`)));

    const toPoints = (list) => (list || []).filter((p) => typeof p.value === 'number').map((p) => [p.step, p.value]);
    const seriesOf = (name) => rows.map((r) => ({ label: jobLabel(r.job), color: r.color, points: toPoints(r.series[name]) }));
    this.charts.loss.update(seriesOf('loss'));
    for (const name of ['fid', 'fd_classifier']) {
      if (!this.charts[name]) continue;
      this.charts[name].update(seriesOf(name));
      // Say which jobs have no values, with the reason of their latest unavailable point.
      const notes = rows.map((r) => {
        const list = r.series[name] || [];
        const latest = lastOf(list);
        if (!latest || typeof latest.value === 'number') return null;
        return h('li', {}, h('strong', {}, jobLabel(r.job)), ': unavailable',
                 latest.reason ? ` — ${latest.reason}` : '');
      }).filter(Boolean);
      fill(this.notesEls[name], notes.length ? h('ul', { class: 'chart-note muted' }, notes) : null);
      const empty = this.chartBoxes[name].querySelector('.chart-empty');
      if (empty) empty.textContent = notes.length ? 'No values to plot.' : 'No points yet.';
    }
    this.drawTable(rows, hasFd);
    this.drawSamples(rows);
  }

  buildCharts(hasFd) {
    const box = () => h('div', {});
    const boxes = { loss: box(), fid: box(), fd_classifier: hasFd ? box() : null };
    this.chartBoxes = boxes;
    this.notesEls = { fid: h('div', {}), fd_classifier: h('div', {}) };
    this.errorsEl = h('div', {});
    this.tableEl = h('div', { class: 'table-wrap' });
    this.samplesEl = h('div', { class: 'side-by-side' });
    fill(this.body,
      this.errorsEl,
      h('div', { class: 'grid compare-charts' },
        h('section', { class: 'card' }, boxes.loss),
        h('section', { class: 'card' }, boxes.fid, this.notesEls.fid),
        hasFd ? h('section', { class: 'card' }, boxes.fd_classifier, this.notesEls.fd_classifier) : null),
      section('Figures', this.tableEl),
      section('Latest samples', this.samplesEl));
    this.charts = {
      loss: lineChart(boxes.loss, { title: 'Loss', xLabel: 'step', yLabel: 'loss', series: [] }),
      fid: lineChart(boxes.fid, { title: 'FID', xLabel: 'step', yLabel: 'FID', series: [] }),
      fd_classifier: hasFd ? lineChart(boxes.fd_classifier,
        { title: 'fd_classifier', xLabel: 'step', yLabel: 'distance', series: [] }) : null,
    };
    this.sampleKey = null;
  }

  drawTable(rows, hasFd) {
    const evalCell = (list) => {
      const ok = (list || []).filter((p) => typeof p.value === 'number');
      const latest = lastOf(list || []);
      if (ok.length) {
        const v = lastOf(ok);
        return h('td', { class: 'num', title: `step ${fmtInt(v.step)}` }, fmtNum(v.value));
      }
      if (latest) return h('td', { class: 'num muted', title: latest.reason || '' }, 'unavailable');
      return h('td', { class: 'num muted' }, '—');
    };
    fill(this.tableEl, h('table', { class: 'compare-table' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Job'), h('th', { class: 'hide-narrow' }, 'Method'), h('th', { class: 'hide-narrow' }, 'Dataset'),
        h('th', {}, 'Status'),
        h('th', { class: 'num' }, 'Steps'), h('th', { class: 'num' }, 'Final loss'),
        h('th', { class: 'num' }, 'Latest FID'), hasFd ? h('th', { class: 'num' }, 'fd_classifier') : null)),
      h('tbody', {}, rows.map((r) => {
        const job = r.job;
        const total = job.spec?.hyperparameters?.steps;
        const done = job.status === 'succeeded' ? total : job.progress?.step;
        const lastLoss = lastOf((r.series.loss || []).filter((p) => typeof p.value === 'number'));
        return h('tr', { 'data-job': job.id },
          h('td', { class: 'compare-job' }, h('span', { class: 'swatch', style: `background:${r.color}`, 'aria-hidden': 'true' }),
            h('a', { href: `#/jobs/${encodeURIComponent(job.id)}` }, shortId(job.id))),
          h('td', { class: 'hide-narrow' }, h('span', { class: 'tag' }, job.method)),
          h('td', { class: 'hide-narrow' }, this.datasets.get(job.spec?.dataset) || shortId(job.spec?.dataset)),
          h('td', {}, statusBadge(job.status)),
          h('td', { class: 'num' }, fmtInt(total),
            done != null && done !== total ? h('div', { class: 'muted small-text' }, `at ${fmtInt(done)}`) : null),
          h('td', { class: 'num', title: lastLoss ? `step ${fmtInt(lastLoss.step)}` : null }, fmtNum(lastLoss?.value)),
          evalCell(r.series.fid),
          hasFd ? evalCell(r.series.fd_classifier) : null);
      }))));
  }

  drawSamples(rows) {
    // Redraw only when a latest grid changed, so the images do not flicker on every refresh.
    const key = rows.map((r) => `${r.id}:${r.latestSample?.name || ''}`).join('|');
    if (key === this.sampleKey) return;
    this.sampleKey = key;
    fill(this.samplesEl, rows.map((r) => h('figure', { class: 'compare-sample', 'data-job': r.id },
      r.latestSample
        ? h('img', { src: r.latestSample.url, alt: `latest sample grid of ${jobLabel(r.job)}`, loading: 'lazy' })
        : h('div', { class: 'compare-nosample muted' }, 'No sample grid yet.'),
      h('figcaption', {}, h('span', { class: 'swatch', style: `background:${r.color}`, 'aria-hidden': 'true' }),
        h('strong', {}, jobLabel(r.job)), r.latestSample ? ` · step ${fmtInt(r.latestSample.step)}` : ''))));
  }
}
