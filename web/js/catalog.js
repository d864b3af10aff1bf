// catalog.js — what the datasets and models pages share: the upload card (a form whose file goes
// up with api.upload, showing bytes sent and a Cancel button, then "Validating…" while the server
// checks the file, then the result or the server's error), the Delete button (confirm(), then a
// readable message when a queued or running job still uses the thing), and highlighting the row
// of something just added.

import { upload, del, getAll } from './api.js';
import { h, fill, errorBox, fmtBytes, toast } from './ui.js';

let uploadsInFlight = 0;

// Asks before the tab closes while an upload is running (the upload would be lost).
window.addEventListener('beforeunload', (e) => {
  if (uploadsInFlight > 0) e.preventDefault();
});

// "flowers.tar.gz" -> "flowers": the display name a file suggests.
function baseName(fileName) {
  return fileName.replace(/\.(tar\.(gz|bz2|xz)|tgz|tar|zip|gz|safetensors)$/i, '') || fileName;
}

// Title of the error box for a failed upload.
function uploadErrorTitle(err, rejectedTitle) {
  if (err.status === 413) return 'The file is too large';
  if (err.status === 422) return rejectedTitle;
  if (err.status === 0) return 'The upload failed';
  return 'The server refused the upload';
}

// A form that uploads one file with a display name to `path` (multipart: "file" and "name").
//   id            the form's id (the end-to-end test finds it by id)
//   accept        the file input's accept list; fileHint a line under it saying what is accepted
//   what          "dataset" | "model": used in labels and messages
//   rejectedTitle the error box title for a 422 (the server says which member or tensor is wrong)
//   describe(obj) the children of the success notice (what the server found in the file)
//   onUploaded(obj) called with the created object (the page reloads its list)
// Returns the form element. An upload keeps going when the page is left; its result then comes
// as a toast.
// extraFields: more .field elements for the form; query(): a query string ("?a=1" or "") for
// the upload's path, read when it is sent.
export function uploadForm({ id, path, accept, fileHint, what, rejectedTitle, describe, onUploaded,
                             extraFields = [], query = () => '' }) {
  const nameInput = h('input', { id: `${id}-name`, name: 'name', type: 'text', maxlength: 200,
                                 autocomplete: 'off', placeholder: `the file name` });
  const fileInput = h('input', { id: `${id}-file`, name: 'file', type: 'file', accept, required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Upload');
  const status = h('div', { class: 'upload-status', 'aria-live': 'polite' });
  let suggested = '';   // the name last filled in from a file name, replaced when the file changes

  fileInput.addEventListener('change', () => {
    const file = fileInput.files[0];
    if (!file) return;
    if (!nameInput.value || nameInput.value === suggested) {
      suggested = baseName(file.name);
      nameInput.value = suggested;
    }
  });

  const form = h('form', { id, class: 'upload-form' },
    h('div', { class: 'fields' },
      h('div', { class: 'field' },
        h('label', { for: nameInput.id }, 'Name'), nameInput,
        h('span', { class: 'hint' }, `How the ${what} is listed; defaults to the file name.`)),
      h('div', { class: 'field' },
        h('label', { for: fileInput.id }, 'File'), fileInput,
        h('span', { class: 'hint' }, fileHint)),
      ...extraFields),
    h('div', { class: 'row form-actions' }, submit),
    status);

  const setBusy = (busy) => {
    for (const el of [nameInput, fileInput, submit]) el.disabled = busy;
    submit.textContent = busy ? 'Uploading…' : 'Upload';
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const file = fileInput.files[0];
    if (!file) return;
    const name = nameInput.value.trim();

    const bar = h('progress', { class: 'upload-progress', max: file.size || 1, value: 0,
                                'aria-label': `upload of ${file.name}` });
    const text = h('span', { class: 'upload-text' });
    const cancel = h('button', { type: 'button', class: 'small' }, 'Cancel');
    let validating = false;
    const showSent = (sent, total) => {
      if (validating) return;
      if (total > 0 && sent >= total) {
        // Everything is sent: the server now extracts and checks the file before it answers.
        validating = true;
        bar.removeAttribute('value');
        fill(text, h('strong', {}, 'Validating…'), ` the server is checking ${file.name}`);
        cancel.hidden = true;
        return;
      }
      bar.max = total || 1;
      bar.value = sent;
      const pct = total ? Math.floor((sent / total) * 100) : 0;
      fill(text, `Uploading ${file.name}: ${fmtBytes(sent)} / ${fmtBytes(total)} (${pct}%)`);
    };
    showSent(0, file.size);
    fill(status, h('div', { class: 'upload-live' }, bar, h('div', { class: 'spread' }, text, cancel)));
    setBusy(true);
    uploadsInFlight++;

    const job = upload(path + query(), file, { name: name || undefined, onProgress: showSent });
    cancel.addEventListener('click', () => job.abort());
    job.promise.then((obj) => {
      form.reset();
      suggested = '';
      fill(status, h('div', { class: 'notice', role: 'status' }, describe(obj)));
      if (!form.isConnected) toast(`Uploaded ${what} “${obj.name}”.`);
      onUploaded(obj);
    }, (err) => {
      if (err.name === 'AbortError') {
        fill(status, h('p', { class: 'muted' }, `Upload of ${file.name} cancelled.`));
        return;
      }
      fill(status, errorBox(err, uploadErrorTitle(err, rejectedTitle)));
      if (!form.isConnected) toast(`Upload of ${file.name} failed: ${err.message}`, 'error');
    }).finally(() => {
      uploadsInFlight--;
      setBusy(false);
    });
  });
  return form;
}

// A Delete button for the dataset or model `obj` at `path`: asks confirm(), deletes, then calls
// onDeleted(). A failure goes to onError(errorBoxElement), for the page to show near the button:
// a 409 in_use says that a queued or running job uses it and links that job.
export function deleteButton({ path, what, obj, onDeleted, onError }) {
  const btn = h('button', { type: 'button', class: 'danger small', 'data-action': 'delete',
                            'aria-label': `Delete ${what} ${obj.name}` }, 'Delete');
  btn.addEventListener('click', async (e) => {
    e.stopPropagation();
    if (!confirm(`Delete ${what} “${obj.name}” (${obj.id})? Its files are removed; this cannot be undone.`)) return;
    btn.disabled = true;
    try {
      await del(path);
      toast(`Deleted ${what} “${obj.name}”.`);
      onDeleted();
    } catch (err) {
      btn.disabled = false;
      onError(deleteError(err, what, obj));
    }
  });
  return btn;
}

function deleteError(err, what, obj) {
  if (err.status !== 409 || err.code !== 'in_use') return errorBox(err, `Could not delete “${obj.name}”`);
  const box = errorBox({ message: `A queued or running job uses this ${what}, so it cannot be deleted ` +
                                  'until that job finishes or is cancelled.',
                         code: err.code, requestId: err.requestId },
                       `“${obj.name}” is in use`);
  const jobId = /job_[0-9a-f]{24}/.exec(err.message || '')?.[0];
  box.querySelector('p').after(
    h('p', {}, err.message, jobId ? [' ', h('a', { href: `#/jobs/${jobId}` }, 'Open the job')] : null));
  return box;
}

// Marks row as just added and scrolls it into view.
export function highlightRow(row) {
  if (!row) return;
  row.classList.add('highlight');
  row.scrollIntoView({ block: 'nearest' });
}

// Keeps box showing the catalog at path (GET, every page): table(items) renders it, and the item
// whose id was passed to load(id) is highlighted (its row is `tr[data-<kind>="<id>"]`). A load
// that a newer one overtook is dropped; a failure shows the error and a "Try again" button.
// Returns load([freshId]).
export function catalogList({ box, path, kind, plural, table }) {
  let loads = 0;
  let fresh = null;
  const load = async (freshId) => {
    if (freshId) fresh = freshId;
    const n = ++loads;
    try {
      const items = await getAll(path);
      if (n !== loads || !box.isConnected) return;
      fill(box, table(items));
      if (fresh) highlightRow(box.querySelector(`tr[data-${kind}="${fresh}"]`));
    } catch (err) {
      if (n !== loads) return;
      fill(box, errorBox(err, `Could not load the ${plural}`), h('button', { type: 'button', onclick: () => load() }, 'Try again'));
    }
  };
  return load;
}
