// A stand-in for uno while working on the dashboard's look: serves the page
// straight from crates/uno-server/src/ui/ (edit, reload, no cargo build) and
// answers the admin API (docs/observability.md) from made-up data.
//
//   node scripts/ui-test/mock-server.mjs [port] [admin-key]
//
// The real check runs against `uno serve` (crates/uno/tests/ui_browser.rs).

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const UI = join(dirname(fileURLToPath(import.meta.url)), '../../crates/uno-server/src/ui');
const PORT = Number(process.argv[2] || 8099);
const KEY = process.argv[3] || 'uno-admin-key-for-the-ui-test';
const TYPES = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml', html: 'text/html; charset=utf-8' };

const HOUR = 3600e6; // microseconds
const now = Date.now() * 1000;
let seed = 7;
const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
const uuid = () => '0190' + Array.from({ length: 28 }, () => Math.floor(rand() * 16).toString(16)).join('').replace(/^(.{4})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');

const clusters = [
  {
    id: 'c0', size: 42, mode: 'primary', decision: 'primary: gap 0.21 below 0.40, win rate 0.71 ≥ 0.55 over 14 logs',
    gap: { min: 0.12, mean: 0.21, max: 0.34 }, high_gap: false, win_rate: 0.71, validation: { win_rate: 0.71, logs: 14, wins: 10, ties: 1, guarded: 0 },
    rules: [
      { text: 'State the exact cooking time in minutes.', support: 9, served: true },
      { text: 'Mention whether the pasta should be salted before boiling.', support: 4, served: true },
      { text: 'Suggest a vegetarian alternative when meat is asked for.', support: 1, served: false },
    ],
    treated: { rated: 38, down: 5 }, holdout: { rated: 9, down: 4 },
  },
  {
    id: 'c1', size: 27, mode: 'reflective', decision: 'reflective: gap 0.58 ≥ 0.40 (the model lacks this), critique then revise',
    gap: { min: 0.44, mean: 0.58, max: 0.77 }, high_gap: true, win_rate: 0.64, validation: { win_rate: 0.64, logs: 11, wins: 7, ties: 0, guarded: 1 },
    rules: [
      { text: 'Cite the official tax form number.', support: 7, served: true, override: 'approved' },
      { text: 'Say which tax year the answer applies to.', support: 3, served: true },
    ],
    treated: { rated: 21, down: 3 }, holdout: { rated: 6, down: 3 },
  },
  {
    id: 'c2', size: 15, mode: 'passthrough', decision: 'passthrough: win rate 0.43 below 0.55; served unchanged',
    gap: { min: 0.05, mean: 0.11, max: 0.2 }, high_gap: false, win_rate: 0.43, validation: { win_rate: 0.43, logs: 7, wins: 3, ties: 1, guarded: 0 },
    rules: [{ text: 'Use bullet points for lists of steps.', support: 2, served: false, override: 'disabled' }],
    treated: { rated: 0, down: 0 }, holdout: { rated: 0, down: 0 },
  },
];
for (const c of clusters) {
  c.block = c.rules.filter((r) => r.served).map((r, i) => `${i + 1}. ${r.text}`).join('\n');
  for (const r of c.rules) {
    r.id = Math.floor(rand() * 2 ** 52).toString(16).padStart(16, '0').slice(0, 16);
    r.sources = Array.from({ length: Math.min(r.support, 6) }, uuid);
  }
  for (const arm of [c.treated, c.holdout]) arm.down_rate = arm.rated ? arm.down / arm.rated : null;
}

const snapshots = [4, 3, 2, 1].map((v) => ({
  version: v, created_at: now - (5 - v) * 30 * HOUR, active: v === 4, clusters: v >= 3 ? 3 : 2, modes: { primary: 1, reflective: v >= 3 ? 1 : 0, passthrough: 1 },
  rules: [3, 4, 5, 6][v - 1], logs: [20, 34, 51, 84][v - 1], reason: v === 4 ? 'worker rebuild: 12 new learning logs' : v === 2 ? 'rule 9f2c… approved by admin' : 'worker rebuild',
}));

const interactions = Array.from({ length: 30 }, (_, i) => {
  const c = clusters[i % 3];
  const path = i % 7 === 3 ? 'holdout' : c.mode;
  const total = 300 + rand() * 900;
  return {
    id: uuid(), created_at: now - i * 0.8 * HOUR, model: 'gpt-4o-mini', user: `user-${i % 6}`, status: i === 5 ? 502 : 200,
    outcome: i === 5 ? 'upstream_error' : 'ok', stream: i % 2 === 0, path, cluster: c.id, snapshot: 4,
    total_ms: total, upstream_ms: total - 3 - rand() * 6, prompt_tokens: 120 + i, completion_tokens: 80 + i,
    query: ['How long should I boil spaghetti for dinner tonight?', 'Which tax form should I file for freelance income?', 'Can you format these steps as a list?'][i % 3],
    feedback: i % 4 === 0 ? [{ id: uuid(), user: `user-${i % 6}`, rating: i % 8 === 0 ? 'down' : 'up', source: 'explicit', created_at: now - i * HOUR }] : i % 5 === 1 ? [{ id: uuid(), rating: null, comment: 'Tell me the time in minutes please.', source: 'implicit', created_at: now - i * HOUR }] : [],
  };
});

const body = {
  tenants: { data: [
    { tenant: 'acme', keys_active: 2, interactions: 118, last_interaction_at: now, snapshot_version: 4 },
    { tenant: 'globex', keys_active: 1, interactions: 12, last_interaction_at: now - 40 * HOUR, snapshot_version: null },
  ] },
  traffic: () => ({
    bucket_seconds: 3600,
    data: Array.from({ length: 24 }, (_, i) => {
      const start = Math.floor(Date.now() / 3600e3) * 3600 - (23 - i) * 3600;
      const base = Math.round(20 + 30 * Math.sin(i / 4) ** 2 + rand() * 10);
      const by_path = { passthrough: Math.round(base * 0.3), primary: Math.round(base * 0.4), reflective: Math.round(base * 0.2), holdout: Math.round(base * 0.1) };
      return { start: new Date(start * 1000).toISOString(), requests: base, errors: i % 9 === 0 ? 1 : 0, mean_total_ms: 600 + rand() * 200, mean_added_ms: 2.5 + rand() * 3, by_path };
    }),
  }),
  feedback: () => ({
    data: Array.from({ length: 30 }, (_, i) => {
      const d = new Date(Date.now() - (29 - i) * 86400e3).toISOString().slice(0, 10);
      return { day: d, up: Math.round(4 + rand() * 8 + i / 3), down: Math.round(6 - i / 6 + rand() * 3), text: Math.round(rand() * 3) };
    }),
  }),
  learned: { since: now - 7 * 24 * HOUR, snapshots: [3, 4],
    rules_added: [{ cluster: 'c0', text: 'Mention whether the pasta should be salted before boiling.', support: 4 }, { cluster: 'c1', text: 'Say which tax year the answer applies to.', support: 3 }],
    rules_removed: [{ cluster: 'c2', text: 'Answer in one paragraph.', support: 1 }],
    mode_changes: [{ cluster: 'c1', from: 'primary', to: 'reflective' }] },
  worker: { tenants: [{ tenant: 'acme', dirty: true, last_run_at: now - 0.4 * HOUR, last_logs: 84, leased_until: null }], logs: { by_stage: { distil: 3, embed: 1, novelty: 2, ready: 84 }, failed: 1, total: 91 } },
};

// The same policy uno sends (crates/uno-server/src/ui/mod.rs).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

function send(res, status, value, type = 'application/json') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-security-policy': CSP });
  res.end(typeof value === 'string' || Buffer.isBuffer(value) ? value : JSON.stringify(value));
}
const error = (res, status, message) => send(res, status, { error: { message, type: 'invalid_request_error', param: null, code: null } });

createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  if (p === '/ui' || p.startsWith('/ui/assets/')) {
    const name = p === '/ui' ? 'index.html' : p.slice('/ui/assets/'.length);
    try {
      return send(res, 200, readFileSync(join(UI, name)), TYPES[name.split('.').pop()]);
    } catch {
      return send(res, 404, 'no such asset\n', 'text/plain');
    }
  }
  if (!p.startsWith('/admin/v1/')) return error(res, 404, 'not found');
  if (req.headers.authorization !== `Bearer ${KEY}`) return error(res, 401, 'the admin API needs `Authorization: Bearer <admin key>`');
  const m = p.match(/^\/admin\/v1\/tenants\/([^/]+)(\/.*)?$/);
  const rest = m?.[2] || '';
  if (p === '/admin/v1/tenants') return send(res, 200, body.tenants);
  if (p === '/admin/v1/stats/traffic') return send(res, 200, body.traffic());
  if (p === '/admin/v1/stats/feedback') return send(res, 200, body.feedback());
  if (p === '/admin/v1/worker') return send(res, 200, body.worker);
  // globex shows the page's empty and error states.
  if (m && m[1] === 'globex' && rest === '/snapshots') return error(res, 503, 'the admin API needs a database (database.url)');
  if (m && m[1] !== 'acme') {
    if (rest === '/clusters') return send(res, 200, { snapshot_version: null, data: [] });
    if (rest === '/learned') return send(res, 200, { since: now, snapshots: [], rules_added: [], rules_removed: [], mode_changes: [] });
    return send(res, 200, { data: [] });
  }
  if (rest === '/clusters') return send(res, 200, { snapshot_version: snapshots.find((s) => s.active).version, data: clusters });
  if (rest === '/snapshots') return send(res, 200, { data: snapshots });
  if (rest === '/learned') return send(res, 200, body.learned);
  if (rest === '/interactions') return send(res, 200, { data: interactions.slice(0, Number(url.searchParams.get('limit') || 50)) });
  if (rest.startsWith('/interactions/')) {
    const i = interactions.find((x) => x.id === rest.split('/')[2]);
    if (!i) return error(res, 404, 'no such interaction');
    return send(res, 200, { ...i, messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: i.query }], response: 'Boil it for 9 minutes in salted water.' });
  }
  if (rest === '/snapshots/diff') {
    return send(res, 200, { from: Number(url.searchParams.get('from')), to: Number(url.searchParams.get('to')), added: ['c2'], removed: [], changed: [{ id: 'c1', mode: ['primary', 'reflective'], rules_added: ['Say which tax year the answer applies to.'], rules_removed: [] }] });
  }
  if (req.method === 'POST' && rest === '/snapshots/rollback') {
    const active = snapshots.find((s) => s.active);
    const prev = snapshots.filter((s) => s.version < active.version)[0];
    if (!prev) return error(res, 409, 'nothing to roll back to');
    active.active = false;
    prev.active = true;
    return send(res, 200, { active_version: prev.version });
  }
  const act = rest.match(/^\/snapshots\/(\d+)\/activate$/);
  if (req.method === 'POST' && act) {
    for (const s of snapshots) s.active = s.version === Number(act[1]);
    return send(res, 200, { active_version: Number(act[1]) });
  }
  const rule = rest.match(/^\/rules\/([0-9a-f]+)\/(approve|disable|reset)$/);
  if (req.method === 'POST' && rule) {
    const r = clusters.flatMap((c) => c.rules).find((x) => x.id === rule[1]);
    if (!r) return error(res, 404, 'no such rule');
    r.override = rule[2] === 'reset' ? undefined : rule[2] === 'approve' ? 'approved' : 'disabled';
    return send(res, 200, { rule_id: r.id, state: rule[2], snapshot_version: 5 });
  }
  return error(res, 404, `mock: no route for ${req.method} ${p}`);
}).listen(PORT, '127.0.0.1', () => console.log(`mock uno admin API on http://127.0.0.1:${PORT}/ui (key ${KEY})`));
