// job.js — one job, live (#/jobs/<id>): the header from GET /jobs/<id>, then everything else
// (progress, loss and evaluation charts, sample grids, checkpoints, log tail) built from the
// job's event stream, which replays every event from the start and then follows the job.
// A replay can deliver thousands of events at once, so events only update plain state and the
// DOM is redrawn at most about four times a second.

import { get, post, del, followEvents } from '../api.js';
import {
  h, fill, statusBadge, progressBar, fmtInt, fmtNum, fmtBytes, fmtDuration, fmtTime, shortId,
  errorBox, toast, section, lightbox, methodLabel, fmtTrainable, TERMINAL,
} from '../ui.js';
import { lineChart } from '../chart.js';

const LOG_LINES = 200;      // log events kept in the tail
const REDRAW_MS = 250;      // the shortest time between two redraws
const T_STEPS = 1000;       // diffusion timesteps: loss_by_timestep buckets split [0, T)

export function render(main, parts) {
  const id = parts[0] || '';
  const root = h('section', { 'data-page': 'job', 'data-job': id },
    h('h1', {}, 'Job ', h('code', {}, id)), h('p', { class: 'muted' }, 'Loading…'));
  main.append(root);

  const page = new JobPage(root, id);
  page.start();
  return () => page.stop();
}

// A series of [step, value] points in step order. A resumed attempt repeats steps from its
// checkpoint on: a point at or before the last step drops the points it replaces.
function pushPoint(points, x, y) {
  while (points.length && points[points.length - 1][0] >= x) points.pop();
  points.push([x, y]);
}

// Why retention keeps a checkpoint, as tags: "newest", "best" (best_fid, best_fd_classifier)
// and "pinned"; none when the server deletes it at its next prune.
function keptTags(reasons) {
  return (reasons || []).map((r) => {
    const label = r.startsWith('best_') ? 'best' : r;
    const title = r.startsWith('best_') ? `lowest ${r.slice(5)} among the evaluated checkpoints`
      : r === 'newest' ? 'among the newest checkpoint.keep' : 'pinned: never deleted by retention';
    return [' ', h('span', { class: 'tag', 'data-kept': label, title }, label)];
  });
}

// What a job's peft trains: "rank 8, alpha 16 on qkv, proj, fc1, fc2" for LoRA, the DiffFit
// blocks, BitFit's biases.
function adapterText(spec) {
  const o = spec.peft_options || {};
  if (spec.peft === 'lora') {
    return `LoRA rank ${o.rank}, alpha ${o.alpha} on ${(o.targets || []).join(', ')}; base weights frozen`;
  }
  if (spec.peft === 'difffit') {
    return `DiffFit: gammas on the first ${o.difffit_blocks ?? 'half of the'} blocks, biases and the label table`;
  }
  if (spec.peft === 'bitfit') return 'BitFit: biases and the label table';
  return spec.peft;
}

// "0–99" for bucket i of n over T timesteps.
function bucketRange(i, n) {
  const lo = Math.round((i * T_STEPS) / n);
  const hi = Math.round(((i + 1) * T_STEPS) / n) - 1;
  return `${lo}–${hi}`;
}

class JobPage {
  constructor(root, id) {
    this.root = root;
    this.id = id;
    this.stopped = false;
    this.stopStream = null;
    this.job = null;
    this.lastEventId = 0;
    this.streamState = '';
    this.lastRates = null;                       // the latest progress report with rates
    // State the events build; flush() draws it.
    this.progress = null;
    this.loss = { loss: [], loss_downstream: [], loss_bank: [] };
    this.byTimestep = null;                      // the latest loss_by_timestep metric
    this.evals = { fid: [], fd_classifier: [] }; // [{step, value, available, reason}]
    this.samples = [];                           // [{name, step, images, version}]
    this.sampleNodes = new Map();                // name -> img
    this.logs = [];                              // [{level, message, time, drawn}]
    this.logDropped = 0;
    this.dirty = new Set();
    this.timer = null;
    this.lastFlush = 0;
    this.checkpointsBusy = false;
    this.checkpointsAgain = false;
    this.jobRefreshTimer = null;
    this.names = { dataset: null, model: null };
  }

