// pages/datasets.js — #/datasets: upload a dataset archive (with progress, then the server's
// validation result or its error) and the table of datasets; a row opens a panel with the class
// names and image counts, the preview grid, a link to start a job on it, and Delete.

import { h, fill, fmtInt, fmtBytes, fmtTime, fmtAgo, shortId, section } from '../ui.js';
import { uploadForm, deleteButton, catalogList } from '../catalog.js';

const COLUMNS = 7;
const CLASSES_SHOWN = 40;   // class rows shown before "Show all"

export function render(main) {
  const listBox = h('div', {}, 'Loading…');
  const expanded = new Set();   // ids whose detail panel is open
  const load = catalogList({ box: listBox, path: '/datasets', kind: 'dataset', plural: 'datasets', table });

  const form = uploadForm({
    id: 'upload-dataset',
    path: '/datasets',
    accept: '.tar,.tar.gz,.tgz,.tar.xz,.tar.bz2,.zip,.gz,.idx,.idx1-ubyte,.idx3-ubyte,application/x-tar,application/gzip,application/zip',
    fileHint: 'A tar or zip of a folder with one subfolder of PNG/JPEG/BMP images per class, ' +
              'or MNIST-style IDX files (images and labels) packed in a tar.',
    what: 'dataset',
    rejectedTitle: 'This archive is not a valid dataset',
    describe: (ds) => [h('strong', {}, `Uploaded “${ds.name}”. `),
                       `${fmtInt(ds.images)} images in ${fmtInt(ds.classes)} classes (${ds.format}). `,
                       h('a', { href: `#/new?dataset=${encodeURIComponent(ds.id)}` }, 'New job on this dataset')],
    onUploaded: (ds) => {
      expanded.clear();
      expanded.add(ds.id);
      load(ds.id);
    },
  });

  main.append(h('section', { 'data-page': 'datasets' },
    h('h1', {}, 'Datasets'),
    section('Upload a dataset', form),
    section('Datasets', listBox)));

  function table(datasets) {
    if (!datasets.length) return h('p', { class: 'muted' }, 'No datasets yet: upload one above.');
    const body = h('tbody');
    for (const ds of datasets) {
      const row = datasetRow(ds);
      body.append(row);
      if (expanded.has(ds.id)) row.after(detailRow(ds));
    }
    return h('div', { class: 'table-wrap' },
      h('table', { class: 'datasets' },
        h('thead', {}, h('tr', {},
          h('th', {}, 'Name'), h('th', { class: 'hide-narrow' }, 'ID'), h('th', { class: 'hide-narrow' }, 'Format'),
          h('th', { class: 'num' }, 'Images'), h('th', { class: 'num' }, 'Classes'),
          h('th', { class: 'num hide-narrow' }, 'Size'), h('th', { class: 'hide-narrow' }, 'Created'))),
        body));
  }

  function datasetRow(ds) {
    const row = h('tr', { class: 'clickable', 'data-dataset': ds.id, tabindex: 0,
                          'aria-expanded': expanded.has(ds.id) ? 'true' : 'false',
                          title: 'Show classes and preview' },
      h('td', {}, h('span', { class: 'disclosure', 'aria-hidden': 'true' }), ds.name),
      h('td', { class: 'hide-narrow' }, shortId(ds.id)),
      h('td', { class: 'hide-narrow' }, ds.format),
      h('td', { class: 'num' }, fmtInt(ds.images)),
      h('td', { class: 'num' }, fmtInt(ds.classes)),
      h('td', { class: 'num hide-narrow' }, fmtBytes(ds.bytes)),
      h('td', { class: 'hide-narrow', title: fmtTime(ds.created_at) }, fmtAgo(ds.created_at)));
    const toggle = () => {
      const open = !expanded.has(ds.id);
      if (open) {
        expanded.add(ds.id);
        row.after(detailRow(ds));
      } else {
        expanded.delete(ds.id);
        row.nextElementSibling?.classList.contains('detail') && row.nextElementSibling.remove();
      }
      row.setAttribute('aria-expanded', String(open));
    };
    row.addEventListener('click', toggle);
    row.addEventListener('keydown', (e) => {
      if (e.target !== row || (e.key !== 'Enter' && e.key !== ' ')) return;
      e.preventDefault();
      toggle();
    });
    return row;
  }

  // The panel under an open row: classes with counts, the preview, the actions.
  function detailRow(ds) {
    const msg = h('div');
    const actions = h('div', { class: 'row' },
      h('a', { class: 'button primary small', href: `#/new?dataset=${encodeURIComponent(ds.id)}` },
        'New job on this dataset'),
      deleteButton({ path: `/datasets/${encodeURIComponent(ds.id)}`, what: 'dataset', obj: ds,
                     onDeleted: () => { expanded.delete(ds.id); load(); },
                     onError: (box) => fill(msg, box) }));
    return h('tr', { class: 'detail', 'data-detail-for': ds.id },
      h('td', { colspan: COLUMNS },
        h('div', { class: 'dataset-detail' },
          h('div', {},
            h('h3', {}, `${fmtInt(ds.classes)} ${ds.classes === 1 ? 'class' : 'classes'}`),
            classList(ds),
            h('dl', { class: 'facts' },
              h('dt', {}, 'ID'), h('dd', {}, h('code', {}, ds.id)),
              h('dt', {}, 'Format'), h('dd', {}, ds.format === 'idx' ? 'IDX (MNIST-style)' : 'image folder'),
              h('dt', {}, 'Size'), h('dd', {}, `${fmtBytes(ds.bytes)} extracted`),
              h('dt', {}, 'Created'), h('dd', {}, fmtTime(ds.created_at))),
            actions, msg),
          preview(ds))));
  }

  load();
}

