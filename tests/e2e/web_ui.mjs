// web_ui.mjs — the browser half of tests/test_web_ui.sh: Debian's chromium, driven by
// playwright-core, uses the web UI of a real `difftune serve` the way a person would. It uploads
// a dataset (and a broken one), submits a tiny job through the form (after seeing a validation
// error next to its field, with a double click that must make one job), watches it succeed live,
// opens a sample, downloads a checkpoint and checks its sha256, promotes it to a model, fine-tunes
// that model with LoRA through the form (the PEFT options appearing with their method, the server's
// error next to the rank) and sees the method and trainable parameter count on the job and jobs
// pages, promotes the adapter as it is and merged, cancels a running job, compares two jobs, sees a failed job's error, shows the server-down banner, and
// last, once a key is made, asks for it and works with it (images and downloads included). Screenshots of each page at two widths go to $TMP/screenshots.
//
// env: URL (the server), TMP (the archives solid.tar and broken.tar; output), CHROMIUM, SRC,
// BIN (the difftune binary) and DATA (the server's data directory, for `difftune keys`).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const { URL: BASE, TMP, CHROMIUM, SRC, BIN, DATA } = process.env;
const { chromium } = await import(join(SRC, 'node_modules/playwright-core/index.mjs'));

let passed = 0;
let failed = 0;
function check(what, cond, detail = '') {
  if (cond) passed++;
  else {
    failed++;
    console.error(`FAIL: ${what}${detail ? ': ' + detail : ''}`);
  }
}

