// The uno dashboard. Plain JavaScript, no framework and no build step: it
// reads the admin API (/admin/v1/…) with the admin key typed in at sign-in,
// kept in sessionStorage for this tab only. Every value from the API goes
// into the page as text (never as HTML).

import { barChart, lineChart, hbarChart, rateBar, rangeBar, stackBar } from './charts.js';

const KEY_STORAGE = 'uno.adminKey';
const PATHS = ['passthrough', 'primary', 'reflective', 'holdout'];

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || '',
  tenants: [],
  tenant: '',
  trafficHours: 24,
  expanded: new Set(),
  snapshots: [],
  diff: null,
  interactionsNext: null,
  loadSeq: 0,
};

const $ = (id) => document.getElementById(id);

/** Creates an HTML element: h('td', {class: 'num'}, 'text', child…). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

async function api(path, { method = 'GET', key = state.key } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (err) {
    throw new ApiError(0, `uno did not answer (${err.message}); is it running?`, path);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.error?.message || text.trim() || response.statusText || 'request failed';
    const err = new ApiError(response.status, message, path);
    if (response.status === 401 && key === state.key && state.key) expireSession(message);
    throw err;
  }
  return body;
}

const enc = encodeURIComponent;
const tenantPath = (rest) => `/admin/v1/tenants/${enc(state.tenant)}${rest}`;

// ---------------------------------------------------------------- formatting

/** Times from the API: Unix seconds, milliseconds or microseconds, or text. */
function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') {
    const ms = value > 1e14 ? value / 1000 : value > 1e11 ? value : value * 1000;
    return new Date(ms);
  }
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const hourTick = new Intl.DateTimeFormat(undefined, { hour: 'numeric' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

function fmtTime(value) {
  const d = toDate(value);
  return d ? dateTime.format(d) : '—';
}

function ago(value) {
  const d = toDate(value);
  if (!d) return '—';
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 0) return `in ${fmtDuration(-s)}`;
  if (s < 45) return 'just now';
  return `${fmtDuration(s)} ago`;
}

function fmtDuration(s) {
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function timeEl(value, text) {
  const d = toDate(value);
  return h('time', { datetime: d ? d.toISOString() : null, title: d ? d.toLocaleString() : null }, text ?? fmtTime(value));
}

const num = (v) => (v === null || v === undefined ? '—' : Number(v).toLocaleString());
const pct = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : `${(v * 100).toFixed(v < 0.1 && v > 0 ? 1 : 0)}%`);
const ms = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`);
const fixed = (v, d = 2) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
// Interaction ids are UUIDv7: their first digits are a timestamp, shared by
// neighbours, so the short form is the random tail.
const short = (id) => (id ? `…${String(id).slice(-8)}` : '—');

function badge(text, cls, title) {
  return h('span', { class: `badge ${cls || ''}`, title }, text);
}

const modeBadge = (mode) => badge(mode || '—', `mode-${mode || 'none'}`);

function errorBox(err, retry) {
  const where = err.path ? ` (${err.path})` : '';
  const status = err.status ? `${err.status}: ` : '';
  return h('div', { class: 'error-box', role: 'alert' },
    h('strong', {}, 'Could not load this part. '),
    h('span', {}, `${status}${err.message}${where}`),
    retry ? h('button', { type: 'button', class: 'btn small', onclick: retry }, 'Try again') : null);
}

function empty(text) {
  return h('p', { class: 'empty' }, text);
}

function toast(text, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  $('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 12000 : 5000);
}

// ---------------------------------------------------------------- dialogs

function confirmAction({ title, text, ok = 'Confirm', danger = false }) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  const button = $('confirm-ok');
  button.textContent = ok;
  button.className = `btn ${danger ? 'danger' : 'primary'}`;
  dialog.returnValue = '';
  dialog.showModal();
  $('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

// ---------------------------------------------------------------- session

function showLogin(message) {
  $('session').hidden = true;
  $('dashboard').hidden = true;
  $('dashboard').replaceChildren();
  $('login').hidden = false;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('admin-key').value = '';
  $('admin-key').focus();
}

function expireSession(message) {
  state.key = '';
  sessionStorage.removeItem(KEY_STORAGE);
  showLogin(`Signed out: the admin key was refused (${message}).`);
}

async function signIn(key) {
  const submit = $('login-submit');
  submit.disabled = true;
  submit.textContent = 'Checking…';
  try {
    const tenants = await api('/admin/v1/tenants', { key });
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    await start(tenants);
  } catch (err) {
    let message;
    if (err.status === 401) message = 'That admin key was not accepted. Check admin.key (UNO_ADMIN_KEY) on the server.';
    else if (err.status === 404) message = `The admin API is not enabled on this server: ${err.message}`;
    else if (err.status === 503) message = `The admin API has no database: ${err.message}`;
    else message = err.status ? `Sign-in failed (${err.status}): ${err.message}` : err.message;
    showLogin(message);
  } finally {
    submit.disabled = false;
    submit.textContent = 'Sign in';
  }
}

function signOut() {
  state.key = '';
  state.tenants = [];
  state.tenant = '';
  sessionStorage.removeItem(KEY_STORAGE);
  if (location.hash) history.replaceState(null, '', location.pathname);
  showLogin('');
}

// ---------------------------------------------------------------- routing

/** `#/<tenant>` or `#/<tenant>/interaction/<id>`. */
function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map((p) => decodeURIComponent(p));
  return { tenant: parts[0] || '', interaction: parts[1] === 'interaction' ? parts[2] || '' : '' };
}

const interactionHref = (id) => `#/${enc(state.tenant)}/interaction/${enc(id)}`;

async function start(tenantsBody) {
  state.tenants = (tenantsBody?.data || []).map((t) => t.tenant);
  $('login').hidden = true;
  $('session').hidden = false;
  $('dashboard').hidden = false;
  const select = $('tenant');
  select.replaceChildren(...state.tenants.map((t) => h('option', { value: t }, t)));
  if (!state.tenants.length) {
    $('dashboard').replaceChildren(
      h('div', { class: 'card' }, empty('No tenants yet. A tenant appears once it has keys, interactions or snapshots.')));
    return;
  }
  const wanted = route().tenant;
  state.tenant = state.tenants.includes(wanted) ? wanted : state.tenants[0];
  select.value = state.tenant;
  if (wanted !== state.tenant) history.replaceState(null, '', `#/${enc(state.tenant)}`);
  await loadAll();
  await onRoute();
}

