// The /ui dashboard in headless Chromium, against a running uno:
//
//   node scripts/ui-test/ui.spec.mjs BASE_URL ADMIN_KEY [EXPECT_JSON]
//
// Loads /ui, checks that nothing shows before sign-in and that a wrong key is
// refused with a message, signs in, checks that the clusters, their rules and
// the snapshot history show what the admin API holds (and, with
// EXPECT_JSON, the seeded values: {"tenant", "clusters": [ids], "rules":
// [texts], "versions": [numbers], "active": number}), rolls back through the
// page's button and confirmation, and checks that the active version moved in
// the page and in the API. Saves full-page screenshots under target/. Exits 1
// with a message on the first failure.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core
// never downloads a browser.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, key, expectArg] = process.argv.slice(2);
if (!base || !key) {
  console.error('usage: node ui.spec.mjs BASE_URL ADMIN_KEY [EXPECT_JSON]');
  process.exit(2);
}
const BASE = base.replace(/\/+$/, '');
const ORIGIN = new URL(BASE).origin;
const EXPECT = expectArg ? JSON.parse(expectArg) : {};
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = process.env.UI_SCREENSHOT_DIR || join(ROOT, 'target');
const TIMEOUT = 15000;
// What a JavaScript value looks like when it reaches the page by mistake.
const LEAK = /(?<![A-Za-z])(null|undefined|NaN)|\[object [A-Za-z]+\]/;

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}
function step(text) {
  console.log(`ui: ${text}`);
}