// The API straight from node, to set up and to verify what the UI did.
async function api(method, path, body) {
  const res = await fetch(BASE + path, {
    method, headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
const jobCount = async () => (await api('GET', '/jobs?limit=100')).body.data.length;
const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
page.setDefaultTimeout(15000);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => {
  // Chromium logs every 4xx a fetch gets; those are answers the UI shows, not faults.
  if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
});
page.on('dialog', (d) => d.accept(d.type() === 'prompt' ? 'promoted from the UI' : undefined));

const shots = [];
async function screenshot(name, p = page) {
  for (const [w, h] of [[1280, 900], [390, 844]]) {
    await p.setViewportSize({ width: w, height: h });
    await p.waitForTimeout(300);
    const file = join(TMP, 'screenshots', `${name}-${w}.png`);
    await p.screenshot({ path: file, fullPage: true });
    shots.push(file);
  }
  await p.setViewportSize({ width: 1280, height: 900 });
}

async function step(what, fn) {
  try {
    await fn();
  } catch (e) {
    const lines = e.message.split('\n');
    check(what, false, [lines[0], ...lines.filter((l) => /waiting for|locator resolved/.test(l)).slice(0, 2)].join(' / '));
  }
}

const TINY = { arch: 'custom', depth: '1', hidden_size: '16', num_heads: '2', patch_size: '2', image_size: '8' };
let solid = null;
let jobId = null;

// ---- datasets: upload through the form, and a broken archive ---------------------------------
await step('datasets page', async () => {
  await page.goto(BASE + '/#/datasets');
  await page.locator('section[data-page=datasets] h1').waitFor();
  const form = page.locator('form#upload-dataset');
  const list = (await api('GET', '/datasets')).body.data;
  await form.locator('input[name=name]').fill('solid shapes');
  await form.locator('input[type=file][name=file]').setInputFiles(join(TMP, 'solid.tar'));
  await form.locator('[type=submit]').click();
  await page.waitForFunction(() => document.querySelectorAll('tr[data-dataset]').length > 0);
  solid = (await api('GET', '/datasets')).body.data.find((d) => d.name === 'solid shapes');
  check('the upload made the dataset', solid && list.length === 0, JSON.stringify(list));
  const row = page.locator(`tr[data-dataset="${solid.id}"]`);
  await row.waitFor();
  check('the dataset row shows its image count', /24/.test(await row.innerText()));
  // The new upload opens its details by itself; a click (or Enter) toggles them.
  if (await row.getAttribute('aria-expanded') !== 'true') await row.click();
  await page.locator('img.thumb').first().waitFor();
  const thumb = await page.locator('img.thumb').first().evaluate((img) => img.complete && img.naturalWidth > 0);
  check('the dataset preview renders', thumb);
  check('class counts are shown', /circle[\s\S]*8/.test(await page.locator('section[data-page=datasets]').innerText()));
  await screenshot('datasets');

  await form.locator('input[name=name]').fill('broken');
  await form.locator('input[type=file][name=file]').setInputFiles(join(TMP, 'broken.tar'));
  await form.locator('[type=submit]').click();
  const err = page.locator('section[data-page=datasets] .error-box');
  await err.first().waitFor();
  check('a broken upload shows the server\'s reason', /archive|tar|recogni|format/i.test(await err.first().innerText()),
        await err.first().innerText());
});

// ---- the new-job form: a validation error, then a double submit that makes one job ----------
await step('new job form', async () => {
  await page.goto(BASE + '/#/new');
  const form = page.locator('form#new-job');
  await form.waitFor();
  await form.locator('select[name=method]').selectOption('pretrain');
  await form.locator('select[name=dataset]').selectOption(solid.id);
  await form.locator('select[name="model.arch"]').selectOption('custom');
  for (const [k, v] of Object.entries(TINY)) {
    if (k === 'arch') continue;
    const input = form.locator(`[name="model.${k}"]`);
    if (await input.evaluate((el) => el.tagName === 'SELECT')) await input.selectOption(v);
    else await input.fill(v);
  }
  await form.locator('[name="hyperparameters.steps"]').fill('60');
  await form.locator('[name="hyperparameters.batch_size"]').fill('4');
  await form.locator('[name="hyperparameters.learning_rate"]').fill('-1');
  await form.locator('[name="eval.sample_every"]').fill('20');
  await form.locator('[name="eval.fid_every"]').fill('0');
  await form.locator('[name="checkpoint.every"]').fill('30');
  await form.locator('[name="checkpoint.keep"]').fill('2');
  await screenshot('new-job');

  const before = await jobCount();
  await form.locator('button[type=submit]').click();
  const slot = form.locator('[data-error-for="hyperparameters.learning_rate"]');
  await slot.waitFor({ state: 'visible' });
  check('the validation error sits next to its field', /learning_rate/.test(await slot.innerText()), await slot.innerText());
  check('the field is marked invalid',
        await form.locator('[name="hyperparameters.learning_rate"]').getAttribute('aria-invalid') === 'true');
  await screenshot('new-job-error');

  await form.locator('[name="hyperparameters.learning_rate"]').fill('0.001');
  const keys = [];
  page.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/jobs')) keys.push(r.headers()['idempotency-key']); });
  await form.locator('button[type=submit]').dblclick();
  await page.waitForURL(/#\/jobs\/job_/);
  jobId = page.url().match(/#\/jobs\/(job_[0-9a-f]+)/)[1];
  check('every submit carried an Idempotency-Key', keys.length >= 1 && keys.every((k) => k && k === keys[0]), JSON.stringify(keys));
  check('a double submit made one job', (await jobCount()) === before + 1);
});

// ---- the job page: live to succeeded, a sample, a checkpoint download, promotion ------------
await step('job page', async () => {
  const root = page.locator(`section[data-page=job][data-job="${jobId}"]`);
  await root.waitFor();
  await root.locator('[data-field=status] [data-status=succeeded]').waitFor({ timeout: 120000 });
  check('the job reached succeeded', true);
  const img = root.locator('.samples button img').first();
  await img.waitFor();
  await page.waitForFunction((id) => {
    const i = document.querySelector(`section[data-job="${id}"] .samples button img`);
    return i && i.complete && i.naturalWidth > 0;
  }, jobId);
  check('a sample image renders', true);
  await root.locator('.samples button').first().click();
  const big = page.locator('dialog.lightbox img');
  await big.waitFor();
  check('a sample opens large', await big.evaluate((i) => i.complete && i.naturalWidth > 0));
  await page.keyboard.press('Escape');
  await page.locator('dialog.lightbox').waitFor({ state: 'detached' });
  check('the loss chart is drawn', await root.locator('figure[data-chart="Loss"] canvas').count() === 1);
  await screenshot('job');

  const row = root.locator('tr[data-checkpoint]').last();
  await row.waitFor();
  const shown = (await row.locator('[data-field=sha256]').innerText()).trim();
  const [download] = await Promise.all([page.waitForEvent('download'), row.locator('a[data-action=download]').click()]);
  const saved = join(TMP, 'downloaded.safetensors');
  await download.saveAs(saved);
  const name = await row.getAttribute('data-checkpoint');
  const listed = (await api('GET', `/jobs/${jobId}/checkpoints`)).body.data.find((c) => c.name === name);
  check('the downloaded checkpoint matches the shown sha256', sha256(saved) === shown, `${sha256(saved)} vs ${shown}`);
  check('the shown sha256 is the API\'s', listed && listed.sha256 === shown);

  await row.locator('button[data-action=promote]').click();
  for (let i = 0; i < 50; i++) {
    const models = (await api('GET', '/models')).body.data;
    if (models.some((m) => m.source_job === jobId)) break;
    await page.waitForTimeout(100);
  }
  const models = (await api('GET', '/models')).body.data;
  check('promote made a model from the checkpoint', models.some((m) => m.source_job === jobId && m.source_checkpoint === name));

  // pin and unpin: the tag and the button follow, the API agrees
  check('the newest checkpoint is tagged newest', (await row.locator('[data-kept]').allInnerTexts()).includes('newest'));
  await row.locator('button[data-action=pin]').click();
  const pinnedRow = root.locator(`tr[data-checkpoint="${name}"][data-pinned=true]`);
  await pinnedRow.waitFor();
  check('pinning tags it pinned and offers Unpin', (await pinnedRow.locator('[data-kept=pinned]').count()) === 1 &&
    (await pinnedRow.locator('button[data-action=pin]').innerText()).trim() === 'Unpin');
  check('the API says pinned', (await api('GET', `/jobs/${jobId}/checkpoints`)).body.data.find((c) => c.name === name)?.pinned === true);
  await pinnedRow.locator('button[data-action=pin]').click();
  await root.locator(`tr[data-checkpoint="${name}"][data-pinned=false]`).waitFor();
  check('unpinned again', (await api('GET', `/jobs/${jobId}/checkpoints`)).body.data.find((c) => c.name === name)?.pinned === false);
});

// ---- the models page lists it ------------------------------------------------------------
await step('models page', async () => {
  await page.goto(BASE + '/#/models');
  await page.locator('tr[data-model]').first().waitFor();
  check('the promoted model is listed', /promoted from the UI/.test(await page.locator('section[data-page=models]').innerText()));
  await screenshot('models');
});

// ---- a PEFT job through the form: the options follow the choice; method and trainable counts shown
// A count as the UI writes it ("1.2 M", "51 k"), and its trainable phrase, written out again here.
const count = (n) => {
  for (const [u, s] of [['B', 1e9], ['M', 1e6], ['k', 1e3]]) if (n >= s) return `${n / s < 10 ? Number((n / s).toFixed(1)) : Math.round(n / s)} ${u}`;
  return String(n);
};
const trainableText = (p) => {
  const pct = (100 * p.trainable) / p.total;
  return `${count(p.trainable)} of ${count(p.total)} trainable (${pct >= 10 ? pct.toFixed(0) : pct >= 1 ? pct.toFixed(1) : Number(pct.toPrecision(2))}%)`;
};
let peftId = null;
await step('peft job', async () => {
  const base = (await api('GET', '/models')).body.data.find((m) => m.source_job === jobId);
  await page.goto(BASE + '/#/new');
  const form = page.locator('form#new-job');
  await form.waitFor();
  const shown = (path) => form.locator(`[data-field-for="${path}"]`).isVisible();
  const lr = form.locator('[name="hyperparameters.learning_rate"]');
  await form.locator('select[name=method]').selectOption('full');
  check('no adapter options without a peft', !(await shown('peft_options.rank')) && !(await shown('peft_options.difffit_blocks')));
  check('the learning rate starts at the server default', await lr.inputValue() === '0.0001', await lr.inputValue());
  await form.locator('select[name=peft]').selectOption('difffit');
  check('DiffFit shows its blocks, not LoRA\'s options', await shown('peft_options.difffit_blocks') && !(await shown('peft_options.rank')));
  check('a peft moves a default learning rate to 1e-3', await lr.inputValue() === '0.001', await lr.inputValue());
  await form.locator('select[name=peft]').selectOption('bitfit');
  check('BitFit has no options', !(await shown('peft_options.difffit_blocks')) && !(await shown('peft_options.targets')));
  await form.locator('select[name=peft]').selectOption('');
  check('no peft: the learning rate default is back', await lr.inputValue() === '0.0001', await lr.inputValue());
  await form.locator('select[name=method]').selectOption('pretrain');
  check('pretrain offers no peft', !(await shown('peft')));
  await form.locator('select[name=method]').selectOption('full');
  await form.locator('select[name=peft]').selectOption('lora');
  check('LoRA shows rank, alpha and the targets', await shown('peft_options.rank') && await shown('peft_options.alpha') &&
        await shown('peft_options.targets') && !(await shown('peft_options.difffit_blocks')));
  await form.locator('select[name=dataset]').selectOption(solid.id);
  await form.locator('select[name=base_model]').selectOption(base.id);
  await form.locator('[name="peft_options.rank"]').fill('64');
  await form.locator('#f-peft-target-fc1').uncheck();
  await form.locator('[name="hyperparameters.steps"]').fill('6');
  await form.locator('[name="hyperparameters.batch_size"]').fill('4');
  await form.locator('[name="eval.sample_every"]').fill('0');
  await form.locator('[name="eval.fid_every"]').fill('0');
  await form.locator('[name="checkpoint.every"]').fill('6');
  await screenshot('new-job-peft');
  await form.locator('button[type=submit]').click();
  const slot = form.locator('[data-error-for="peft_options.rank"]');
  await slot.waitFor({ state: 'visible' });
  check('a rank the base model cannot hold is refused next to the rank', /rank/.test(await slot.innerText()), await slot.innerText());
  await form.locator('[name="peft_options.rank"]').fill('4');
  await form.locator('button[type=submit]').click();
  await page.waitForURL(/#\/jobs\/job_/);
  peftId = page.url().match(/#\/jobs\/(job_[0-9a-f]+)/)[1];
  const job = (await api('GET', `/jobs/${peftId}`)).body;
  check('the form sent the peft and its options', job.spec.peft === 'lora' && job.spec.peft_options.rank === 4 &&
        job.spec.peft_options.targets.join() === 'qkv,proj,fc2' && job.spec.hyperparameters.learning_rate === 0.001,
        JSON.stringify([job.spec.peft, job.spec.peft_options, job.spec.hyperparameters.learning_rate]));
  check('fewer trainable parameters than the model has', job.parameters && job.parameters.trainable < job.parameters.total,
        JSON.stringify(job.parameters));
  const root = page.locator(`section[data-page=job][data-job="${peftId}"]`);
  await root.locator('[data-field=status] [data-status=succeeded]').waitFor({ timeout: 120000 });
  check('the job page shows the method with its peft', (await root.locator('[data-field=method]').innerText()).trim() === 'full + LoRA r4',
        await root.locator('[data-field=method]').innerText());
  check('the job page shows the trainable count', (await root.locator('[data-field=parameters]').innerText()).trim() === trainableText(job.parameters),
        `${await root.locator('[data-field=parameters]').innerText()} vs ${trainableText(job.parameters)}`);
  await screenshot('job-peft');

  // promote the adapter as it is, and merged
  const row = root.locator('tr[data-checkpoint]').last();
  await row.waitFor();
  const promoted = async (merged) => {
    for (let i = 0; i < 50; i++) {
      const ms = (await api('GET', '/models')).body.data.filter((m) => m.source_job === peftId && Boolean(m.config.peft) === !merged);
      if (ms.length) return ms[0];
      await page.waitForTimeout(100);
    }
    return null;
  };
  await row.locator('button[data-action=promote]').click();
  const adapter = await promoted(false);
  check('Promote keeps the LoRA adapter on its base', adapter && adapter.config.peft.kind === 'lora' && adapter.config.peft.base_model === base.id,
        JSON.stringify(adapter?.config));
  await row.locator('button[data-action=promote-merged]').click();
  check('Promote merged makes a plain DiT', Boolean(await promoted(true)));

  await page.goto(BASE + '/#/jobs');
  const listed = page.locator(`tr[data-job="${peftId}"]`);
  await listed.waitFor();
  check('the jobs list shows the method with its peft', (await listed.locator('[data-field=method]').innerText()).trim() === 'full + LoRA r4');
  check('the jobs list shows the trainable count', (await listed.locator('[data-field=parameters]').innerText()).trim() === trainableText(job.parameters));
  check('a plain job shows all parameters trainable',
        /^all [\d.]+( [kMB])? trainable$/.test((await page.locator(`tr[data-job="${jobId}"] [data-field=parameters]`).innerText()).trim()));
  await page.goto(BASE + '/#/models');
  await page.locator(`tr[data-model="${adapter.id}"]`).waitFor();
  check('the models page says what the adapter is on',
        /LoRA r4 adapter on/.test(await page.locator(`tr[data-model="${adapter.id}"]`).innerText()));
});

// ---- cancel a running job ------------------------------------------------------------------
let longId = null;
await step('cancel', async () => {
  const r = await api('POST', '/jobs', {
    method: 'pretrain', dataset: solid.id, model: { arch: 'custom', depth: 1, hidden_size: 16, num_heads: 2, patch_size: 2, image_size: 8 },
    hyperparameters: { steps: 200000, batch_size: 4, learning_rate: 1e-3 }, eval: { sample_every: 0, fid_every: 0 },
    checkpoint: { every: 100000 },
  });
  longId = r.body.id;
  await page.goto(`${BASE}/#/jobs/${longId}`);
  const root = page.locator(`section[data-page=job][data-job="${longId}"]`);
  await root.locator('[data-field=status] [data-status=running]').waitFor({ timeout: 60000 });
  await page.waitForFunction((id) => /[1-9]/.test(document.querySelector(`section[data-job="${id}"] [data-field=progress]`)?.innerText || ''), longId);
  await screenshot('job-running');
  await root.locator('button[data-action=cancel]').click();
  await root.locator('[data-field=status] [data-status=cancelled]').waitFor({ timeout: 60000 });
  check('cancel from the job page cancels the job', (await api('GET', `/jobs/${longId}`)).body.status === 'cancelled');
});

// ---- a failed job shows its error code and last log line -----------------------------------
await step('failed job', async () => {
  const r = await api('POST', '/jobs', {
    method: 'pretrain', dataset: solid.id, model: { arch: 'custom', depth: 1, hidden_size: 16, num_heads: 2, patch_size: 2, image_size: 8 },
    hyperparameters: { steps: 300, batch_size: 4, learning_rate: 1e6 }, eval: { sample_every: 0, fid_every: 0 },
  });
  await page.goto(`${BASE}/#/jobs/${r.body.id}`);
  const panel = page.locator(`section[data-job="${r.body.id}"] [data-field=error]`);
  await panel.waitFor({ timeout: 60000 });
  await page.waitForFunction((id) => /nan_loss/.test(document.querySelector(`section[data-job="${id}"] [data-field=error]`)?.innerText || ''), r.body.id);
  check('the failure panel names the error code', /nan_loss/.test(await panel.innerText()));
  await screenshot('job-failed');
});

// ---- the jobs list: live, filtered ---------------------------------------------------------
await step('jobs list', async () => {
  await page.goto(BASE + '/#/jobs');
  await page.locator(`tr[data-job="${jobId}"] [data-status=succeeded]`).waitFor();
  const r = await api('POST', '/jobs', {
    method: 'pretrain', dataset: solid.id, model: { arch: 'custom', depth: 1, hidden_size: 16, num_heads: 2, patch_size: 2, image_size: 8 },
    hyperparameters: { steps: 20, batch_size: 4 }, eval: { sample_every: 0, fid_every: 0 },
  });
  await page.locator(`tr[data-job="${r.body.id}"]`).waitFor({ timeout: 10000 });
  check('a new job appears in the list without a reload', true);
  await page.locator(`tr[data-job="${r.body.id}"] [data-status=succeeded]`).waitFor({ timeout: 60000 });
  check('its status changes in place', true);
  await screenshot('jobs');
  await page.goto(BASE + '/#/jobs?status=cancelled');
  await page.locator(`tr[data-job="${longId}"]`).waitFor();
  check('the status filter shows only that status', await page.locator('tr[data-job] [data-status]').evaluateAll(
    (els) => els.length > 0 && els.every((e) => e.dataset.status === 'cancelled')));
  // Keyboard: from a fresh load, Tab goes to the skip link, the navigation, and on to a job,
  // which Enter opens.
  await page.goto('about:blank');
  await page.goto(BASE + '/#/jobs');
  await page.locator('tr[data-job]').first().waitFor();
  const seen = [];
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    const where = await page.evaluate(() => {
      const a = document.activeElement;
      return a.closest('tr[data-job]') && a.tagName === 'A' ? 'job' : a.closest('header') ? 'header' : a.className || a.tagName;
    });
    seen.push(where);
    if (where === 'job') break;
  }
  check('Tab reaches the skip link, the navigation, then a job', seen[0] === 'skip' && seen.includes('header') && seen.at(-1) === 'job',
        seen.join(','));
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/jobs\/job_/);
  check('Enter on a job opens it', true);
});

// ---- compare two jobs ----------------------------------------------------------------------
await step('compare', async () => {
  const done = (await api('GET', '/jobs?status=succeeded&limit=100')).body.data.map((j) => j.id);
  await page.goto(`${BASE}/#/compare?jobs=${done.slice(0, 2).join(',')}`);
  const root = page.locator('section[data-page=compare]');
  await root.locator('figure[data-chart="Loss"] canvas').waitFor();
  check('compare overlays one loss series per job', true);
  await page.waitForFunction(() => document.querySelectorAll('.side-by-side img').length >= 1);
  check('compare shows the latest samples side by side', await root.locator('.side-by-side img').count() >= 1);
  await screenshot('compare');
});

// ---- the server down: a banner, and recovery --------------------------------------------------
await step('server down', async () => {
  await page.goto(BASE + '/#/jobs');
  await page.locator('tr[data-job]').first().waitFor();
  await page.route(/\/(jobs|health|datasets|models)(\?|\/|$)/, (route) => route.abort('connectionrefused'));
  const banner = page.locator('#banner');
  await banner.waitFor({ state: 'visible', timeout: 10000 });
  check('an unreachable server shows a banner', /cannot be reached/.test(await banner.innerText()));
  await screenshot('server-down');
  await page.unroute(/\/(jobs|health|datasets|models)(\?|\/|$)/);
  await banner.waitFor({ state: 'hidden', timeout: 10000 });
  check('the banner goes once the server answers', true);
});

// ---- API keys: a key made while the server runs is needed from then on; the UI asks for it,
// sends it on every fetch and the event stream, and opens a session so images and downloads work.
await step('api key', async () => {
  const key = execFileSync(BIN, ['keys', 'create', '--scope', 'submit', '--name', 'e2e', '--data-dir', DATA],
                           { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  check('keys create prints one secret', /^dtk_[0-9a-f]{64}$/.test(key), key);
  await new Promise((r) => setTimeout(r, 1500)); // the server re-counts keys every second
  check('without the key the API refuses', (await api('GET', '/jobs')).status === 401);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const p2 = await ctx.newPage();
  p2.setDefaultTimeout(15000);
  p2.on('pageerror', (e) => pageErrors.push(e.message));
  const sent = [];
  p2.on('request', (r) => sent.push([new URL(r.url()).pathname, r.headers().authorization || '']));
  await p2.goto(`${BASE}/#/jobs`);
  const dlg = p2.locator('#key-dialog');
  await dlg.waitFor({ state: 'visible' });
  check('a 401 asks for an API key', /API key/.test(await dlg.innerText()));
  await screenshot('api-key', p2);
  await p2.locator('#key-input').fill(key);
  await p2.locator('#key-form button[type=submit]').click();
  await p2.locator(`tr[data-job="${jobId}"]`).waitFor();
  check('with the key the jobs list loads', true);
  await p2.goto(`${BASE}/#/jobs/${jobId}`);
  const root = p2.locator(`section[data-job="${jobId}"]`);
  await root.locator('[data-status=succeeded]').waitFor();
  await p2.waitForFunction((id) => {
    const i = document.querySelector(`section[data-job="${id}"] .samples button img`);
    return i && i.complete && i.naturalWidth > 0;
  }, jobId);
  check('sample images load through the session cookie', true);
  const row = root.locator('tr[data-checkpoint]').last();
  const shown = (await row.locator('[data-field=sha256]').innerText()).trim();
  const [download] = await Promise.all([p2.waitForEvent('download'), row.locator('a[data-action=download]').click()]);
  const saved = join(TMP, 'downloaded-with-key.safetensors');
  await download.saveAs(saved);
  check('a download works with the key on', sha256(saved) === shown);
  const stream = sent.filter(([p]) => p === `/jobs/${jobId}/events`);
  check('the event stream sends the key', stream.length > 0 && stream.every(([, a]) => a === `Bearer ${key}`));
  check('no request carries the key in its URL', !sent.some(([p]) => p.includes(key)));

  const listed = JSON.parse(execFileSync(BIN, ['keys', 'list', '--json', '--data-dir', DATA], { encoding: 'utf8' }));
  const id = listed.data.find((k) => k.name === 'e2e').id;
  execFileSync(BIN, ['keys', 'revoke', id, '--data-dir', DATA], { stdio: 'ignore' });
  await p2.goto(`${BASE}/#/jobs`);
  await p2.reload();
  await dlg.waitFor({ state: 'visible' });
  check('a revoked key is refused and the UI asks again', /refused the saved API key/.test(await dlg.innerText()),
        await dlg.innerText());
  await ctx.close();
});

check('no script errors on any page', pageErrors.length === 0, pageErrors.slice(0, 5).join(' | '));
check('screenshots of every page at two widths', shots.length >= 22, String(shots.length));
await browser.close();
console.log(`web_ui.mjs: ${passed} passed, ${failed} failed; screenshots in ${join(TMP, 'screenshots')}`);
process.exit(failed ? 1 : 0);