async function onRoute() {
  if (!state.key) return;
  const r = route();
  if (r.tenant && r.tenant !== state.tenant && state.tenants.includes(r.tenant)) {
    state.tenant = r.tenant;
    $('tenant').value = r.tenant;
    state.expanded.clear();
    state.diff = null;
    await loadAll();
  }
  if (r.interaction) await showInteraction(r.interaction);
  else if ($('detail').open) $('detail').close();
}

// ---------------------------------------------------------------- layout

function card(id, title, { wide = false, actions = null, sub = null } = {}) {
  const body = h('div', { class: 'card-body', id: `${id}-body` }, h('p', { class: 'loading' }, 'Loading…'));
  return h('section', { class: `card ${wide ? 'wide' : ''}`, id, 'aria-labelledby': `${id}-title` },
    h('header', { class: 'card-head' },
      h('div', {},
        h('h2', { id: `${id}-title` }, title),
        sub ? h('p', { class: 'card-sub' }, sub) : null),
      actions ? h('div', { class: 'card-actions' }, actions) : null),
    body);
}

function layout() {
  const range = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Traffic window' },
    [24, 168].map((hours) =>
      h('button', {
        type: 'button',
        class: 'btn small',
        'aria-pressed': String(state.trafficHours === hours),
        onclick: () => {
          state.trafficHours = hours;
          layoutRange();
          loadTraffic();
        },
      }, hours === 24 ? '24 h' : '7 days')));
  $('dashboard').replaceChildren(
    h('div', { class: 'kpis', id: 'kpis', 'aria-label': 'Summary' }),
    h('div', { class: 'grid two-one' },
      card('traffic', 'Traffic', { actions: range, sub: 'Requests per hour, by how uno served them' }),
      card('latency', 'Added latency', { sub: 'Mean time uno adds to the upstream’s, per hour' })),
    h('div', { class: 'grid three' },
      card('feedback', 'Feedback', { sub: 'Ratings per day, last 30 days' }),
      card('learned', 'What uno learned this week', { sub: 'Changes over the last 7 days' }),
      card('worker', 'Learning worker', { sub: 'The background learner' })),
    card('clusters', 'Clusters', { wide: true, sub: 'From the active snapshot: how each group of similar requests is served, and why' }),
    card('snapshots', 'Snapshot history', { wide: true, sub: 'Every published version; the active one is served' }),
    card('interactions', 'Recent interactions', { wide: true, sub: 'Newest first, with their feedback' }),
  );
  function layoutRange() {
    for (const b of range.querySelectorAll('button')) {
      b.setAttribute('aria-pressed', String(b.textContent === (state.trafficHours === 24 ? '24 h' : '7 days')));
    }
  }
}

function body(id) {
  return $(`${id}-body`);
}

function chartWidth(id, fallback = 560) {
  const el = body(id);
  const w = el ? el.clientWidth : 0;
  return Math.max(280, Math.floor(w || fallback));
}

/** Runs `load` for one card, showing its error in the card. */
async function section(id, load) {
  const el = body(id);
  if (!el) return;
  const seq = state.loadSeq;
  try {
    const content = await load();
    if (seq !== state.loadSeq || !body(id)) return;
    body(id).replaceChildren(...[content].flat().filter(Boolean));
  } catch (err) {
    if (seq !== state.loadSeq || !body(id)) return;
    if (err.status === 401) return;
    body(id).replaceChildren(errorBox(err, () => section(id, load)));
  }
}

async function loadAll() {
  state.loadSeq += 1;
  document.title = `uno · ${state.tenant}`;
  for (const k of Object.keys(cache)) delete cache[k];
  layout();
  await Promise.all([
    loadTraffic(),
    loadFeedback(),
    loadLearned(),
    loadClusters(),
    loadSnapshots(),
    loadInteractions(),
    loadWorker(),
  ]);
  $('updated').textContent = `Updated ${hourFmt.format(new Date())}`;
}

// ---------------------------------------------------------------- summary

const cache = {};

async function loadKpis() {
  const el = $('kpis');
  const [traffic, feedback, clusters] = await Promise.allSettled([
    trafficData(),
    feedbackData(),
    clustersData(),
  ]);
  const kpi = (label, value, note, cls = '') =>
    h('div', { class: `kpi ${cls}` }, h('div', { class: 'kpi-label' }, label), h('div', { class: 'kpi-value' }, value), h('div', { class: 'kpi-note', title: note || null }, note || ''));
  const out = [];
  if (traffic.status === 'fulfilled') {
    const rows = traffic.value.data || [];
    const req = rows.reduce((a, r) => a + (r.requests || 0), 0);
    const errs = rows.reduce((a, r) => a + (r.errors || 0), 0);
    const weighted = (f) => {
      const w = rows.filter((r) => Number.isFinite(r[f]) && r.requests);
      const n = w.reduce((a, r) => a + r.requests, 0);
      return n ? w.reduce((a, r) => a + r[f] * r.requests, 0) / n : null;
    };
    const window = state.trafficHours === 24 ? 'last 24 h' : 'last 7 days';
    out.push(
      kpi('Requests', num(req), window),
      kpi('Errors', req ? pct(errs / req) : '—', `${num(errs)} failed`, errs ? 'warn' : ''),
      kpi('Added latency', ms(weighted('mean_added_ms')), `mean; total ${ms(weighted('mean_total_ms'))}`),
    );
  } else {
    out.push(kpi('Traffic', '—', 'not available'));
  }
  if (feedback.status === 'fulfilled') {
    const rows = feedback.value.data || [];
    const up = rows.reduce((a, r) => a + (r.up || 0), 0);
    const down = rows.reduce((a, r) => a + (r.down || 0), 0);
    out.push(kpi('Thumbs down', up + down ? pct(down / (up + down)) : '—', `of ${num(up + down)} ratings, 30 days`));
  }
  if (clusters.status === 'fulfilled') {
    const list = clusters.value.data || [];
    const count = (m) => list.filter((c) => c.mode === m).length;
    out.push(
      kpi('Active snapshot', clusters.value.snapshot_version ? `v${clusters.value.snapshot_version}` : 'none', clusters.value.snapshot_version ? 'served now' : 'nothing learned yet'),
      kpi('Clusters', num(list.length), list.length ? ['primary', 'reflective', 'passthrough'].map((m) => `${count(m)} ${m.slice(0, 4)}`).join(' · ') : 'none yet'),
    );
  }
  el.replaceChildren(...out);
}