// Class names with their image counts and a bar each; names only when the dataset predates
// class_counts (absent, or not one count per name).
function classList(ds) {
  const names = ds.class_names || [];
  const counts = Array.isArray(ds.class_counts) && ds.class_counts.length === names.length
    ? ds.class_counts : null;
  const max = counts ? Math.max(1, ...counts) : 1;
  const item = (name, i) => h('li', {},
    h('span', { class: 'class-name' }, name),
    counts ? [h('span', { class: 'class-bar', 'aria-hidden': 'true' },
                h('span', { style: `width:${((counts[i] / max) * 100).toFixed(1)}%` })),
              h('span', { class: 'num' }, `${fmtInt(counts[i])} ${counts[i] === 1 ? 'image' : 'images'}`)] : null);
  const list = h('ol', { class: counts ? 'class-list counted' : 'class-list' },
                 names.slice(0, CLASSES_SHOWN).map(item));
  if (names.length <= CLASSES_SHOWN) return list;
  const more = h('button', { type: 'button', class: 'small' }, `Show all ${fmtInt(names.length)}`);
  more.addEventListener('click', () => {
    list.append(...names.slice(CLASSES_SHOWN).map((n, j) => item(n, j + CLASSES_SHOWN)));
    more.remove();
  });
  return h('div', {}, list, more);
}

// The preview grid drawn at upload (one row per class), or "no preview".
function preview(ds) {
  const none = () => h('p', { class: 'muted no-preview' }, 'no preview');
  if (!ds.preview_url) return h('div', { class: 'dataset-preview' }, none());
  const shown = Math.min(ds.classes, 10);
  const box = h('figure', { class: 'dataset-preview' });
  const img = h('img', { class: 'thumb', src: ds.preview_url, loading: 'lazy',
                         alt: `Sample images of “${ds.name}”: the first images of ` +
                              `${shown === ds.classes ? 'each class' : `the first ${shown} classes`}, one row per class` });
  img.addEventListener('error', () => fill(box, none()));
  fill(box, img, h('figcaption', { class: 'muted' },
    `One row per class${shown < ds.classes ? ` (first ${shown} of ${fmtInt(ds.classes)})` : ''}, in class order`));
  return box;
}
