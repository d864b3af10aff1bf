// chart.js — line charts of metric series on uPlot (npm "uplot", served by the server from
// /ui/vendor/ when deploy/install-deps.sh ran npm ci before the build). Several series with
// different x values are aligned on one axis; a chart says so plainly when the library is absent.

import { h, fill, fmtNum } from './ui.js';

// Series colours, in order; pages that colour a job the same across charts take theirs from here.
export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
let uPlotModule = null;

async function loadUPlot() {
  if (!uPlotModule) uPlotModule = import('/ui/vendor/uPlot.esm.js').then((m) => m.default);
  return uPlotModule;
}

// A line chart in el. spec: {title, xLabel, yLabel, height, series: [{label, points: [[x, y], ...]}],
// xFormat?: (x) => text of an x tick and of the legend's x value}.
// Returns {update(series)} to redraw with new points (cheap: the same chart is reused).
export function lineChart(el, spec) {
  const box = h('div', { class: 'chart-plot' });
  const empty = h('p', { class: 'muted chart-empty' }, 'No points yet.');
  fill(el, h('figure', { class: 'chart', 'data-chart': spec.title },
    h('figcaption', {}, spec.title), box, empty));
  let plot = null;
  let labels = '';
  let U = null;
  let pending = spec.series;

  const draw = (series) => {
    const live = series.filter((s) => s.points.length);
    empty.hidden = live.length > 0;
    box.hidden = live.length === 0;
    if (!U || !live.length) return;
    const data = U.join(live.map((s) => [s.points.map((p) => p[0]), s.points.map((p) => p[1])]));
    const key = live.map((s) => s.label).join('\u0000');
    if (plot && key === labels) {
      plot.setData(data);
      return;
    }
    plot?.destroy();
    labels = key;
    plot = new U({
      width: Math.max(240, box.clientWidth || el.clientWidth || 480),
      height: spec.height || 220,
      scales: { x: { time: false } },
      axes: [
        { label: spec.xLabel || 'step', size: 40,
          ...(spec.xFormat ? { values: (u, ticks) => ticks.map(spec.xFormat) } : {}) },
        { label: spec.yLabel || '', size: 60, values: (u, ticks) => ticks.map((v) => fmtNum(v, 3)) },
      ],
      series: [
        { label: spec.xLabel || 'step', ...(spec.xFormat ? { value: (u, v) => (v == null ? '—' : spec.xFormat(v)) } : {}) },
        ...live.map((s, i) => ({
          label: s.label, stroke: s.color || PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
          // markers only while few points are in view (decided on every draw, not once)
          points: { show: (u, si, i0, i1) => i0 == null || i1 - i0 < 60 }, value: (u, v) => fmtNum(v),
        })),
      ],
    }, data, box);
  };

  loadUPlot().then((mod) => { U = mod; draw(pending); })
    .catch(() => {
      empty.hidden = false;
      empty.textContent = 'Charts need the uPlot library: run deploy/install-deps.sh, then rebuild the server.';
    });
  const ro = new ResizeObserver(() => {
    if (plot && box.clientWidth && Math.abs(box.clientWidth - plot.width) > 4)
      plot.setSize({ width: box.clientWidth, height: plot.height });
  });
  ro.observe(box);
  return {
    update(series) { pending = series; draw(series); },
  };
}