// ---------------------------------------------------------------- traffic

function trafficData() {
  const key = `traffic:${state.tenant}:${state.trafficHours}`;
  cache[key] ??= api(`/admin/v1/stats/traffic?tenant=${enc(state.tenant)}&hours=${state.trafficHours}`);
  return cache[key].catch((err) => {
    delete cache[key];
    throw err;
  });
}

/** Fills the window with empty buckets so quiet hours show as gaps. */
function hourly(body) {
  const size = (body.bucket_seconds || 3600) * 1000;
  const rows = body.data || [];
  const byStart = new Map();
  for (const r of rows) {
    const d = toDate(r.start);
    if (d) byStart.set(Math.floor(d.getTime() / size) * size, r);
  }
  if (byStart.size !== rows.length) return rows.map((r) => ({ ...r, t: toDate(r.start) }));
  const now = Math.floor(Date.now() / size) * size;
  const count = Math.ceil((state.trafficHours * 3600 * 1000) / size);
  const out = [];
  for (let i = count - 1; i >= 0; i--) {
    const t = now - i * size;
    out.push({ ...(byStart.get(t) || { requests: 0, errors: 0, by_path: {} }), t: new Date(t) });
  }
  return out;
}

function bucketLabel(d) {
  if (!d) return '';
  return state.trafficHours > 24 ? dayFmt.format(d) : hourTick.format(d);
}

async function loadTraffic() {
  const p = trafficData();
  await Promise.all([
    section('traffic', async () => {
      const rows = hourly(await p);
      const total = rows.reduce((a, r) => a + (r.requests || 0), 0);
      if (!total) return empty('No requests in this window.');
      const labels = rows.map((r) => bucketLabel(r.t));
      const labelsSparse = state.trafficHours > 24
        ? labels.map((l, i) => (i > 0 && labels[i - 1] === l ? '' : l))
        : labels;
      const series = PATHS.map((p) => ({ name: p, cls: `path-${p}`, values: rows.map((r) => r.by_path?.[p] || 0) }));
      const other = rows.map((r) => Math.max(0, (r.requests || 0) - PATHS.reduce((a, p) => a + (r.by_path?.[p] || 0), 0)));
      if (other.some((v) => v > 0)) series.push({ name: 'other', cls: 'path-other', values: other });
      const titles = rows.map((r) => `${r.t ? r.t.toLocaleString() : ''}\n${num(r.requests)} requests, ${num(r.errors)} errors\n` +
        PATHS.map((p) => `${p}: ${num(r.by_path?.[p] || 0)}`).join('\n'));
      return [
        barChart({
          width: chartWidth('traffic'), height: 200, labels: labelsSparse, series, titles, integer: true,
          label: `Requests per hour by path: ${num(total)} in total`,
        }),
        legend(series.map((se) => [se.name, se.cls])),
      ];
    }),
    section('latency', async () => {
      const rows = hourly(await p);
      if (!rows.some((r) => Number.isFinite(r.mean_added_ms))) return empty('No latency measured in this window.');
      const labels = rows.map((r) => bucketLabel(r.t));
      const labelsSparse = state.trafficHours > 24 ? labels.map((l, i) => (i > 0 && labels[i - 1] === l ? '' : l)) : labels;
      const values = rows.map((r) => (r.requests && Number.isFinite(r.mean_added_ms) ? r.mean_added_ms : null));
      const titles = rows.map((r) => `${r.t ? r.t.toLocaleString() : ''}\nadded ${ms(r.mean_added_ms)} · total ${ms(r.mean_total_ms)}`);
      return [
        lineChart({
          width: chartWidth('latency'), height: 200, labels: labelsSparse,
          series: [{ name: 'added', cls: 'added', values }], titles,
          label: 'Mean added latency per hour in milliseconds', format: (v) => `${+v.toFixed(1)}`,
        }),
        legend([['mean added latency (ms)', 'added']]),
      ];
    }),
    loadKpis(),
  ]);
}

function legend(items) {
  return h('ul', { class: 'legend' }, items.map(([name, cls]) => h('li', {}, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), name)));
}

// ---------------------------------------------------------------- feedback

function feedbackData() {
  const key = `feedback:${state.tenant}`;
  cache[key] ??= api(`/admin/v1/stats/feedback?tenant=${enc(state.tenant)}&days=30`);
  return cache[key].catch((err) => {
    delete cache[key];
    throw err;
  });
}

async function loadFeedback() {
  await section('feedback', async () => {
    const rows = (await feedbackData()).data || [];
    const byDay = new Map(rows.map((r) => [String(r.day).slice(0, 10), r]));
    const days = [];
    const today = new Date();
    for (let i = 29; i >= 0; i--) {
      const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
      const key = d.toISOString().slice(0, 10);
      days.push({ day: key, d, ...(byDay.get(key) || { up: 0, down: 0, text: 0 }) });
    }
    // Days the API has that fall outside the window computed here (clock
    // skew, another time zone) are not dropped.
    const known = new Set(days.map((d) => d.day));
    const extra = rows.filter((r) => !known.has(String(r.day).slice(0, 10)));
    const all = extra.length ? rows.map((r) => ({ ...r, d: toDate(r.day) })) : days;
    const up = all.reduce((a, r) => a + (r.up || 0), 0);
    const down = all.reduce((a, r) => a + (r.down || 0), 0);
    const text = all.reduce((a, r) => a + (r.text || 0), 0);
    if (!up && !down && !text) return empty('No feedback in the last 30 days.');
    const labels = all.map((r) => (r.d ? dayFmt.format(r.d) : String(r.day)));
    const titles = all.map((r, i) => `${labels[i]}: ${num(r.up || 0)} up, ${num(r.down || 0)} down, ${num(r.text || 0)} text`);
    return [
      barChart({
        width: chartWidth('feedback'), height: 200, labels, titles, integer: true,
        series: [{ name: 'up', cls: 'up', values: all.map((r) => r.up || 0) }],
        below: [{ name: 'down', cls: 'down', values: all.map((r) => r.down || 0) }],
        label: `Feedback per day: ${up} up, ${down} down, ${text} text comments`,
      }),
      h('div', { class: 'legend-row' },
        legend([[`up (${num(up)})`, 'up'], [`down (${num(down)})`, 'down']]),
        h('span', { class: 'muted' }, `${num(text)} text comments`)),
    ];
  });
}

