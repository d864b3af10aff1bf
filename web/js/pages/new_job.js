// pages/new_job.js — the new-job form (#/new, #/new?from=<job>, ?dataset=<id>, ?base_model=<id>).
// The fields, their defaults, choices and hints come from the server's own OpenAPI document, so
// the form never drifts from what the server accepts; the server validates, and its error is
// shown next to the field its `param` names. One Idempotency-Key per form: a double submit, or a
// retry after a lost answer, makes one job. With full or diff_tuning a PEFT method (DiffFit,
// BitFit, LoRA) can be chosen; its options appear with it, and the learning rate left at its
// default follows the default of the choice (1e-3 with a peft, as the server's).

import { get, getAll, post, newIdempotencyKey } from '../api.js';
import { h, fill, errorBox, fmtInt } from '../ui.js';

// What the form shows of each settings object of a job request: `main` fields are always
// visible, `advanced` ones are folded away. `when` limits a section to some methods.
const SECTIONS = [
  { key: 'model', schema: 'ModelSpec', title: 'Model (trained from scratch)', when: (m) => m === 'pretrain',
    main: ['arch', 'image_size', 'channels'], custom: ['depth', 'hidden_size', 'num_heads', 'patch_size'],
    advanced: ['learn_sigma', 'num_classes'] },
  { key: 'hyperparameters', schema: 'Hyperparameters', title: 'Training',
    main: ['steps', 'batch_size', 'learning_rate'],
    advanced: ['ema_decay', 'class_dropout', 'weight_decay', 'grad_clip', 'grad_accum', 'seed', 'precision'] },
  { key: 'diff_tuning', schema: 'DiffTuningSettings', title: 'Diff-Tuning', when: (m) => m === 'diff_tuning',
    main: ['power', 'replay_ratio', 'replay_weight', 'bank_size'], advanced: ['bank_sampler', 'bank_steps', 'bank_cfg'] },
  { key: 'eval', schema: 'EvalSettings', title: 'Samples and evaluation',
    main: ['sample_every', 'fid_every', 'fid_samples'], advanced: ['extractor', 'sampler', 'steps', 'cfg'] },
  { key: 'checkpoint', schema: 'CheckpointSettings', title: 'Checkpoints', main: ['every', 'keep'], advanced: [] },
];
const METHODS = [
  ['diff_tuning', 'Diff-Tuning', 'Keeps the base model\'s knowledge near the data end of the chain (a bank of its own samples) and adapts near the noise end.'],
  ['full', 'Full fine-tuning', 'Standard fine-tuning: every timestep trained on the new data alone.'],
  ['pretrain', 'Pretrain', 'Trains a new model from scratch (no base model), e.g. to make a base for later fine-tuning.'],
];

const PEFTS = [
  ['', 'None', 'Every parameter of the base model trains.'],
  ['difffit', 'DiffFit', 'Trains scale factors (gammas) on the first blocks, every bias and the label table; the rest stays frozen.'],
  ['bitfit', 'BitFit', 'Trains only the biases and the label table.'],
  ['lora', 'LoRA', 'Trains low-rank matrices beside the chosen linears; the base weights stay frozen and the adapter can be merged into them.'],
];
const LORA_TARGETS = ['qkv', 'proj', 'fc1', 'fc2'];
const PEFT_METHODS = ['full', 'diff_tuning'];

const ACRONYMS = { fid: 'FID', ema: 'EMA', cfg: 'CFG', lr: 'LR' };
const label = (name) => name.split('_').map((w, i) => ACRONYMS[w] || (i ? w : w[0].toUpperCase() + w.slice(1))).join(' ');
const typeOf = (p) => (Array.isArray(p.type) ? p.type.find((t) => t !== 'null') : p.type);

