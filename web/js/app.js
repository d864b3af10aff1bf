// app.js — the page shell: hash routing to the page modules, the "server unreachable" banner and
// the API-key dialog. Routes:
//   #/jobs[?status=S]   the jobs list          #/jobs/{id}            one job, live
//   #/new[?from={id}]   the new-job form       #/compare?jobs=a,b,…   jobs side by side
//   #/datasets          datasets and uploads   #/models               models, uploads, promotion

import { onReachability, setApiKey, setAuthPrompt, apiKey, openSession } from './api.js';
import { h, fill, errorBox } from './ui.js';
import * as jobsPage from './pages/jobs.js';
import * as jobPage from './pages/job.js';
import * as newJobPage from './pages/new_job.js';
import * as comparePage from './pages/compare.js';
import * as datasetsPage from './pages/datasets.js';
import * as modelsPage from './pages/models.js';

const main = document.getElementById('main');
let cleanup = null;

// Parses the hash into {parts: ['jobs', 'job_…'], query: URLSearchParams}.
function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, q] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q || '') };
}

function pageFor(parts) {
  switch (parts[0] || 'jobs') {
    case 'jobs': return parts[1] ? { page: jobPage, nav: 'jobs' } : { page: jobsPage, nav: 'jobs' };
    case 'new': return { page: newJobPage, nav: 'new' };
    case 'compare': return { page: comparePage, nav: 'compare' };
    case 'datasets': return { page: datasetsPage, nav: 'datasets' };
    case 'models': return { page: modelsPage, nav: 'models' };
    default: return null;
  }
}

// Renders the page of the current hash; the previous page's cleanup (timers, streams) runs first.
function render() {
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  const r = route();
  const found = pageFor(r.parts);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (found && a.dataset.nav === found.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  fill(main);
  if (!found) {
    main.append(errorBox({ message: `There is no page at #/${r.parts.join('/')}.` }, 'Page not found'),
                h('p', {}, h('a', { href: '#/jobs' }, 'Back to the jobs')));
    return;
  }
  try {
    cleanup = found.page.render(main, r.parts.slice(1), r.query);
  } catch (e) {
    main.append(errorBox(e, 'This page failed to render'));
    console.error(e);
  }
}

// ---- the server-unreachable banner ----------------------------------------------------------

const banner = document.getElementById('banner');
let healthTimer = null;

onReachability((ok) => {
  if (ok) {
    if (!banner.hidden) {
      banner.hidden = true;
      clearInterval(healthTimer);
      healthTimer = null;
      render();
    }
    return;
  }
  fill(banner, h('strong', {}, 'The difftune server cannot be reached. '),
       'Retrying every 3 seconds; the page refreshes when it answers.');
  banner.hidden = false;
  if (!healthTimer) {
    healthTimer = setInterval(async () => {
      try {
        const res = await fetch('/health', { headers: { Accept: 'application/json' } });
        if (res.status < 500 || res.status === 503) {
          banner.hidden = true;
          clearInterval(healthTimer);
          healthTimer = null;
          render();
        }
      } catch { /* still down */ }
    }, 3000);
  }
});

// ---- the API-key dialog ---------------------------------------------------------------------

const keyDialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');
let keyWaiters = [];

setAuthPrompt((message) => new Promise((resolve) => {
  keyWaiters.push(resolve);
  if (keyDialog.open) return;
  document.getElementById('key-reason').textContent =
    (apiKey() ? 'The server refused the saved API key: ' : 'This server needs an API key: ') + message;
  keyInput.value = '';
  keyDialog.showModal();
  keyInput.focus();
}));

function settleKey(ok) {
  const waiters = keyWaiters;
  keyWaiters = [];
  for (const w of waiters) w(ok);
}

let keyEntered = false;
document.getElementById('key-form').addEventListener('submit', async () => {
  keyEntered = true; // the dialog closes before the session is open: its close is not a cancel
  setApiKey(keyInput.value.trim());
  await openSession();
  keyEntered = false;
  settleKey(true);
});
document.getElementById('key-cancel').addEventListener('click', () => keyDialog.close());
keyDialog.addEventListener('close', () => { if (!keyEntered) settleKey(false); });

window.addEventListener('hashchange', render);
if (!location.hash) history.replaceState(null, '', '#/jobs');
// A saved key opens a session first (it ends when the server restarts), so images load.
openSession().finally(render);