// ---------------------------------------------------------------- learned

async function loadLearned() {
  await section('learned', async () => {
    const body = await api(`${tenantPath('/learned')}?days=7`);
    const added = body.rules_added || [];
    const removed = body.rules_removed || [];
    const modes = body.mode_changes || [];
    const versions = body.snapshots || [];
    if (!versions.length && !added.length && !removed.length && !modes.length) {
      return empty('Nothing new in the last 7 days.');
    }
    const stat = (n, label, cls) => h('div', { class: `stat ${cls}` }, h('span', { class: 'stat-n' }, num(n)), h('span', { class: 'stat-label' }, label));
    const list = (items, render) => h('ul', { class: 'changes' }, items.slice(0, 8).map(render),
      items.length > 8 ? h('li', { class: 'muted' }, `… and ${items.length - 8} more`) : null);
    const vlist = versions.map((v) => (typeof v === 'object' ? v.version : v));
    return [
      h('div', { class: 'stats' },
        stat(vlist.length, vlist.length === 1 ? 'snapshot' : 'snapshots', ''),
        stat(added.length, 'rules added', 'plus'),
        stat(removed.length, 'rules removed', 'minus'),
        stat(modes.length, 'mode changes', '')),
      vlist.length ? h('p', { class: 'muted' }, `Published since ${fmtTime(body.since)}: ${vlist.map((v) => `v${v}`).join(', ')}`) : null,
      added.length ? h('h3', {}, 'New rules') : null,
      added.length ? list(added, (r) => h('li', { class: 'plus' },
        h('span', { class: 'sign', 'aria-label': 'added' }, '+'),
        h('span', { class: 'rule-text' }, r.text),
        h('span', { class: 'meta' }, `${r.cluster} · support ${num(r.support)}`))) : null,
      removed.length ? h('h3', {}, 'Rules withdrawn') : null,
      removed.length ? list(removed, (r) => h('li', { class: 'minus' },
        h('span', { class: 'sign', 'aria-label': 'removed' }, '−'),
        h('span', { class: 'rule-text' }, r.text),
        h('span', { class: 'meta' }, `${r.cluster}${r.support !== undefined ? ` · support ${num(r.support)}` : ''}`))) : null,
      modes.length ? h('h3', {}, 'Mode changes') : null,
      modes.length ? list(modes, (m) => h('li', {},
        h('span', { class: 'meta' }, m.cluster), ' ',
        m.from ? [modeBadge(m.from), h('span', { 'aria-label': 'to' }, ' → ')] : h('span', { class: 'muted' }, 'new, '),
        m.to ? modeBadge(m.to) : h('span', { class: 'muted' }, 'gone'))) : null,
    ];
  });
}

// ---------------------------------------------------------------- clusters

function clustersData() {
  const key = `clusters:${state.tenant}`;
  cache[key] ??= api(tenantPath('/clusters'));
  return cache[key].catch((err) => {
    delete cache[key];
    throw err;
  });
}

function armCell(arm, cls) {
  if (!arm) return h('span', { class: 'muted' }, '—');
  const rate = arm.down_rate ?? (arm.rated ? arm.down / arm.rated : null);
  return h('div', { class: 'arm' },
    rateBar(rate, { cls, width: 64, label: `${pct(rate)} thumbs down of ${arm.rated} rated` }),
    h('span', { class: 'arm-text' }, arm.rated ? `${pct(rate)} of ${num(arm.rated)}` : 'no ratings'));
}

function ruleState(rule) {
  if (rule.override === 'approved') return badge('approved', 'state-approved', 'Approved by an admin: served even below the minimum support or share, or when held');
  if (rule.override === 'disabled') return badge('disabled', 'state-disabled', 'Disabled by an admin: never served');
  if (rule.held && !rule.served) return badge('held', 'state-pending', `Needs approval: ${rule.held}`);
  return rule.served
    ? badge('served', 'state-served', 'In the block uno injects')
    : badge('not served', 'state-idle', 'Below the minimum support or share of the cluster\'s users (net of contrary feedback), or outside the block budget');
}

// Why a rule stands where it does: who asked against it, and why it is held.
function ruleNotes(rule) {
  const notes = [];
  if (rule.contrary) {
    const against = (rule.contradicts || []).join('”, “');
    notes.push(`${num(rule.contrary)} users asked for the opposite${against ? ` (“${against}”)` : ''}`);
  }
  if (rule.held) notes.push(`held for approval: ${rule.held}`);
  return notes.length ? h('div', { class: 'meta muted small' }, notes.join(' · ')) : null;
}

async function ruleAction(rule, action) {
  const verb = { approve: 'Approve', disable: 'Disable', reset: 'Reset' }[action];
  const ok = await confirmAction({
    title: `${verb} this rule?`,
    text: `“${rule.text}” — uno publishes a new snapshot version with this change, and the worker keeps it at every rebuild.`,
    ok: verb,
    danger: action === 'disable',
  });
  if (!ok) return;
  try {
    const res = await api(`${tenantPath(`/rules/${enc(rule.id)}/${action}`)}`, { method: 'POST' });
    const done = { approved: 'approved', disabled: 'disabled', default: 'reset' }[res?.state] || action;
    toast(`Rule ${done}; snapshot v${res?.snapshot_version ?? '?'} is active.`);
    refreshLearning();
  } catch (err) {
    if (err.status !== 401) toast(`${verb} failed (${err.status || 'network'}): ${err.message}`, 'error');
  }
}