// One input for property `name` of a schema: a select for enums and booleans, a text box
// otherwise (text, not type=number, so that what the user typed reaches the server's checks
// instead of being emptied by the browser).
function field(path, prop, value) {
  const id = 'f-' + path.replace(/\./g, '-');
  const type = typeOf(prop);
  let input;
  if (prop.enum || type === 'boolean') {
    const choices = prop.enum || [true, false];
    input = h('select', { id, name: path, 'data-type': type },
      choices.map((c) => h('option', { value: String(c), selected: String(c) === String(value) }, String(c))));
  } else {
    input = h('input', { id, name: path, 'data-type': type, value: value ?? '', autocomplete: 'off',
                         inputmode: type === 'integer' ? 'numeric' : type === 'number' ? 'decimal' : null,
                         placeholder: prop.default === null || prop.default === undefined ? 'server default' : null });
  }
  const dflt = prop.default === undefined ? null
    : `default ${prop.default === null ? 'none' : typeof prop.default === 'number' ? prop.default : String(prop.default)}`;
  return h('div', { class: 'field', 'data-field-for': path },
    h('label', { for: id }, label(path.split('.').pop())),
    input,
    h('span', { class: 'hint' }, [prop.description, dflt].filter(Boolean).join(' · ')),
    h('p', { class: 'field-error', 'data-error-for': path, id: id + '-error', hidden: true }));
}

// The value of one input as the request wants it: numbers parsed when they parse, else the
// text as typed (the server then names the field); empty means "leave it to the server".
function readValue(input) {
  const type = input.dataset.type;
  const raw = input.value.trim();
  if (raw === '') return undefined;
  if (type === 'boolean') return raw === 'true';
  if ((type === 'integer' || type === 'number') && raw !== '' && Number.isFinite(Number(raw))) return Number(raw);
  return raw;
}

export function render(main, _parts, query) {
  const page = h('section', { 'data-page': 'new' }, h('h1', {}, 'New fine-tuning job'), h('p', {}, 'Loading…'));
  main.append(page);
  load(page, query).catch((e) => fill(page, h('h1', {}, 'New fine-tuning job'), errorBox(e, 'The form could not load')));
}

