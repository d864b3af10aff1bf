// pages/models.js — #/models: upload a safetensors model (a DiT base model in the official or
// diffusers layout, an SD VAE, or a difftune classifier; the server detects which), promote a job's checkpoint to a model, and the table of
// models with their architecture, source and checksum. #/models?job=<id>&checkpoint=<name>
// preselects the promote form (the job page's Promote buttons link here).

import { get, post, getAll } from '../api.js';
import { h, fill, errorBox, fmtInt, fmtBytes, fmtTime, fmtAgo, shortId, section } from '../ui.js';
import { uploadForm, deleteButton, catalogList } from '../catalog.js';

export function render(main, parts, query) {
  const listMsg = h('div');
  const listBox = h('div', {}, 'Loading…');
  const load = catalogList({ box: listBox, path: '/models', kind: 'model', plural: 'models', table });

  const added = (model) => load(model.id);

  // diffusers' DiT files store no input size: the server needs it as ?input_size=
  const inputSize = h('input', { id: 'upload-model-input-size', name: 'input_size', type: 'number',
                                 min: 1, max: 4096, step: 1, placeholder: 'from the file' });
  const upload = uploadForm({
    id: 'upload-model',
    path: '/models',
    accept: '.safetensors',
    fileHint: 'A .safetensors DiT checkpoint (a base model to fine-tune; the official or diffusers ' +
              'layout), a Stable Diffusion VAE (diffusers’ AutoencoderKL), or a classifier written ' +
              'by `difftune classifier train`; the server detects which.',
    extraFields: [h('div', { class: 'field' },
      h('label', { for: inputSize.id }, 'Input size'), inputSize,
      h('span', { class: 'hint' }, 'Only for a DiT in diffusers’ layout, which does not store it: ' +
        'the latent side, 32 for DiT-XL-2-256.'))],
    query: () => (inputSize.value ? `?input_size=${encodeURIComponent(inputSize.value)}` : ''),
    what: 'model',
    rejectedTitle: 'This file is not a valid model',
    describe: (m) => [h('strong', {}, `Uploaded “${m.name}”. `), `${m.kind}: ${architecture(m)}.`],
    onUploaded: added,
  });

  main.append(h('section', { 'data-page': 'models' },
    h('h1', {}, 'Models'),
    h('div', { class: 'grid' },
      section('Upload a model', upload),
      section('Promote a job checkpoint', promoteForm(query, added))),
    section('Models', listMsg, listBox)));

  function table(models) {
    if (!models.length) return h('p', { class: 'muted' }, 'No models yet: upload one or promote a job checkpoint.');
    return h('div', { class: 'table-wrap' },
      h('table', { class: 'models' },
        h('thead', {}, h('tr', {},
          h('th', {}, 'Name'), h('th', { class: 'hide-narrow' }, 'ID'), h('th', { class: 'hide-narrow' }, 'Kind'),
          h('th', {}, 'Architecture'), h('th', { class: 'hide-narrow' }, 'Source'), h('th', { class: 'num hide-narrow' }, 'Size'),
          h('th', { class: 'hide-narrow' }, 'SHA-256'), h('th', { class: 'hide-narrow' }, 'Created'),
          h('th', { 'aria-label': 'Actions' }))),
        h('tbody', {}, models.map(modelRow))));
  }

  function modelRow(m) {
    return h('tr', { 'data-model': m.id },
      h('td', {}, m.name, h('div', { class: 'kind-inline' }, kindTag(m))),   // the kind column, on phones
      h('td', { class: 'hide-narrow' }, shortId(m.id)),
      h('td', { class: 'hide-narrow' }, kindTag(m)),
      h('td', { class: 'arch' }, architecture(m)),
      h('td', { class: 'hide-narrow' }, m.source_job
        ? [h('a', { href: `#/jobs/${encodeURIComponent(m.source_job)}` }, shortId(m.source_job)),
           m.source_checkpoint ? h('div', { class: 'muted small-text' }, m.source_checkpoint) : null]
        : h('span', { class: 'muted' }, 'upload')),
      h('td', { class: 'num hide-narrow' }, fmtBytes(m.bytes)),
      h('td', { class: 'hide-narrow' }, m.sha256 ? h('code', { title: m.sha256 }, m.sha256.slice(0, 12)) : '—'),
      h('td', { class: 'hide-narrow', title: fmtTime(m.created_at) }, fmtAgo(m.created_at)),
      h('td', {}, h('div', { class: 'row nowrap' },
        m.kind === 'dit'
          ? h('a', { class: 'button small', href: `#/new?base_model=${encodeURIComponent(m.id)}` }, 'Fine-tune')
          : null,
        deleteButton({ path: `/models/${encodeURIComponent(m.id)}`, what: 'model', obj: m,
                       onDeleted: () => { fill(listMsg); load(); },
                       onError: (box) => fill(listMsg, box) }))));
  }

  load();
}

function kindTag(m) {
  return h('span', { class: 'tag', 'data-kind': m.kind }, m.kind);
}