function refreshLearning() {
  for (const k of Object.keys(cache)) if (k.startsWith('clusters:')) delete cache[k];
  state.diff = null;
  loadClusters();
  loadSnapshots();
  loadLearned();
  loadKpis();
}

function rulesTable(cluster) {
  const rules = cluster.rules || [];
  if (!rules.length) return empty('This cluster has no rules.');
  return h('table', { class: 'rules' },
    h('caption', { class: 'sr-only' }, `Rules of cluster ${cluster.id}`),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Rule'),
      h('th', { scope: 'col', class: 'num' }, 'Support'),
      h('th', { scope: 'col', class: 'num', title: 'Share of the users who gave feedback in this cluster' }, 'Share'),
      h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col' }, 'Learned from'),
      h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
    h('tbody', {}, rules.map((rule) => {
      const sources = rule.sources || [];
      return h('tr', { dataset: { rule: rule.id || '' } },
        h('td', { class: 'rule-text' }, rule.text, ruleNotes(rule)),
        h('td', { class: 'num' }, num(rule.support)),
        h('td', { class: 'num' }, rule.share ? pct(rule.share) : '—'),
        h('td', {}, ruleState(rule)),
        h('td', { class: 'sources' },
          sources.length
            ? [
              ...sources.slice(0, 4).map((id) => h('a', { href: interactionHref(id), class: 'id-link', title: `Interaction ${id}` }, short(id))),
              sources.length > 4 ? h('span', { class: 'muted' }, ` +${sources.length - 4}`) : null,
            ]
            : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'actions' },
          h('button', {
            type: 'button', class: 'btn small', disabled: rule.override === 'approved' || !rule.id,
            'aria-label': `Approve rule: ${rule.text}`, onclick: () => ruleAction(rule, 'approve'),
          }, 'Approve'),
          h('button', {
            type: 'button', class: 'btn small danger-outline', disabled: rule.override === 'disabled' || !rule.id,
            'aria-label': `Disable rule: ${rule.text}`, onclick: () => ruleAction(rule, 'disable'),
          }, 'Disable'),
          rule.override
            ? h('button', {
              type: 'button', class: 'btn small ghost', 'aria-label': `Reset rule: ${rule.text}`,
              onclick: () => ruleAction(rule, 'reset'),
            }, 'Reset')
            : null));
    })));
}

async function loadClusters() {
  await section('clusters', async () => {
    const body = await clustersData();
    const list = body.data || [];
    if (!body.snapshot_version && !list.length) {
      return empty('No snapshot is active for this tenant yet. The worker publishes one once it has learned from feedback; until then every request passes through unchanged.');
    }
    if (!list.length) return empty(`Snapshot v${body.snapshot_version} has no clusters.`);
    const rows = [];
    for (const c of list) {
      const open = state.expanded.has(c.id);
      const panelId = `cluster-panel-${c.id}`.replace(/[^A-Za-z0-9_-]/g, '_');
      const toggle = h('button', {
        type: 'button', class: 'expander', 'aria-expanded': String(open), 'aria-controls': panelId,
        onclick: () => {
          if (state.expanded.has(c.id)) state.expanded.delete(c.id);
          else state.expanded.add(c.id);
          const now = state.expanded.has(c.id);
          toggle.setAttribute('aria-expanded', String(now));
          $(panelId).hidden = !now;
        },
      }, h('span', { class: 'chev', 'aria-hidden': 'true' }), h('span', { class: 'cluster-id' }, c.id));
      const rules = c.rules || [];
      const served = rules.filter((r) => r.served).length;
      const v = c.validation;
      rows.push(
        h('tr', { class: 'cluster-row', dataset: { cluster: c.id } },
          h('th', { scope: 'row' }, toggle),
          h('td', { class: 'num' }, num(c.size)),
          h('td', {}, modeBadge(c.mode)),
          h('td', { class: 'gapcell' },
            rangeBar(c.gap || {}, { high: c.high_gap, width: 72, label: `gap ${fixed(c.gap?.min)} to ${fixed(c.gap?.max)}, mean ${fixed(c.gap?.mean)}` }),
            h('span', { class: 'gap-text' }, `${fixed(c.gap?.mean)}`),
            c.high_gap ? badge('high', 'high-gap', 'The minimum gap is above the threshold: the model lacks this knowledge') : null),
          h('td', { class: 'num' },
            c.win_rate !== undefined && c.win_rate !== null ? pct(c.win_rate) : '—',
            v ? h('div', { class: 'sub' }, `${v.wins ?? '?'} of ${v.logs ?? '?'} won`) : null),
          h('td', {}, armCell(c.treated, 'treated')),
          h('td', {}, armCell(c.holdout, 'holdout')),
          h('td', { class: 'num' }, `${served}/${rules.length}`),
          h('td', { class: 'decision' }, c.decision || '—')),
        h('tr', { class: 'rules-row', id: panelId, hidden: !open },
          h('td', { colspan: 9 },
            rulesTable(c),
            c.block ? h('details', { class: 'block' }, h('summary', {}, 'Block injected into the system message'), h('pre', {}, c.block)) : null,
            c.lift ? h('p', { class: 'muted small' }, liftText(c.lift)) : null)),
      );
    }
    return [
      h('p', { class: 'muted small' }, `Snapshot v${body.snapshot_version ?? '?'} · ${list.length} clusters · thumbs-down rates over the last ${body.traffic_days ?? 30} days · select a cluster to see its rules.`),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'clusters' },
          h('caption', { class: 'sr-only' }, 'Clusters of the active snapshot'),
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'Cluster'),
            h('th', { scope: 'col', class: 'num' }, 'Size'),
            h('th', { scope: 'col' }, 'Mode'),
            h('th', { scope: 'col', title: 'How much the model lacks what feedback taught (min–max, mean)' }, 'Gap'),
            h('th', { scope: 'col', class: 'num', title: 'How often answers with the rules beat answers without' }, 'Win rate'),
            h('th', { scope: 'col', title: 'Thumbs-down rate of answers served with the rules' }, 'Down · treated'),
            h('th', { scope: 'col', title: 'Thumbs-down rate of the holdout, served without the rules' }, 'Down · holdout'),
            h('th', { scope: 'col', class: 'num' }, 'Rules served'),
            h('th', { scope: 'col' }, 'Decision'))),
          h('tbody', {}, rows))),
    ];
  });
}