async function load(page, query) {
  const [doc, datasets, models, workers, from] = await Promise.all([
    get('/openapi.json'), getAll('/datasets'), getAll('/models'), get('/workers'),
    query.get('from') ? get('/jobs/' + encodeURIComponent(query.get('from'))) : null,
  ]);
  const schemas = doc.components.schemas;
  const spec = from?.spec || {};
  const valueOf = (path, prop) => {
    const v = path.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), spec);
    return v !== undefined ? v : prop.default;
  };
  const dits = models.filter((m) => m.kind === 'dit');
  const vaes = models.filter((m) => m.kind === 'vae');
  const devices = [...new Set((workers?.data || []).map((w) => w.device))];
  const idemKey = newIdempotencyKey();

  const methodSel = h('select', { id: 'f-method', name: 'method', 'data-type': 'string' },
    METHODS.map(([v, text]) => h('option', { value: v, selected: v === (spec.method || 'diff_tuning') }, `${text} (${v})`)));
  const methodHint = h('span', { class: 'hint' });
  const datasetSel = h('select', { id: 'f-dataset', name: 'dataset', 'data-type': 'string', required: true },
    h('option', { value: '' }, datasets.length ? 'Choose a dataset…' : 'No datasets yet: upload one first'),
    datasets.map((d) => h('option', { value: d.id, selected: d.id === (query.get('dataset') || spec.dataset) },
      `${d.name} — ${fmtInt(d.images)} images, ${d.classes} classes`)));
  const modelSel = h('select', { id: 'f-base_model', name: 'base_model', 'data-type': 'string' },
    h('option', { value: '' }, dits.length ? 'Choose a base model…' : 'No models yet: pretrain or upload one'),
    dits.map((m) => h('option', { value: m.id, selected: m.id === (query.get('base_model') || spec.base_model) },
      `${m.name} (${m.config?.image_size ?? '?'}px, ${m.config?.num_classes ?? '?'} classes)`)));
  // A latent DiT (4 input channels, e.g. DiT-XL/2 at 256 px) needs the VAE of its latent space.
  const vaeSel = h('select', { id: 'f-vae', name: 'vae', 'data-type': 'string' },
    h('option', { value: '' }, 'None: the model works on pixels'),
    vaes.map((m) => h('option', { value: m.id, selected: m.id === (query.get('vae') || spec.vae) },
      `${m.name} (${m.config?.latent_channels ?? '?'} latent channels, x${m.config?.downsample_factor ?? '?'})`)));
  const peftSel = h('select', { id: 'f-peft', name: 'peft', 'data-type': 'string' },
    PEFTS.map(([v, text]) => h('option', { value: v, selected: v === (spec.peft || '') }, v ? `${text} (${v})` : text)));
  const peftHint = h('span', { class: 'hint' });
  const basics = h('fieldset', {}, h('legend', {}, 'What to train'), h('div', { class: 'fields' },
    wrap('method', 'Method', methodSel, methodHint),
    wrap('peft', 'Parameter-efficient', peftSel, peftHint), wrap('dataset', 'Dataset', datasetSel,
      h('a', { href: '#/datasets' }, 'Upload a dataset')),
    wrap('base_model', 'Base model', modelSel, h('a', { href: '#/models' }, 'Models')),
    wrap('vae', 'VAE (latent models)', vaeSel, h('span', { class: 'hint' },
      'for a DiT with 4 input channels: the SD VAE it was trained with'))));

  // The peft's options: DiffFit's blocks; LoRA's rank, alpha and target linears (checkboxes,
  // sent as the targets array).
  const peftProps = schemas.PeftSettings.properties;
  const peftField = (name) => field(`peft_options.${name}`, peftProps[name], valueOf(`peft_options.${name}`, peftProps[name]));
  const chosenTargets = spec.peft_options?.targets || peftProps.targets.default || LORA_TARGETS;
  const targetBoxes = LORA_TARGETS.map((t) => h('input', { type: 'checkbox', id: `f-peft-target-${t}`, 'data-target': t,
                                                           checked: chosenTargets.includes(t) }));
  const targetsField = h('div', { class: 'field', 'data-field-for': 'peft_options.targets', 'data-peft': 'lora' },
    h('span', { class: 'field-label', id: 'f-peft-targets-label' }, 'Targets'),
    h('div', { class: 'checks', role: 'group', 'aria-labelledby': 'f-peft-targets-label' },
      targetBoxes.map((box) => h('label', { for: box.id }, box, ' ', box.dataset.target))),
    h('span', { class: 'hint' }, peftProps.targets.description),
    h('p', { class: 'field-error', 'data-error-for': 'peft_options.targets', id: 'f-peft-targets-error', hidden: true }));
  const forPeft = (el, peft) => { el.dataset.peft = peft; return el; };
  const peftBox = h('fieldset', { 'data-section': 'peft_options' }, h('legend', {}, 'Adapter'),
    h('div', { class: 'fields' },
      forPeft(peftField('difffit_blocks'), 'difffit'), forPeft(peftField('rank'), 'lora'),
      forPeft(peftField('alpha'), 'lora'), targetsField));

  const sections = [];
  const advanced = h('div', { class: 'fields' });
  for (const s of SECTIONS) {
    const props = schemas[s.schema].properties;
    const mk = (name) => field(`${s.key}.${name}`, props[name], valueOf(`${s.key}.${name}`, props[name]));
    const box = h('fieldset', { 'data-section': s.key }, h('legend', {}, s.title),
      h('div', { class: 'fields' }, s.main.map(mk)));
    if (s.custom) box.append(h('div', { class: 'fields', 'data-custom': s.key }, s.custom.map(mk)));
    for (const name of s.advanced) advanced.append(mk(name));
    sections.push({ s, box });
  }
  const reqProps = schemas.JobRequest.properties;
  advanced.append(
    wrap('device', 'Device', h('select', { id: 'f-device', name: 'device', 'data-type': 'string' },
      ['auto', ...devices].map((d) => h('option', { value: d, selected: d === (spec.device || 'auto') }, d))),
      h('span', { class: 'hint' }, reqProps.device?.description || '')),
    field('priority', reqProps.priority, spec.priority ?? reqProps.priority.default));

  const formError = h('div', { 'data-form-error': '' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create job');
  const form = h('form', { id: 'new-job', novalidate: true }, basics, peftBox, sections.map((x) => x.box),
    h('details', { id: 'advanced' }, h('summary', {}, 'Advanced settings'), advanced),
    formError, h('div', { class: 'row' }, submit,
      h('span', { class: 'muted' }, 'Settings left at their defaults are sent as shown.')));

  // The learning rate's default with and without a peft (the server's, from its document).
  const lrProp = schemas.Hyperparameters.properties.learning_rate;
  const lrDefault = (peft) => (peft ? lrProp['x-peft-default'] ?? 1e-3 : lrProp.default);
  let lastPeft = null;

  // Shows the sections and fields that apply to the chosen method, peft and architecture.
  const sync = () => {
    const m = methodSel.value;
    methodHint.textContent = METHODS.find(([v]) => v === m)[2];
    const peftOn = PEFT_METHODS.includes(m);
    peftSel.disabled = !peftOn;
    peftSel.closest('.field').hidden = !peftOn;
    const peft = peftOn ? peftSel.value : '';
    peftHint.textContent = PEFTS.find(([v]) => v === peft)[2];
    peftBox.hidden = !peft || peft === 'bitfit';
    for (const f of peftBox.querySelectorAll('[data-peft]')) {
      const on = f.dataset.peft === peft;
      f.hidden = !on;
      for (const el of f.querySelectorAll('input, select')) el.disabled = !on;
    }
    // a learning rate still at the old choice's default moves to the new one's
    const lr = form.elements['hyperparameters.learning_rate'];
    if (lastPeft !== null && Boolean(lastPeft) !== Boolean(peft) && lr && Number(lr.value) === lrDefault(lastPeft)) {
      lr.value = String(lrDefault(peft));
    }
    lastPeft = peft;
    for (const { s, box } of sections) {
      const on = !s.when || s.when(m);
      box.hidden = !on;
      for (const el of box.querySelectorAll('input, select')) el.disabled = !on;
      for (const name of s.advanced) {
        const f = advanced.querySelector(`[data-field-for="${s.key}.${name}"]`);
        f.hidden = !on;
        f.querySelector('input, select').disabled = !on;
      }
    }
    const custom = form.querySelector('[data-custom="model"]');
    const isCustom = m === 'pretrain' && form.elements['model.arch'].value === 'custom';
    custom.hidden = !isCustom;
    for (const el of custom.querySelectorAll('input')) el.disabled = !isCustom;
    modelSel.disabled = m === 'pretrain';
    modelSel.closest('.field').hidden = m === 'pretrain';
  };
  form.addEventListener('change', sync);
  sync();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (submit.disabled) return;
    clearErrors(form, formError);
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      const v = readValue(el);
      if (v === undefined) continue;
      const path = el.name.split('.');
      let o = body;
      for (const k of path.slice(0, -1)) o = o[k] ??= {};
      o[path.at(-1)] = v;
    }
    if (body.peft === 'lora') {
      body.peft_options ??= {};
      body.peft_options.targets = targetBoxes.filter((b) => b.checked).map((b) => b.dataset.target);
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    try {
      const job = await post('/jobs', body, { headers: { 'Idempotency-Key': idemKey } });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      showError(form, formError, err);
      submit.disabled = false;
      submit.textContent = 'Create job';
    }
  });

  fill(page, h('h1', {}, 'New fine-tuning job'),
    from ? h('p', { class: 'notice' }, 'Settings copied from ', h('a', { href: `#/jobs/${from.id}` }, from.id), '.') : null,
    form);
}