// One line on what a model is: "DiT-S/2 · depth 12, hidden 384, 6 heads, patch 2, 32×32×3,
// 10 classes" for a DiT (and its layout when diffusers'); latent channels, channels per level,
// layers and downsampling for a VAE; image shape, classes, feature width and accuracy for a
// classifier.
function architecture(m) {
  const c = m.config || {};
  const pct = (x) => `${(x * 100).toFixed(1)}%`;
  const shape = (channels) => c.image_size ? `${c.image_size}×${c.image_size}×${channels ?? '?'}` : null;
  let bits;
  if (m.kind === 'dit') {
    bits = [c.depth != null && `depth ${c.depth}`, c.hidden_size != null && `hidden ${c.hidden_size}`,
            c.num_heads != null && `${c.num_heads} heads`, c.patch_size != null && `patch ${c.patch_size}`,
            shape(c.in_channels), c.num_classes != null && `${fmtInt(c.num_classes)} classes`];
    if (c.arch) bits.unshift(c.arch);
    if (c.layout === 'diffusers') bits.push('diffusers layout');
    // a PEFT checkpoint promoted as it is: an adapter on its base model
    if (c.peft) {
      const name = { difffit: 'DiffFit', bitfit: 'BitFit', lora: `LoRA r${c.peft.rank}` }[c.peft.kind] || c.peft.kind;
      bits.push(`${name} adapter on ${c.peft.base_model ? shortId(c.peft.base_model) : `a base (sha256 ${String(c.peft.base_sha256).slice(0, 12)})`}`);
    }
  } else if (m.kind === 'vae') {
    bits = ['SD VAE', c.latent_channels != null && `${c.latent_channels} latent channels`,
            Array.isArray(c.block_out_channels) && `channels ${c.block_out_channels.join('/')}`,
            c.layers_per_block != null && `${c.layers_per_block} layers per block`,
            c.downsample_factor != null && `${c.downsample_factor}× downsampling`,
            c.scaling_factor != null && `scale ${c.scaling_factor}`];
  } else if (m.kind === 'classifier') {
    bits = [shape(c.channels), c.num_classes != null && `${fmtInt(c.num_classes)} classes`,
            c.features != null && `${c.features} features`,
            c.held_out_accuracy != null && `held-out accuracy ${pct(c.held_out_accuracy)}`];
  } else {
    bits = Object.entries(c).filter(([, v]) => typeof v !== 'object').map(([k, v]) => `${k} ${v}`);
  }
  return bits.filter(Boolean).join(', ') || '—';
}