  async start() {
    try {
      this.job = await get(`/jobs/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (this.stopped) return;
      fill(this.root, h('h1', {}, 'Job ', h('code', {}, this.id)),
        e.status === 404 ? errorBox(e, `No job ${this.id}`) : errorBox(e, 'The job could not be loaded'),
        h('p', {}, h('a', { href: '#/jobs' }, '← Back to the jobs')));
      return;
    }
    if (this.stopped) return;
    this.progress = this.job.progress;
    this.build();
    this.loadNames();
    this.refreshCheckpoints();
    this.follow();
  }

  stop() {
    this.stopped = true;
    this.stopStream?.();
    clearTimeout(this.timer);
    clearTimeout(this.jobRefreshTimer);
  }

  // ---- the page's skeleton -------------------------------------------------------------------

  build() {
    const id = this.id;
    this.el = {
      status: h('span', { 'data-field': 'status' }),
      stream: h('span', { class: 'stream-state muted', 'aria-live': 'polite' }),
      actions: h('div', { class: 'row job-actions' }),
      error: h('div', { 'data-field': 'error', class: 'error-box job-error', role: 'alert', hidden: true }),
      facts: h('dl', { class: 'facts' }),
      phase: h('span', { 'data-field': 'phase' }),
      progress: h('div', { 'data-field': 'progress' }),
      rate: h('dd', { 'data-field': 'images_per_second' }),
      etaLabel: h('dt', {}, 'ETA'),
      eta: h('dd', { 'data-field': 'eta' }),
      lossNow: h('dd', {}),
      lr: h('dd', {}),
      samples: h('div', { class: 'samples' }),
      samplesEmpty: h('p', { class: 'muted' }, 'No sample grids yet.'),
      checkpoints: h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading…')),
      checkpointMsg: h('div', {}),
      log: h('pre', { class: 'log', tabindex: 0, 'aria-label': 'job log' }),
      logNote: h('p', { class: 'muted job-log-note', hidden: true }),
    };
    const chartBox = (key) => h('div', { 'data-chart-box': key });
    this.chartEls = {
      loss: chartBox('loss'), byTimestep: chartBox('by-timestep'), fid: chartBox('fid'),
      fd_classifier: chartBox('fd_classifier'),
    };
    this.evalNotes = { fid: h('p', { class: 'muted chart-note', hidden: true }),
                       fd_classifier: h('p', { class: 'muted chart-note', hidden: true }) };
    this.fdCard = h('section', { class: 'card', hidden: true }, this.chartEls.fd_classifier, this.evalNotes.fd_classifier);

    fill(this.root,
      h('div', { class: 'spread job-title' },
        h('h1', {}, 'Job ', h('code', { class: 'job-id' }, id), this.el.status),
        this.el.stream),
      this.el.actions,
      this.el.error,
      h('div', { class: 'grid' },
        section('Overview', this.el.facts),
        section('Progress',
          h('p', { class: 'job-phase' }, 'Phase: ', h('strong', {}, this.el.phase)),
          this.el.progress,
          h('dl', { class: 'facts job-rates' },
            h('dt', {}, 'Images/s'), this.el.rate,
            this.el.etaLabel, this.el.eta,
            h('dt', {}, 'Loss'), this.el.lossNow,
            h('dt', {}, 'Learning rate'), this.el.lr))),
      h('div', { class: 'grid job-charts' },
        h('section', { class: 'card' }, this.chartEls.loss),
        h('section', { class: 'card' }, this.chartEls.byTimestep),
        h('section', { class: 'card' }, this.chartEls.fid, this.evalNotes.fid),
        this.fdCard),
      section('Samples', this.el.samplesEmpty, this.el.samples),
      section('Checkpoints', this.el.checkpointMsg, this.el.checkpoints),
      section('Log', this.el.logNote, this.el.log));

    this.charts = {
      loss: lineChart(this.chartEls.loss, { title: 'Loss', xLabel: 'step', yLabel: 'loss', series: [] }),
      byTimestep: lineChart(this.chartEls.byTimestep, {
        title: 'Loss by timestep', xLabel: 'timesteps t', yLabel: 'loss', series: [],
        // Set per redraw: the bucket count comes with the metric.
        xFormat: (x) => (Number.isInteger(x) && this.byTimestep ? bucketRange(x, this.bucketCount()) : ''),
      }),
      fid: lineChart(this.chartEls.fid, { title: 'FID', xLabel: 'step', yLabel: 'FID', series: [] }),
      fd_classifier: null, // made with the first fd_classifier point
    };
    this.dirty = new Set(['header', 'progress', 'loss', 'byTimestep', 'evals', 'samples', 'log']);
    this.flush();
  }

  bucketCount() {
    const m = this.byTimestep;
    return Math.max(m?.downstream?.length || 0, m?.bank?.length || 0, 1);
  }

  // Fetches the names of the dataset and the base model for the header (ids alone otherwise).
  async loadNames() {
    const spec = this.job.spec || {};
    const one = async (key, path) => {
      try {
        const obj = await get(path);
        if (this.stopped) return;
        this.names[key] = obj.name || null;
        this.mark('header');
      } catch { /* deleted or unreadable: the id stays */ }
    };
    if (spec.dataset) one('dataset', `/datasets/${encodeURIComponent(spec.dataset)}`);
    if (spec.base_model) one('model', `/models/${encodeURIComponent(spec.base_model)}`);
  }

  // ---- the event stream ----------------------------------------------------------------------

  follow() {
    this.stopStream?.();
    this.stopStream = followEvents(this.id, {
      lastEventId: this.lastEventId,
      onEvent: (e) => this.onEvent(e),
      onState: (state, err) => {
        this.streamState = state;
        this.streamError = err || null;
        this.mark('stream');
        // The stream ends after the terminal status: read the job once more for finished_at,
        // the error and the final evaluation.
        if (state === 'ended') this.refreshJob(0);
      },
    });
  }

  onEvent({ id, type, time, data }) {
    if (this.stopped || !data) return;
    this.lastEventId = Math.max(this.lastEventId, id);
    switch (type) {
      case 'status': {
        const job = this.job;
        job.status = data.status;
        if (data.attempt !== undefined) job.attempt = data.attempt;
        if (data.device) job.device = data.device;
        if (data.status === 'failed') job.error = data.error || job.error;
        else if (data.status === 'queued' || data.status === 'running') job.error = null;
        if (data.cancel_requested) job.cancel_requested = true;
        this.mark('header', 'progress');
        this.refreshJob(400); // started_at, finished_at
        break;
      }
      case 'progress':
        this.progress = data;
        if (['training', 'knowledge_bank', 'encoding'].includes(data.phase)) this.lastRates = data;
        for (const key of ['loss', 'loss_downstream', 'loss_bank'])
          if (typeof data[key] === 'number' && data.phase === 'training') pushPoint(this.loss[key], data.step, data[key]);
        this.mark('progress', 'loss');
        break;
      case 'metric':
        if (data.name === 'loss_by_timestep') {
          this.byTimestep = data;
          this.mark('byTimestep');
        } else if (data.name === 'fid' || data.name === 'fd_classifier') {
          const list = this.evals[data.name];
          while (list.length && list[list.length - 1].step >= (data.step || 0)) list.pop();
          list.push({ step: data.step || 0, value: data.value ?? null,
                      available: data.available !== false && data.value != null, reason: data.reason || '' });
          this.mark('evals');
        }
        break;
      case 'sample': {
        const old = this.samples.find((s) => s.name === data.name);
        if (old) Object.assign(old, data, { version: id });
        else this.samples.push({ ...data, version: id });
        this.mark('samples');
        break;
      }
      case 'checkpoint':
        this.mark('checkpoints');
        break;
      case 'log':
        this.addLog(data.level || 'info', data.message || '', time);
        break;
      case 'error':
        this.addLog('error', `${data.code || 'error'}: ${data.message || ''}`, time);
        break;
      default:
        break;
    }
  }

  addLog(level, message, time) {
    this.logs.push({ level, message, time, drawn: false });
    if (this.logs.length > LOG_LINES) {
      this.logDropped += this.logs.length - LOG_LINES;
      this.logs.splice(0, this.logs.length - LOG_LINES);
    }
    this.mark('log');
  }

  // Re-reads the job (debounced): status events carry no times.
  refreshJob(delay) {
    clearTimeout(this.jobRefreshTimer);
    this.jobRefreshTimer = setTimeout(async () => {
      try {
        const job = await get(`/jobs/${encodeURIComponent(this.id)}`);
        if (this.stopped) return;
        this.job = job;
        if (!this.progress) this.progress = job.progress;
        this.mark('header', 'progress', 'evals');
      } catch { /* the stream says how things stand; the next status event tries again */ }
    }, delay);
  }

  // ---- redrawing -----------------------------------------------------------------------------

  mark(...what) {
    for (const w of what) this.dirty.add(w);
    if (this.timer || this.stopped) return;
    const wait = Math.max(0, REDRAW_MS - (performance.now() - this.lastFlush));
    this.timer = setTimeout(() => requestAnimationFrame(() => { this.timer = null; this.flush(); }), wait);
  }

  flush() {
    if (this.stopped) return;
    this.lastFlush = performance.now();
    const d = this.dirty;
    this.dirty = new Set();
    if (d.has('header')) this.drawHeader();
    if (d.has('header') || d.has('stream')) this.drawStream();
    if (d.has('header') || d.has('progress')) this.drawProgress();
    if (d.has('loss')) this.drawLoss();
    if (d.has('byTimestep')) this.drawByTimestep();
    if (d.has('evals')) this.drawEvals();
    if (d.has('samples')) this.drawSamples();
    if (d.has('checkpoints')) this.refreshCheckpoints();
    if (d.has('log') || d.has('header')) this.drawLog();
  }

  drawHeader() {
    const job = this.job;
    const spec = job.spec || {};
    const hp = spec.hyperparameters || {};
    fill(this.el.status, statusBadge(job.status));

    // Actions: cancel while it can still run, retry once it stopped without success.
    const canCancel = job.status === 'queued' || job.status === 'running';
    const canRetry = job.status === 'failed' || job.status === 'cancelled';
    fill(this.el.actions,
      canCancel ? h('button', { type: 'button', class: 'danger', 'data-action': 'cancel',
                                disabled: job.cancel_requested || null, onclick: (e) => this.cancel(e.currentTarget) },
                    job.cancel_requested ? 'Cancelling…' : 'Cancel') : null,
      canRetry ? h('button', { type: 'button', class: 'primary', 'data-action': 'retry',
                               onclick: (e) => this.retry(e.currentTarget) }, 'Retry') : null,
      h('a', { class: 'button', href: `#/compare?jobs=${encodeURIComponent(this.id)}` }, 'Compare with…'),
      h('a', { class: 'button', href: `#/new?from=${encodeURIComponent(this.id)}` }, 'New job from this'));

    const link = (href, name, id) => (id
      ? h('a', { href, title: id }, name || id, name ? [' ', h('span', { class: 'muted' }, '(', shortId(id), ')')] : null)
      : null);
    const settings = [
      ['steps', fmtInt(hp.steps)], ['batch', fmtInt(hp.batch_size)], ['lr', fmtNum(hp.learning_rate)],
      ['EMA', hp.ema_decay], ['seed', hp.seed],
    ].filter(([, v]) => v !== undefined && v !== null);
    const facts = [
      ['Method', h('span', { class: 'tag', 'data-field': 'method' }, methodLabel(job))],
      ['Dataset', link('#/datasets', this.names.dataset, spec.dataset) || '—'],
      ['Base model', link('#/models', this.names.model, spec.base_model) ||
                     h('span', { class: 'muted' }, job.method === 'pretrain' ? 'none (from scratch)' : '—')],
      ['Device', job.device || h('span', { class: 'muted' }, spec.device ? `${spec.device} (not started)` : '—')],
      ['Attempt', `${job.attempt} / ${job.max_attempts}`],
      ['Created', fmtTime(job.created_at)],
      ['Started', fmtTime(job.started_at)],
      ['Finished', fmtTime(job.finished_at)],
    ];
    if (job.parameters) facts.splice(1, 0, ['Parameters', h('span', { 'data-field': 'parameters' }, fmtTrainable(job.parameters))]);
    if (spec.peft) facts.splice(1, 0, ['Adapter', h('span', { 'data-field': 'adapter' }, adapterText(spec))]);
    // A forgetting curve trains nothing: its hyperparameters are unused defaults.
    if (job.method !== 'forgetting_curve') facts.push(['Hyperparameters', settings.map(([k, v]) => `${k} ${v}`).join(' · ')]);
    if (job.method === 'pretrain' && spec.model) {
      const m = spec.model;
      facts.push(['Model', m.arch === 'custom'
        ? `custom: depth ${m.depth}, hidden ${m.hidden_size}, ${m.num_heads} heads, patch ${m.patch_size}, ${m.image_size}px`
        : `${m.arch}, ${m.image_size}px`]);
    }
    if (job.method === 'diff_tuning' && spec.diff_tuning) {
      const t = spec.diff_tuning;
      facts.push(['Diff-Tuning', `bank ${fmtInt(t.bank_size)} (${t.bank_sampler} ${t.bank_steps} steps) · ` +
                                 `replay ${t.replay_ratio} × ${t.replay_weight} · power ${t.power}`]);
    }
    if (job.method === 'forgetting_curve' && spec.forgetting) facts.push(['Measures', spec.forgetting.checkpoint || '—']);
    if (spec.eval) {
      const metric = spec.eval.extractor === 'inception' ? 'FID' : 'fd_classifier';
      facts.push(['Evaluation', `samples every ${fmtInt(spec.eval.sample_every)} · ` +
                                (spec.eval.fid_every ? `${metric} every ${fmtInt(spec.eval.fid_every)}` : `no ${metric}`)]);
    }
    fill(this.el.facts, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

    this.drawError();
  }

  drawError() {
    const job = this.job;
    const box = this.el.error;
    if (job.status !== 'failed') { box.hidden = true; return; }
    const err = job.error || {};
    const last = this.logs.length ? this.logs[this.logs.length - 1].message : null;
    fill(box,
      h('strong', {}, 'This job failed'),
      h('p', {}, h('code', { 'data-field': 'error-code' }, err.code || 'unknown'), ' ',
        h('span', { 'data-field': 'error-message' }, err.message || 'No message was recorded.')),
      last ? h('p', { class: 'job-error-log' }, 'Last log line: ', h('code', {}, last)) : null);
    box.hidden = false;
  }

  drawStream() {
    const s = this.streamState;
    const terminal = TERMINAL.includes(this.job.status);
    const text = s === 'live' ? (terminal ? 'stream: replayed' : '● live')
      : s === 'reconnecting' ? 'reconnecting…'
      : s === 'ended' ? (this.streamError ? `stream stopped: ${this.streamError.message}` : (terminal ? 'finished' : 'stream ended'))
      : 'connecting…';
    this.el.stream.textContent = text;
    this.el.stream.dataset.state = s || 'connecting';
  }

  drawProgress() {
    const p = this.progress || {};
    const terminal = TERMINAL.includes(this.job.status);
    let phase = p.phase || (this.job.status === 'queued' ? 'waiting in the queue' : '—');
    if (p.phase === 'evaluating' && p.stage && !terminal) phase += ` (${p.stage} ${fmtInt(p.done)} / ${fmtInt(p.total)})`;
    if (p.phase === 'knowledge_bank' && !terminal) phase += ' (generating the bank)';
    if (p.phase === 'encoding' && !terminal) phase += ' (the dataset through the VAE, once)';
    if (terminal) phase = this.job.status === 'succeeded' ? 'done' : `${this.job.status}${p.phase ? ` (while ${p.phase})` : ''}`;
    this.el.phase.textContent = phase;
    const step = terminal && this.job.status === 'succeeded' ? p.total_steps : p.step;
    fill(this.el.progress, progressBar(step || 0, p.total_steps || 0,
      p.phase === 'knowledge_bank' ? 'knowledge bank images'
        : p.phase === 'encoding' ? 'dataset images encoded' : 'training steps'));
    // Evaluating and saving report no rates: keep showing those of the last training report.
    const rates = p.images_per_second != null ? p : (this.lastRates || p);
    this.el.rate.textContent = rates.images_per_second != null ? fmtNum(rates.images_per_second, 3) : '—';
    this.el.eta.textContent = fmtDuration(p.eta_seconds);
    const hideEta = terminal || p.eta_seconds == null;
    this.el.eta.hidden = hideEta;
    this.el.etaLabel.hidden = hideEta;
    const lastLoss = this.loss.loss[this.loss.loss.length - 1];
    this.el.lossNow.textContent = fmtNum(p.loss ?? lastLoss?.[1]);
    this.el.lr.textContent = rates.learning_rate != null ? fmtNum(rates.learning_rate) : '—';
  }

  drawLoss() {
    const series = [{ label: 'loss', points: this.loss.loss }];
    // loss_downstream equals loss without a knowledge bank: show it only next to loss_bank.
    if (this.loss.loss_bank.length) {
      series.push({ label: 'loss_downstream', points: this.loss.loss_downstream });
      series.push({ label: 'loss_bank', points: this.loss.loss_bank });
    }
    this.charts.loss.update(series);
  }

  drawByTimestep() {
    const m = this.byTimestep;
    if (!m) return;
    const toPoints = (arr) => (arr || []).map((v, i) => [i, v ?? null]);
    const series = [{ label: 'downstream', points: toPoints(m.downstream) }];
    if (m.bank) series.push({ label: 'bank', points: toPoints(m.bank) });
    this.charts.byTimestep.update(series);
    const fig = this.chartEls.byTimestep.querySelector('figcaption');
    if (fig) fig.textContent = `Loss by timestep (step ${fmtInt(m.step)})`;
  }

  drawEvals() {
    for (const name of ['fid', 'fd_classifier']) {
      const list = this.evals[name];
      if (name === 'fd_classifier') {
        if (!list.length) continue;
        this.fdCard.hidden = false;
        if (!this.charts.fd_classifier)
          this.charts.fd_classifier = lineChart(this.chartEls.fd_classifier,
            { title: 'fd_classifier', xLabel: 'step', yLabel: 'distance', series: [] });
      }
      const ok = list.filter((p) => p.available);
      this.charts[name].update(ok.length ? [{ label: name, points: ok.map((p) => [p.step, p.value]) }] : []);
      const note = this.evalNotes[name];
      const missing = list.filter((p) => !p.available);
      if (missing.length) {
        const latest = missing[missing.length - 1];
        const steps = missing.map((p) => fmtInt(p.step));
        fill(note, h('strong', {}, `Unavailable at step${missing.length > 1 ? 's' : ''} `,
                     steps.length > 6 ? `${steps.slice(0, 3).join(', ')}, … ${steps[steps.length - 1]}` : steps.join(', '),
                     ': '),
             h('span', { 'data-field': `${name}-reason` }, latest.reason || 'no reason given'));
        note.hidden = false;
      } else {
        note.hidden = true;
      }
      // Say what the empty chart means when every point is unavailable.
      const empty = this.chartEls[name].querySelector('.chart-empty');
      if (empty && !ok.length && missing.length) empty.textContent = 'No values: every evaluation was unavailable.';
      const extractor = this.job.spec?.eval?.extractor || 'inception';
      if (empty && !list.length && this.job.spec?.eval?.fid_every === 0)
        empty.textContent = 'No evaluations: eval.fid_every is 0.';
      else if (empty && name === 'fid' && !list.length && extractor !== 'inception')
        empty.textContent = `No FID: this job measures fd_classifier (extractor ${extractor}).`;
    }
  }

  drawSamples() {
    this.el.samplesEmpty.hidden = this.samples.length > 0;
    for (const s of this.samples) {
      const src = `/jobs/${encodeURIComponent(this.id)}/samples/${encodeURIComponent(s.name)}?v=${s.version}`;
      let node = this.sampleNodes.get(s.name);
      if (!node) {
        const img = h('img', { alt: `sample grid at step ${s.step}`, loading: 'lazy', width: 128, height: 128 });
        const fig = h('figure', {},
          h('button', { type: 'button', 'aria-label': `open the sample grid of step ${s.step}`,
                        onclick: () => this.openSample(s.name) }, img),
          h('figcaption', {}, `step ${fmtInt(s.step)}`));
        node = { img, fig, version: null };
        this.sampleNodes.set(s.name, node);
        this.el.samples.append(fig);
      }
      if (node.version !== s.version) {
        node.img.src = src;
        node.version = s.version;
      }
    }
  }

  openSample(name) {
    const images = this.samples.map((s) => ({
      src: `/jobs/${encodeURIComponent(this.id)}/samples/${encodeURIComponent(s.name)}?v=${s.version}`,
      caption: `step ${fmtInt(s.step)} · ${s.images} images`,
    }));
    lightbox(images, Math.max(0, this.samples.findIndex((s) => s.name === name)));
  }

  drawLog() {
    const pre = this.el.log;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    // Drop the lines that left the tail, then add the new ones.
    const keep = new Set(this.logs);
    for (const node of [...pre.children]) if (!keep.has(node._entry)) node.remove();
    for (const entry of this.logs) {
      if (entry.drawn) continue;
      entry.drawn = true;
      const line = h('span', { class: entry.level === 'info' ? null : entry.level },
        entry.time ? `${new Date(entry.time * 1000).toLocaleTimeString()} ` : '',
        entry.level === 'info' ? '' : `${entry.level.toUpperCase()} `, entry.message, '\n');
      line._entry = entry;
      pre.append(line);
    }
    if (!this.logs.length) pre.textContent = 'No log lines yet.';
    else if (pre.firstChild?.nodeType === Node.TEXT_NODE) pre.firstChild.remove();
    this.el.logNote.hidden = this.logDropped === 0;
    this.el.logNote.textContent = `The last ${LOG_LINES} lines (${fmtInt(this.logDropped)} earlier ones not shown; ` +
                                  'GET /jobs/<id>/events has them all).';
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    if (this.job.status === 'failed') this.drawError();
  }

  // ---- checkpoints ---------------------------------------------------------------------------

  // Re-reads the checkpoint list (old ones are pruned as new ones come); one request at a time.
  async refreshCheckpoints() {
    if (this.checkpointsBusy) { this.checkpointsAgain = true; return; }
    this.checkpointsBusy = true;
    try {
      const list = await get(`/jobs/${encodeURIComponent(this.id)}/checkpoints`);
      if (!this.stopped) this.drawCheckpoints(list.data || []);
    } catch (e) {
      if (!this.stopped) fill(this.el.checkpoints, errorBox(e, 'The checkpoints could not be listed'));
    } finally {
      this.checkpointsBusy = false;
      if (this.checkpointsAgain && !this.stopped) {
        this.checkpointsAgain = false;
        this.refreshCheckpoints();
      }
    }
  }

  drawCheckpoints(list) {
    if (!list.length) {
      fill(this.el.checkpoints, h('p', { class: 'muted' }, 'No checkpoints yet.'));
      return;
    }
    fill(this.el.checkpoints, h('table', { class: 'checkpoints' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Name'), h('th', { class: 'num' }, 'Step'), h('th', { class: 'num' }, 'Size'),
        h('th', {}, 'SHA-256'), h('th', {}, ''))),
      h('tbody', {}, list.map((c) => h('tr', { 'data-checkpoint': c.name, 'data-pinned': c.pinned ? 'true' : 'false' },
        h('td', {}, h('code', {}, c.name), keptTags(c.kept_because)),
        h('td', { class: 'num' }, fmtInt(c.step)),
        h('td', { class: 'num', 'data-field': 'size' }, fmtBytes(c.bytes)),
        h('td', { class: 'sha' }, h('code', { 'data-field': 'sha256', class: 'sha256' }, c.sha256 || '—')),
        h('td', { class: 'ckpt-actions' },
          h('div', { class: 'row' },
            h('a', { class: 'button small', 'data-action': 'download', href: c.url, download: c.name }, 'Download'),
            h('button', { type: 'button', class: 'small', 'data-action': 'promote',
                          title: this.job.spec?.peft ? 'A model that holds this adapter, on the base model' : null,
                          onclick: (e) => this.promote(c, e.currentTarget, false) }, 'Promote'),
            this.job.spec?.peft
              ? h('button', { type: 'button', class: 'small', 'data-action': 'promote-merged',
                              title: 'A plain DiT: the adapter merged into the base model\'s weights',
                              onclick: (e) => this.promote(c, e.currentTarget, true) }, 'Promote merged')
              : null,
            h('button', { type: 'button', class: 'small', 'data-action': 'pin', 'aria-pressed': c.pinned ? 'true' : 'false',
                          title: c.pinned ? 'Let retention delete it when nothing else keeps it' : 'Keep it whatever retention says',
                          onclick: (e) => this.togglePin(c, e.currentTarget) }, c.pinned ? 'Unpin' : 'Pin'))))))));
  }

  // Pins or unpins a checkpoint. An unpinned one that nothing else keeps is deleted by the
  // server right after, so the list is read again a moment later too.
  async togglePin(ckpt, button) {
    const path = `/jobs/${encodeURIComponent(this.id)}/checkpoints/${encodeURIComponent(ckpt.name)}/pin`;
    button.disabled = true;
    fill(this.el.checkpointMsg);
    try {
      const now = ckpt.pinned ? await del(path) : await post(path);
      toast(now.pinned ? `${ckpt.name} pinned.`
        : now.kept_because?.length ? `${ckpt.name} unpinned.` : `${ckpt.name} unpinned; it will be deleted.`);
      this.refreshCheckpoints();
      if (!now.pinned) setTimeout(() => { if (!this.stopped) this.refreshCheckpoints(); }, 1000);
    } catch (e) {
      button.disabled = false;
      toast(`${ckpt.pinned ? 'Unpin' : 'Pin'} failed: ${e.message}`, 'error');
      fill(this.el.checkpointMsg, errorBox(e, `${ckpt.name} could not be ${ckpt.pinned ? 'unpinned' : 'pinned'}`));
    }
  }

  // Promotes a checkpoint to a model; merge: a PEFT job's adapter merged into its base (a plain
  // DiT that stands alone) rather than the adapter itself.
  async promote(ckpt, button, merge) {
    const suggested = `${methodLabel(this.job)} ${this.id.slice(-6)} step ${ckpt.step ?? ''}${merge ? ' merged' : ''}`.trim();
    const name = prompt(`Name of the new model made from ${ckpt.name}${merge ? ' (merged)' : ''}:`, suggested);
    if (name === null) return;
    button.disabled = true;
    fill(this.el.checkpointMsg);
    try {
      const body = { job: this.id, checkpoint: ckpt.name };
      if (merge) body.merge = true;
      if (name.trim()) body.name = name.trim();
      const model = await post('/models', body);
      toast(h('span', {}, 'Promoted to model ', h('strong', {}, model.name || model.id), ' · ',
              h('a', { href: '#/models', style: 'color:inherit' }, 'see the models')));
      fill(this.el.checkpointMsg, h('p', { class: 'notice' }, 'Model ', h('strong', {}, model.name || model.id), ' (',
        shortId(model.id), ') made from ', h('code', {}, ckpt.name), '. ', h('a', { href: '#/models' }, 'Open the models')));
    } catch (e) {
      toast(`Promote failed: ${e.message}`, 'error');
      fill(this.el.checkpointMsg, errorBox(e, `${ckpt.name} could not be promoted`));
    } finally {
      button.disabled = false;
    }
  }

  // ---- cancel and retry ----------------------------------------------------------------------

  async cancel(button) {
    if (!confirm(`Cancel job ${this.id}? A running job stops at its next step.`)) return;
    button.disabled = true;
    try {
      this.job = await post(`/jobs/${encodeURIComponent(this.id)}/cancel`);
      toast(this.job.status === 'cancelled' ? 'Job cancelled.' : 'Cancel requested.');
      this.mark('header', 'progress');
    } catch (e) {
      button.disabled = false;
      toast(`Cancel failed: ${e.message}`, 'error');
      this.showActionError(e, 'The job could not be cancelled');
    }
  }

  async retry(button) {
    if (!confirm(`Retry job ${this.id}? It resumes from its last checkpoint.`)) return;
    button.disabled = true;
    try {
      this.job = await post(`/jobs/${encodeURIComponent(this.id)}/retry`);
      toast('Job queued again.');
      this.mark('header', 'progress');
      // The old stream ended with the terminal status: follow the new attempt from where it stopped.
      this.follow();
    } catch (e) {
      button.disabled = false;
      toast(`Retry failed: ${e.message}`, 'error');
      this.showActionError(e, 'The job could not be retried');
    }
  }

  showActionError(err, title) {
    const box = errorBox(err, title);
    box.classList.add('job-action-error');
    this.root.querySelector('.job-action-error')?.remove();
    this.el.actions.after(box);
    setTimeout(() => box.remove(), 15000);
  }
}