function wrap(path, text, input, ...extra) {
  return h('div', { class: 'field', 'data-field-for': path }, h('label', { for: input.id }, text), input, ...extra,
    h('p', { class: 'field-error', 'data-error-for': path, id: input.id + '-error', hidden: true }));
}

function clearErrors(form, formError) {
  for (const p of form.querySelectorAll('.field-error')) { p.hidden = true; p.textContent = ''; }
  for (const f of form.querySelectorAll('.field.invalid')) {
    f.classList.remove('invalid');
    f.querySelector('input, select')?.removeAttribute('aria-invalid');
  }
  fill(formError);
}

// Puts the server's error next to the field its param names (opening the advanced settings
// when it is there), or above the button when no field matches.
function showError(form, formError, err) {
  const slot = err.param && form.querySelector(`[data-error-for="${CSS.escape(err.param)}"]`);
  if (!slot) {
    fill(formError, errorBox(err, err.status === 0 ? 'The server cannot be reached' : 'The job was not created'));
    return;
  }
  const f = slot.closest('.field');
  f.classList.add('invalid');
  const input = f.querySelector('input, select');
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', slot.id);
  slot.textContent = err.message;
  slot.hidden = false;
  const details = f.closest('details');
  if (details) details.open = true;
  input.focus();
}