function liftText(lift) {
  const t = lift.treated_rated ? lift.treated_down / lift.treated_rated : null;
  const hr = lift.holdout_rated ? lift.holdout_down / lift.holdout_rated : null;
  return `Lift check: treated ${pct(t)} down of ${num(lift.treated_rated)}, holdout ${pct(hr)} down of ${num(lift.holdout_rated)}` +
    (Number.isFinite(lift.z) ? `, z = ${lift.z.toFixed(2)}` : '');
}

// ---------------------------------------------------------------- snapshots

async function snapshotAction(kind, version) {
  const active = state.snapshots.find((s) => s.active)?.version;
  const previous = state.snapshots.filter((s) => active !== undefined && s.version < active).map((s) => s.version).sort((a, b) => b - a)[0];
  const ok = kind === 'rollback'
    ? await confirmAction({
      title: `Roll back to v${previous}?`,
      text: `uno stops serving v${active} and serves v${previous} instead, for every request of ${state.tenant}, from now on.`,
      ok: 'Roll back',
      danger: true,
    })
    : await confirmAction({
      title: `Activate v${version}?`,
      text: `uno serves v${version} instead of v${active ?? 'none'} for every request of ${state.tenant}, from now on.`,
      ok: 'Activate',
    });
  if (!ok) return;
  try {
    const res = kind === 'rollback'
      ? await api(tenantPath('/snapshots/rollback'), { method: 'POST' })
      : await api(tenantPath(`/snapshots/${enc(version)}/activate`), { method: 'POST' });
    toast(`Snapshot v${res?.active_version} is now active.`);
    refreshLearning();
  } catch (err) {
    if (err.status !== 401) toast(`${kind === 'rollback' ? 'Rollback' : 'Activation'} failed (${err.status || 'network'}): ${err.message}`, 'error');
  }
}

async function showDiff(from, to) {
  state.diff = { from, to, body: null, error: null };
  renderDiff();
  try {
    state.diff.body = await api(`${tenantPath('/snapshots/diff')}?from=${enc(from)}&to=${enc(to)}`);
  } catch (err) {
    state.diff.error = err;
  }
  renderDiff();
}

function renderDiff() {
  const el = $('snapshot-diff');
  if (!el) return;
  const d = state.diff;
  if (!d) {
    el.replaceChildren();
    el.hidden = true;
    return;
  }
  el.hidden = false;
  const head = h('div', { class: 'diff-head' },
    h('h3', {}, `Changes from v${d.from} to v${d.to}`),
    h('button', { type: 'button', class: 'btn small ghost', onclick: () => { state.diff = null; renderDiff(); } }, 'Close'));
  if (d.error) return el.replaceChildren(head, errorBox(d.error, () => showDiff(d.from, d.to)));
  if (!d.body) return el.replaceChildren(head, h('p', { class: 'loading' }, 'Loading…'));
  const b = d.body.diff || d.body;
  const items = [];
  for (const id of b.added || b.clusters_added || []) items.push(h('li', { class: 'plus' }, h('span', { class: 'sign' }, '+'), `cluster ${typeof id === 'object' ? id.id : id} added`));
  for (const id of b.removed || b.clusters_removed || []) items.push(h('li', { class: 'minus' }, h('span', { class: 'sign' }, '−'), `cluster ${typeof id === 'object' ? id.id : id} removed`));
  for (const c of b.changed || []) {
    const mode = Array.isArray(c.mode) ? c.mode : c.mode && typeof c.mode === 'object' ? [c.mode.from, c.mode.to] : null;
    if (mode) items.push(h('li', {}, h('span', { class: 'meta' }, c.id), ' mode ', modeBadge(mode[0]), ' → ', modeBadge(mode[1])));
    for (const r of c.rules_added || []) items.push(h('li', { class: 'plus' }, h('span', { class: 'sign' }, '+'), h('span', { class: 'rule-text' }, typeof r === 'object' ? r.text : r), h('span', { class: 'meta' }, c.id)));
    for (const r of c.rules_removed || []) items.push(h('li', { class: 'minus' }, h('span', { class: 'sign' }, '−'), h('span', { class: 'rule-text' }, typeof r === 'object' ? r.text : r), h('span', { class: 'meta' }, c.id)));
  }
  for (const m of b.mode_changes || []) items.push(h('li', {}, h('span', { class: 'meta' }, m.cluster || m.id), ' mode ', modeBadge(m.from), ' → ', modeBadge(m.to)));
  for (const r of b.rules_added || []) items.push(h('li', { class: 'plus' }, h('span', { class: 'sign' }, '+'), h('span', { class: 'rule-text' }, r.text ?? r), h('span', { class: 'meta' }, r.cluster || '')));
  for (const r of b.rules_removed || []) items.push(h('li', { class: 'minus' }, h('span', { class: 'sign' }, '−'), h('span', { class: 'rule-text' }, r.text ?? r), h('span', { class: 'meta' }, r.cluster || '')));
  el.replaceChildren(head, items.length ? h('ul', { class: 'changes' }, items) : empty('No served rule or mode changed between these versions.'));
}

/** How many clusters of each mode, as a small stacked bar with a legend. */
function modeMix(modes) {
  const order = ['primary', 'reflective', 'passthrough'];
  const total = order.reduce((a, m) => a + (modes[m] || 0), 0);
  const text = order.map((m) => `${modes[m] || 0} ${m}`).join(', ');
  if (!total) return h('span', { class: 'muted' }, 'no clusters');
  return h('span', { class: 'modemix', title: text },
    stackBar(order.map((m) => ({ value: modes[m] || 0, cls: `path-${m}` })), { label: text }),
    h('span', { class: 'modemix-text' }, order.filter((m) => modes[m]).map((m) => `${modes[m]} ${m.slice(0, 4)}.`).join(' · ')));
}