async function api(path, method = 'GET') {
  const res = await fetch(`${BASE}${path}`, { method, headers: { Authorization: `Bearer ${key}` } });
  const text = await res.text();
  check(res.ok, `${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** Polls until `fn` returns a truthy value; fails with `message` after TIMEOUT. */
async function until(fn, message, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Failure(`${message}${last ? ` (last error: ${last.message})` : ''}`);
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'uno-ui-chromium-'));
  const problems = [];
  const foreign = [];
  const adminRequests = [];
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
      deviceScaleFactor: 1,
      timeout: 60000,
    });
    // Anything not from uno itself is refused and reported.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (new URL(url).origin !== ORIGIN && !url.startsWith('data:')) {
        foreign.push(url);
        return route.abort();
      }
      return route.continue();
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      // The browser logs the refused sign-in's 401 as a failed load; that one
      // is expected.
      if (/status of 401/.test(text)) return;
      problems.push(`console error: ${text}`);
    });
    page.on('request', (req) => {
      if (new URL(req.url()).pathname.startsWith('/admin/')) adminRequests.push(req.url());
    });

    step(`loading ${BASE}/ui`);
    const response = await page.goto(`${BASE}/ui`, { waitUntil: 'load' });
    check(response && response.status() === 200, `/ui answered ${response && response.status()}`);
    check(/default-src 'none'/.test(response.headers()['content-security-policy'] || ''), '/ui has no strict Content-Security-Policy');
    await page.locator('#login-form').waitFor({ state: 'visible' });

    step('nothing shows before sign-in');
    check(!(await page.locator('#dashboard').isVisible()), 'the dashboard is visible before sign-in');
    check((await page.locator('#dashboard').innerHTML()).trim() === '', 'the dashboard has content before sign-in');
    check(!(await page.locator('#session').isVisible()), 'the tenant picker is visible before sign-in');
    check((await page.locator('#tenant option').count()) === 0, 'tenant names are in the page before sign-in');
    check(adminRequests.length === 0, `the page called the admin API before sign-in: ${adminRequests.join(', ')}`);

    step('a wrong key is refused with a message');
    await page.fill('#admin-key', 'not-the-admin-key-0000');
    await page.click('#login-submit');
    await page.locator('#login-error').waitFor({ state: 'visible' });
    const refusal = await page.locator('#login-error').innerText();
    check(/not accepted/i.test(refusal), `the wrong-key message is unclear: ${JSON.stringify(refusal)}`);
    check(!(await page.locator('#dashboard').isVisible()), 'the dashboard shows after a wrong key');
    check((await page.locator('#tenant option').count()) === 0, 'tenant names show after a wrong key');

    step('signing in');
    await page.fill('#admin-key', key);
    await page.click('#login-submit');
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    check(!(await page.locator('#login').isVisible()), 'the sign-in form is still shown after signing in');

    const tenants = (await api('/admin/v1/tenants')).data.map((t) => t.tenant);
    const options = await page.locator('#tenant option').allTextContents();
    check(JSON.stringify(options) === JSON.stringify(tenants), `the tenant picker lists ${JSON.stringify(options)}, the API ${JSON.stringify(tenants)}`);
    const tenant = EXPECT.tenant || tenants[0];
    check(tenants.includes(tenant), `tenant ${tenant} is not in the API's list ${JSON.stringify(tenants)}`);
    if ((await page.locator('#tenant').inputValue()) !== tenant) {
      step(`picking tenant ${tenant}`);
      await page.selectOption('#tenant', tenant);
    }
    await until(async () => (await page.locator('#tenant').inputValue()) === tenant && (await page.title()).includes(tenant), `tenant ${tenant} was not selected`);
    const t = encodeURIComponent(tenant);

    step('the clusters and their rules');
    const clusters = await api(`/admin/v1/tenants/${t}/clusters`);
    check(clusters.data.length > 0, `the API has no clusters for ${tenant}: the seed should publish some`);
    for (const id of EXPECT.clusters || []) {
      check(clusters.data.some((c) => c.id === id), `seeded cluster ${id} is not in the API's clusters`);
    }
    await page.locator('table.clusters').waitFor({ state: 'visible' });
    for (const c of clusters.data) {
      const row = page.locator(`tr.cluster-row[data-cluster="${c.id}"]`);
      await until(() => row.isVisible(), `cluster ${c.id} is not shown`);
      const text = await row.innerText();
      check(text.includes(c.mode), `cluster ${c.id} does not show its mode ${c.mode}: ${JSON.stringify(text)}`);
      check(text.includes(String(c.size)), `cluster ${c.id} does not show its size ${c.size}`);
      const toggle = row.locator('button.expander');
      if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
      const panel = page.locator(`#${await toggle.getAttribute('aria-controls')}`);
      await until(() => panel.isVisible(), `expanding cluster ${c.id} shows no rules panel`);
      const panelText = await panel.innerText();
      for (const rule of c.rules) {
        check(panelText.includes(rule.text), `rule ${JSON.stringify(rule.text)} of cluster ${c.id} is not shown`);
        const ruleRow = panel.locator(`tr[data-rule="${rule.id}"]`);
        check(await ruleRow.isVisible(), `rule ${rule.id} has no row`);
        const rowText = await ruleRow.innerText();
        check(rowText.includes(String(rule.support)), `rule ${rule.id} does not show its support ${rule.support}`);
        check(await ruleRow.getByRole('button', { name: /^Approve/ }).count() === 1, `rule ${rule.id} has no Approve button`);
        check(await ruleRow.getByRole('button', { name: /^Disable/ }).count() === 1, `rule ${rule.id} has no Disable button`);
        const links = await ruleRow.locator('a.id-link').count();
        check(links === Math.min(4, (rule.sources || []).length), `rule ${rule.id} shows ${links} source links for ${(rule.sources || []).length} sources`);
      }
    }
    const shownRules = await page.locator('table.rules td.rule-text').allInnerTexts();
    for (const text of EXPECT.rules || []) {
      check(shownRules.includes(text), `seeded rule ${JSON.stringify(text)} is not shown (shown: ${JSON.stringify(shownRules)})`);
    }

    step('a rule\'s provenance opens the interaction it was learned from');
    const source = page.locator('table.rules a.id-link').first();
    const sourceId = decodeURIComponent((await source.getAttribute('href')).split('/').pop());
    await source.click();
    await page.locator('#detail').waitFor({ state: 'visible' });
    await until(async () => !/Loading/.test(await page.locator('#detail-body').innerText()), 'the interaction detail did not load');
    const detail = await page.locator('#detail-body').innerText();
    check(await page.locator('#detail-body .error-box').count() === 0, `the interaction detail failed: ${detail}`);
    check(detail.includes(sourceId), `the interaction detail does not show ${sourceId}`);
    check(!LEAK.test(detail), `the interaction detail shows a placeholder value: ${JSON.stringify((detail.match(LEAK) || [""])[0])}`);
    mkdirSync(TARGET, { recursive: true });
    await page.screenshot({ path: join(TARGET, 'ui-screenshot-interaction.png') });
    await page.click('#detail-close');
    await page.locator('#detail').waitFor({ state: 'hidden' });

    step('the snapshot history');
    const snapshots = (await api(`/admin/v1/tenants/${t}/snapshots`)).data;
    const active = snapshots.find((s) => s.active);
    check(active, `the API has no active snapshot for ${tenant}`);
    if (EXPECT.active !== undefined) check(active.version === EXPECT.active, `the active version is ${active.version}, the seed made ${EXPECT.active}`);
    for (const v of EXPECT.versions || []) check(snapshots.some((s) => s.version === v), `seeded version ${v} is not in the API's snapshots`);
    await page.locator('table.snapshots').waitFor({ state: 'visible' });
    const shownVersions = await page.locator('table.snapshots tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.dataset.version)));
    check(JSON.stringify(shownVersions) === JSON.stringify(snapshots.map((s) => s.version)),
      `the history shows versions ${JSON.stringify(shownVersions)}, the API ${JSON.stringify(snapshots.map((s) => s.version))}`);
    const activeRow = page.locator(`table.snapshots tr[data-version="${active.version}"]`);
    check((await activeRow.innerText()).includes('active'), `v${active.version} is not marked active in the history`);
    check((await page.locator('#active-version').innerText()).trim() === `v${active.version}`, 'the toolbar does not name the active version');
    const previous = snapshots.filter((s) => s.version < active.version).map((s) => s.version).sort((a, b) => b - a)[0];
    check(previous !== undefined, `v${active.version} is the oldest version: the seed should leave one to roll back to`);

    step('a diff against the previous version');
    await activeRow.getByRole('button', { name: /Show changes/ }).click();
    await page.locator('#snapshot-diff').waitFor({ state: 'visible' });
    await until(async () => !/Loading/.test(await page.locator('#snapshot-diff').innerText()), 'the diff did not load');
    check(await page.locator('#snapshot-diff .error-box').count() === 0, `the diff failed: ${await page.locator('#snapshot-diff').innerText()}`);

    step('the other sections loaded without errors');
    for (const id of ['traffic', 'latency', 'feedback', 'learned', 'interactions', 'worker']) {
      await until(async () => !/Loading…/.test(await page.locator(`#${id}-body`).innerText()), `section ${id} is still loading`);
      const err = page.locator(`#${id}-body .error-box`);
      if (await err.count()) throw new Failure(`section ${id} shows an API error: ${await err.innerText()}`);
    }

    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    check(overflow <= 1280, `the page is ${overflow} px wide at a 1280 px window: something overflows`);
    const everything = await page.locator('#dashboard').innerText();
    check(!LEAK.test(everything), `the page shows a placeholder value: ${JSON.stringify((everything.match(LEAK) || [""])[0])}`);

    mkdirSync(TARGET, { recursive: true });
    await page.screenshot({ path: join(TARGET, 'ui-screenshot.png'), fullPage: true });
    step(`screenshot: ${join(TARGET, 'ui-screenshot.png')}`);

    step(`rolling back from v${active.version} to v${previous}`);
    await page.click('#rollback');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    const question = await page.locator('#confirm').innerText();
    check(question.includes(`v${previous}`), `the confirmation does not name v${previous}: ${JSON.stringify(question)}`);
    await page.click('#confirm-ok');
    await until(async () => (await page.locator('#active-version').innerText()).trim() === `v${previous}`,
      `the page still shows v${active.version} active after the rollback`);
    const after = (await api(`/admin/v1/tenants/${t}/snapshots`)).data.find((s) => s.active);
    check(after && after.version === previous, `the API has v${after && after.version} active after the rollback, not v${previous}`);
    check((await page.locator(`table.snapshots tr[data-version="${previous}"]`).innerText()).includes('active'), `v${previous} is not marked active after the rollback`);

    step('approving a rule');
    const rolledBack = await api(`/admin/v1/tenants/${t}/clusters`);
    const candidate = rolledBack.data.flatMap((c) => c.rules).find((r) => !r.override);
    check(candidate, 'no rule without an override to approve');
    const candidateRow = page.locator(`tr[data-rule="${candidate.id}"]`).first();
    for (const toggle of await page.locator('button.expander[aria-expanded="false"]').all()) await toggle.click();
    await candidateRow.getByRole('button', { name: /^Approve/ }).click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await until(async () => (await page.locator(`tr[data-rule="${candidate.id}"]`).first().innerText()).includes('approved'),
      `rule ${candidate.id} is not shown approved after approving it`);
    const approved = (await api(`/admin/v1/tenants/${t}/clusters`)).data.flatMap((c) => c.rules).find((r) => r.id === candidate.id);
    check(approved && approved.override === 'approved', `the API does not have rule ${candidate.id} approved: ${JSON.stringify(approved)}`);

    await page.screenshot({ path: join(TARGET, 'ui-screenshot-rolled-back.png'), fullPage: true });

    step('signing out hides everything again');
    await page.click('#logout');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    check(!(await page.locator('#dashboard').isVisible()), 'the dashboard is visible after signing out');
    check(await page.evaluate(() => sessionStorage.getItem('uno.adminKey')) === null, 'the key stays in sessionStorage after signing out');

    check(foreign.length === 0, `the page requested other origins: ${foreign.join(', ')}`);
    check(problems.length === 0, `the page logged errors:\n  ${problems.join('\n  ')}`);
    step('ok');
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`ui: FAILED: ${err instanceof Failure ? err.message : err.stack || err}`);
    process.exit(1);
  },
);