// The promote form: a succeeded job, one of its checkpoints, a name. onPromoted(model) after a
// 201. query's job and checkpoint preselect it (a job that is not listed, e.g. still running,
// is added to the choices).
function promoteForm(query, onPromoted) {
  const wantJob = query?.get('job') || '';
  let wantCheckpoint = query?.get('checkpoint') || '';

  const jobSel = h('select', { id: 'promote-job', name: 'job', required: true }, h('option', { value: '' }, 'Loading…'));
  const ckptSel = h('select', { id: 'promote-checkpoint', name: 'checkpoint', required: true, disabled: true },
                    h('option', { value: '' }, 'Choose a job first'));
  const nameInput = h('input', { id: 'promote-name', name: 'name', type: 'text', maxlength: 200, autocomplete: 'off',
                                 placeholder: 'default: job and checkpoint' });
  const mergeBox = h('input', { id: 'promote-merge', name: 'merge', type: 'checkbox' });
  const ckptHint = h('span', { class: 'hint' }, 'Older checkpoints are pruned as a job keeps training.');
  const jobHint = h('span', { class: 'hint' }, 'Succeeded jobs, newest first.');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Promote');
  const status = h('div', { 'aria-live': 'polite' });

  const field = (label, control, hint) => h('div', { class: 'field', 'data-field-for': control.name },
    h('label', { for: control.id }, label), control, hint,
    h('p', { class: 'field-error', 'data-error-for': control.name, hidden: true }));

  const form = h('form', { id: 'promote-model' },
    h('p', { class: 'muted' }, 'Make a job’s checkpoint a model, to fine-tune from it or keep it after the job’s files go.'),
    h('div', { class: 'fields' },
      field('Job', jobSel, jobHint),
      field('Checkpoint', ckptSel, ckptHint),
      field('Name', nameInput, h('span', { class: 'hint' }, 'How the model is listed.')),
      h('div', { class: 'field', 'data-field-for': 'merge' },
        h('label', { class: 'check' }, mergeBox, ' Merge'),
        h('span', { class: 'hint' }, 'For a DiffFit, BitFit or LoRA job: store the plain DiT with the adapter merged into ' +
          'the base model’s weights, instead of the adapter alone (which needs its base model kept).'),
        h('p', { class: 'field-error', 'data-error-for': 'merge', hidden: true }))),
    h('div', { class: 'row form-actions' }, submit),
    status);

  const clearErrors = () => {
    for (const p of form.querySelectorAll('.field-error')) { p.hidden = true; p.textContent = ''; }
    for (const f of form.querySelectorAll('.field.invalid')) f.classList.remove('invalid');
  };
  const showFieldError = (param, message) => {
    const p = form.querySelector(`.field-error[data-error-for="${param}"]`);
    if (!p) return false;
    p.textContent = message;
    p.hidden = false;
    p.closest('.field').classList.add('invalid');
    return true;
  };

  const jobLabel = (j) => {
    const steps = j.spec?.hyperparameters?.steps;
    const id = `${j.id.slice(0, 8)}…${j.id.slice(-4)}`;
    return `${id} · ${j.method}${steps ? `, ${fmtInt(steps)} steps` : ''}` +
           `${j.status !== 'succeeded' ? ` (${j.status})` : ''}${j.finished_at ? ` · ${fmtTime(j.finished_at)}` : ''}`;
  };

  let ckptLoads = 0;
  async function loadCheckpoints() {
    const job = jobSel.value;
    const n = ++ckptLoads;
    clearErrors();
    ckptSel.disabled = true;
    if (!job) {
      fill(ckptSel, h('option', { value: '' }, 'Choose a job first'));
      return;
    }
    fill(ckptSel, h('option', { value: '' }, 'Loading…'));
    try {
      const list = (await get(`/jobs/${encodeURIComponent(job)}/checkpoints`)).data;
      if (n !== ckptLoads) return;
      if (!list.length) {
        fill(ckptSel, h('option', { value: '' }, 'This job has no checkpoints'));
        return;
      }
      // Newest first: the last checkpoint is the one usually wanted.
      const sorted = [...list].sort((a, b) => b.step - a.step || b.name.localeCompare(a.name));
      fill(ckptSel, sorted.map((c) => h('option', { value: c.name },
        `${c.name} · step ${fmtInt(c.step)} · ${fmtBytes(c.bytes)}`)));
      if (wantCheckpoint && sorted.some((c) => c.name === wantCheckpoint)) ckptSel.value = wantCheckpoint;
      else if (wantCheckpoint) showFieldError('checkpoint', `The job has no checkpoint ${wantCheckpoint} (any more): choose another.`);
      wantCheckpoint = '';
      ckptSel.disabled = false;
    } catch (err) {
      if (n !== ckptLoads) return;
      fill(ckptSel, h('option', { value: '' }, '—'));
      showFieldError('checkpoint', `Could not list the checkpoints: ${err.message}`);
    }
  }

  async function loadJobs() {
    try {
      const jobs = await getAll('/jobs?status=succeeded');
      if (wantJob && !jobs.some((j) => j.id === wantJob)) {
        // Promote buttons also link here from jobs that are not (yet) succeeded.
        try { jobs.unshift(await get(`/jobs/${encodeURIComponent(wantJob)}`)); }
        catch (err) { showFieldError('job', `Job ${wantJob}: ${err.message}`); }
      }
      fill(jobSel, h('option', { value: '' }, jobs.length ? 'Choose a job…' : 'No succeeded jobs yet'),
           jobs.map((j) => h('option', { value: j.id }, jobLabel(j))));
      jobSel.disabled = !jobs.length;
      if (wantJob && jobs.some((j) => j.id === wantJob)) {
        jobSel.value = wantJob;
        form.scrollIntoView({ block: 'nearest' });
        await loadCheckpoints();
        nameInput.focus();
      }
    } catch (err) {
      fill(jobSel, h('option', { value: '' }, '—'));
      fill(status, errorBox(err, 'Could not list the jobs'));
    }
  }

  jobSel.addEventListener('change', loadCheckpoints);
  form.addEventListener('input', (e) => {
    const f = e.target.closest('.field.invalid');
    if (f) { f.classList.remove('invalid'); f.querySelector('.field-error').hidden = true; }
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    fill(status);
    const body = { job: jobSel.value, checkpoint: ckptSel.value };
    const name = nameInput.value.trim();
    if (name) body.name = name;
    if (mergeBox.checked) body.merge = true;
    submit.disabled = true;
    fill(status, h('p', { class: 'muted' }, 'Promoting… the server copies and checks the checkpoint.'));
    try {
      const model = await post('/models', body);
      nameInput.value = '';
      fill(status, h('div', { class: 'notice', role: 'status' },
        h('strong', {}, `Promoted ${body.checkpoint} to “${model.name}”. `),
        `${architecture(model)}. `,
        model.kind === 'dit' ? h('a', { href: `#/new?base_model=${encodeURIComponent(model.id)}` }, 'Fine-tune it') : null));
      onPromoted(model);
    } catch (err) {
      if (err.param && showFieldError(err.param, err.message)) fill(status);
      else fill(status, errorBox(err, 'Could not promote the checkpoint'));
    } finally {
      submit.disabled = false;
    }
  });

  loadJobs();
  return form;
}