async function loadSnapshots() {
  await section('snapshots', async () => {
    const list = (await api(tenantPath('/snapshots'))).data || [];
    state.snapshots = list;
    if (!list.length) return empty('No snapshots published yet.');
    const active = list.find((s) => s.active);
    const older = active ? list.filter((s) => s.version < active.version).sort((a, b) => b.version - a.version)[0] : null;
    const versions = list.map((s) => s.version).sort((a, b) => a - b);
    const prevOf = (v) => versions.filter((x) => x < v).pop();
    const toolbar = h('div', { class: 'toolbar' },
      h('p', {}, 'Active: ', active ? h('strong', { id: 'active-version', dataset: { version: active.version } }, `v${active.version}`) : h('strong', { id: 'active-version' }, 'none'),
        active ? h('span', { class: 'muted' }, ` · published ${ago(active.created_at)}`) : null),
      h('button', {
        type: 'button', class: 'btn danger-outline', id: 'rollback', disabled: !older,
        title: older ? `Serve v${older.version} again` : 'There is no earlier version to roll back to',
        onclick: () => snapshotAction('rollback'),
      }, older ? `Roll back to v${older.version}` : 'Roll back'));
    const table = h('div', { class: 'table-wrap' }, h('table', { class: 'snapshots' },
      h('caption', { class: 'sr-only' }, 'Snapshot versions, newest first'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Version'),
        h('th', { scope: 'col' }, 'Published'),
        h('th', { scope: 'col', class: 'num' }, 'Clusters'),
        h('th', { scope: 'col' }, 'Modes'),
        h('th', { scope: 'col', class: 'num', title: 'Rules served (injected) in this version' }, 'Rules'),
        h('th', { scope: 'col', class: 'num', title: 'Learning logs it was built from' }, 'Logs'),
        h('th', { scope: 'col' }, 'Reason'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', {}, list.map((s) => {
        const prev = prevOf(s.version);
        return h('tr', { class: s.active ? 'active' : '', dataset: { version: s.version } },
          h('th', { scope: 'row' }, `v${s.version}`),
          h('td', { class: 'nowrap' }, timeEl(s.created_at)),
          h('td', { class: 'num' }, num(s.clusters)),
          h('td', {}, s.modes ? modeMix(s.modes) : '—'),
          h('td', { class: 'num' }, num(s.rules)),
          h('td', { class: 'num' }, num(s.logs)),
          h('td', { class: 'reason' }, s.reason || h('span', { class: 'muted' }, '—')),
          h('td', {}, s.active ? badge('active', 'state-active') : ''),
          h('td', { class: 'actions' },
            prev !== undefined
              ? h('button', { type: 'button', class: 'btn small ghost', onclick: () => showDiff(prev, s.version), 'aria-label': `Show changes from v${prev} to v${s.version}` }, `Diff vs v${prev}`)
              : null,
            s.active
              ? null
              : h('button', { type: 'button', class: 'btn small', onclick: () => snapshotAction('activate', s.version), 'aria-label': `Activate v${s.version}` }, 'Activate')));
      }))));
    const diff = h('div', { id: 'snapshot-diff', class: 'diff', hidden: true, 'aria-live': 'polite' });
    queueMicrotask(renderDiff);
    return [toolbar, table, diff];
  });
}

// ---------------------------------------------------------------- interactions

function feedbackIcons(list) {
  if (!list?.length) return h('span', { class: 'muted' }, '—');
  const up = list.filter((f) => f.rating === 'up').length;
  const down = list.filter((f) => f.rating === 'down').length;
  const text = list.filter((f) => !f.rating).length;
  return h('span', { class: 'fb' },
    up ? h('span', { class: 'fb-up', title: `${up} thumbs up` }, `▲ ${up}`) : null,
    down ? h('span', { class: 'fb-down', title: `${down} thumbs down` }, `▼ ${down}`) : null,
    text ? h('span', { class: 'fb-text', title: `${text} text feedback` }, `✎ ${text}`) : null);
}

function interactionRows(list) {
  return list.map((i) => h('tr', {},
    h('td', { class: 'nowrap' }, h('a', { href: interactionHref(i.id), title: i.id }, timeEl(i.created_at, ago(i.created_at)))),
    h('td', { class: 'query' }, h('a', { href: interactionHref(i.id), class: 'plain' }, i.query || h('span', { class: 'muted' }, '(no user message)'))),
    h('td', {}, i.path ? badge(i.path, `path-badge path-${i.path}`) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'mono small' }, i.cluster || '—'),
    h('td', { class: 'num' }, String(i.status ?? '—'), i.outcome && !['ok', 'completed'].includes(i.outcome) ? h('div', { class: 'sub warn-text' }, i.outcome) : null),
    h('td', { class: 'num' }, ms(i.total_ms), i.upstream_ms !== undefined && i.upstream_ms !== null ? h('div', { class: 'sub' }, `+${ms(i.total_ms - i.upstream_ms)} added`) : null),
    h('td', {}, feedbackIcons(i.feedback))));
}

async function loadInteractions(before) {
  const load = async () => {
    const q = new URLSearchParams({ limit: '15' });
    if (before) q.set('before', before);
    const res = await api(`${tenantPath('/interactions')}?${q}`);
    const list = res.data || [];
    state.interactionsNext = res.next || null;
    if (!list.length && !before) return empty('No interactions logged yet.');
    const table = h('div', { class: 'table-wrap' }, h('table', { class: 'interactions' },
      h('caption', { class: 'sr-only' }, 'Recent interactions'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'When'),
        h('th', { scope: 'col' }, 'Question'),
        h('th', { scope: 'col' }, 'Path'),
        h('th', { scope: 'col' }, 'Cluster'),
        h('th', { scope: 'col', class: 'num' }, 'Status'),
        h('th', { scope: 'col', class: 'num' }, 'Latency'),
        h('th', { scope: 'col' }, 'Feedback'))),
      h('tbody', {}, interactionRows(list))));
    const pager = h('div', { class: 'pager' },
      before ? h('button', { type: 'button', class: 'btn small ghost', onclick: () => loadInteractions() }, 'Newest') : null,
      state.interactionsNext ? h('button', { type: 'button', class: 'btn small', onclick: () => loadInteractions(state.interactionsNext) }, 'Older') : null);
    return [table, pager];
  };
  await section('interactions', load);
}

async function showInteraction(id) {
  const dialog = $('detail');
  const out = $('detail-body');
  $('detail-title').textContent = `Interaction ${short(id)}`;
  out.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  if (!dialog.open) dialog.showModal();
  try {
    const i = await api(tenantPath(`/interactions/${enc(id)}`));
    const field = (label, value) => [h('dt', {}, label), h('dd', {}, value ?? '—')];
    const messages = (i.messages || []).map((m) => h('div', { class: `msg role-${m.role}` },
      h('div', { class: 'msg-role' }, m.role || '?'),
      h('pre', { class: 'msg-text' }, typeof m.content === 'string' ? m.content : JSON.stringify(m.content, null, 2))));
    out.replaceChildren(...[
      h('dl', { class: 'facts' },
        field('Id', h('code', {}, i.id)),
        field('When', fmtTime(i.created_at)),
        field('User', i.user),
        field('Model', i.model),
        field('Path', i.path ? badge(i.path, `path-badge path-${i.path}`) : null),
        field('Cluster', i.cluster),
        field('Snapshot', i.snapshot !== undefined && i.snapshot !== null ? `v${i.snapshot}` : null),
        field('Status', `${i.status ?? '—'} ${i.outcome || ''}`),
        field('Latency', `${ms(i.total_ms)} total${Number.isFinite(i.upstream_ms) ? `, ${ms(i.upstream_ms)} upstream` : ''}`),
        field('Tokens', i.prompt_tokens != null ? `${num(i.prompt_tokens)} prompt · ${num(i.completion_tokens)} completion` : null)),
      i.error ? h('p', { class: 'error' }, i.error) : null,
      i.content_retained === false ? h('p', { class: 'notice-inline' }, 'uno did not keep the content of this interaction (content logging is off or it was deleted); only its metadata is shown.') : null,
      h('h3', {}, 'Request'),
      messages.length ? h('div', { class: 'messages' }, messages) : empty('No messages stored.'),
      h('h3', {}, 'Response'),
      i.response ? h('pre', { class: 'msg-text response' }, i.response) : empty('No response text stored.'),
      i.draft ? [h('h3', {}, 'Reflective draft'), h('pre', { class: 'msg-text' }, i.draft)] : null,
      i.critique ? [h('h3', {}, 'Critique'), h('pre', { class: 'msg-text' }, i.critique)] : null,
      h('h3', {}, 'Feedback'),
      (i.feedback || []).length
        ? h('ul', { class: 'feedback-list' }, i.feedback.map((f) => h('li', {},
          f.rating ? badge(f.rating === 'up' ? '▲ up' : '▼ down', f.rating === 'up' ? 'fb-up-badge' : 'fb-down-badge') : badge('text', 'state-idle'),
          ' ', badge(f.source || 'explicit', 'state-idle'),
          h('span', { class: 'meta' }, ` ${f.user || 'anonymous'} · ${fmtTime(f.created_at)}`),
          f.comment ? h('p', {}, f.comment) : null,
          f.expected_output ? h('p', {}, h('strong', {}, 'Expected: '), f.expected_output) : null)))
        : empty('No feedback on this interaction.'),
    ].flat().filter(Boolean));
  } catch (err) {
    if (err.status !== 401) out.replaceChildren(errorBox(err, () => showInteraction(id)));
  }
}

// ---------------------------------------------------------------- worker

async function loadWorker() {
  await section('worker', async () => {
    const w = await api('/admin/v1/worker');
    const mine = (w.tenants || []).find((t) => t.tenant === state.tenant);
    const logs = w.logs || {};
    const stages = Object.entries(logs.by_stage || {});
    const facts = mine
      ? h('dl', { class: 'facts compact' },
        h('dt', {}, 'State'), h('dd', {}, mine.dirty ? badge('new data to learn from', 'state-pending') : badge('up to date', 'state-served')),
        h('dt', {}, 'Last run'), h('dd', {}, mine.last_run_at ? timeEl(mine.last_run_at, ago(mine.last_run_at)) : 'never'),
        h('dt', {}, 'Logs used'), h('dd', {}, num(mine.last_logs)),
        mine.ready_logs !== undefined ? [h('dt', {}, 'Ready to learn'), h('dd', {}, num(mine.ready_logs))] : null,
        h('dt', {}, 'Lease'), h('dd', {}, mine.leased_until && toDate(mine.leased_until) > new Date() ? `running, until ${hourFmt.format(toDate(mine.leased_until))}` : 'idle'))
      : empty(`The worker has not seen ${state.tenant} yet.`);
    return [
      facts,
      h('h3', {}, 'Learning logs by stage (all tenants)'),
      stages.length
        ? hbarChart({
          width: chartWidth('worker', 320), rows: stages.map(([stage, n]) => ({ label: stage, value: n, cls: 'fill' })),
          label: `Learning logs by stage: ${stages.map(([s, n]) => `${s} ${n}`).join(', ')}`, format: num,
        })
        : empty('No learning logs yet.'),
      h('p', { class: `small ${logs.failed ? 'warn-text' : 'muted'}` }, `${num(logs.total ?? 0)} logs in total${logs.pending !== undefined ? `, ${num(logs.pending)} in progress` : ''}, ${num(logs.failed ?? 0)} failed`),
    ];
  });
}

// ---------------------------------------------------------------- wiring

function init() {
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('admin-key').value.trim();
    if (key) signIn(key);
  });
  $('logout').addEventListener('click', signOut);
  $('refresh').addEventListener('click', () => loadAll());
  $('tenant').addEventListener('change', (event) => {
    location.hash = `#/${enc(event.target.value)}`;
  });
  $('detail-close').addEventListener('click', () => $('detail').close());
  $('detail').addEventListener('close', () => {
    if (route().interaction) history.replaceState(null, '', `#/${enc(state.tenant)}`);
  });
  window.addEventListener('hashchange', onRoute);
  let resize;
  window.addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(() => {
      if (!state.key || !state.tenant) return;
      loadTraffic();
      loadFeedback();
    }, 250);
  });
  if (state.key) signIn(state.key);
  else showLogin('');
}

init();
