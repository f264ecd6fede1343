// End-to-end test of the built UI in headless Chromium against a real gateway and a real
// reference upstream, both on port 0. Run with `npm run e2e` (node's test runner) after
// `npm run build` and a debug build of the Rust binaries.
//
// Environment:
//   SSE_GATEWAY_BIN, REFERENCE_UPSTREAM_BIN  the binaries (default <repo>/target/debug/..., or
//                                            $CARGO_TARGET_DIR/debug/...)
//   CHROMIUM_PATH                            the browser (default /usr/bin/chromium)
//   E2E_HEADED=1                             show the browser window
//
// Artifacts (screenshots, both programs' logs, the page's console) go to e2e/artifacts/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const appDir = resolve(here, '..');
const repo = resolve(appDir, '..');
const dist = join(appDir, 'dist');
const artifacts = join(here, 'artifacts');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target');
const gatewayBin = process.env.SSE_GATEWAY_BIN ?? join(targetDir, 'debug', 'sse-gateway');
const upstreamBin = process.env.REFERENCE_UPSTREAM_BIN ?? join(targetDir, 'debug', 'reference-upstream');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Deadline for every condition we wait on. */
const WAIT_MS = 15_000;

const key = `e2e-${randomBytes(12).toString('hex')}`;
const children = [];
let upstream;
let gateway;
let browser;
let tmp;
let page;
const pageErrors = [];

/** Starts a program and resolves with its address once it prints `<name> listening on http://ADDR`. */
function startProgram(name, bin, args, env = {}) {
  const log = createWriteStream(join(artifacts, `${name}.log`));
  const child = spawn(bin, args, { env: { ...process.env, RUST_LOG: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  child.stderr.pipe(log);
  return new Promise((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not print its address within ${WAIT_MS} ms (log: ${name}.log)`)), WAIT_MS);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      log.write(chunk);
      const m = out.match(new RegExp(`${name} listening on (http://\\S+)`));
      if (m) {
        clearTimeout(timer);
        resolvePromise({ child, url: m[1].replace('0.0.0.0', '127.0.0.1') });
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening; see e2e/artifacts/${name}.log`));
    });
  });
}

async function stopProgram(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

// If the runner dies, take the programs with it.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function api(method, path, body) {
  const headers = { 'X-API-Key': key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(gateway.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function broadcast(channel, event, data) {
  const res = await api('POST', '/broadcast', { channel, event, data });
  assert.equal(res.status, 202, `POST /broadcast: ${JSON.stringify(res.json)}`);
  return res.json.id;
}

/** Polls `fn` until it returns a truthy value, or fails after the deadline. */
async function eventually(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const statusIs = (p, state) =>
  p.waitForFunction((s) => document.querySelector('[data-testid="connection-status"]')?.textContent === s, state, { timeout: WAIT_MS });

const items = (p, text) => p.locator('[data-testid="event-item"]', { hasText: text });

async function openPage(path) {
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  p.on('pageerror', (e) => pageErrors.push(`${path}: ${e.message}`));
  p.on('console', (m) => consoleLog.write(`[${path}] ${m.type()}: ${m.text()}\n`));
  await p.goto(gateway.url + path);
  return p;
}

let consoleLog;

describe('web UI against a real gateway and upstream', () => {
  before(async () => {
    for (const [what, path, hint] of [
      ['sse-gateway', gatewayBin, 'cargo build --bins -p sse-gateway -p reference-upstream'],
      ['reference-upstream', upstreamBin, 'cargo build --bins -p sse-gateway -p reference-upstream'],
      ['the built UI', join(dist, 'index.html'), 'npm run build'],
      ['chromium', chromiumPath, 'apt-get install chromium'],
    ]) {
      assert.ok(existsSync(path), `${what} not found at ${path}: run \`${hint}\` first`);
    }
    mkdirSync(artifacts, { recursive: true });
    consoleLog = createWriteStream(join(artifacts, 'console.log'));
    tmp = mkdtempSync(join(tmpdir(), 'sse-gateway-e2e-'));

    upstream = await startProgram('reference-upstream', upstreamBin, ['--listen', '127.0.0.1:0', '--name', 'e2e', '--notify-interval', '0s']);
    const config = join(tmp, 'gateway.yaml');
    writeFileSync(
      config,
      [
        'listen: 127.0.0.1:0',
        `static_dir: ${JSON.stringify(dist)}`,
        'sse: {retry: 500ms}',
        'channels:',
        '  - name: "*"',
        '    subscribe: public',
        '    publish: claims',
        'auth:',
        '  api_keys:',
        '    - {name: e2e, key_env: E2E_KEY, publish: ["*"], admin: true}',
        'sources:',
        '  - name: notifications',
        `    url: ${upstream.url}/streams/notifications`,
        '    channel: notifications',
        // The page is served by the gateway itself on a port picked at start, and browsers send
        // `Origin` on same-origin POST and DELETE: allow any origin (no credentials) here.
        'cors:',
        '  allowed_origins: ["*"]',
        '',
      ].join('\n'),
    );
    gateway = await startProgram('sse-gateway', gatewayBin, ['--config', config], { E2E_KEY: key });

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: !process.env.E2E_HEADED,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await openPage('/?channels=notifications,news');
  });

  after(async () => {
    if (page) await page.screenshot({ path: join(artifacts, 'ui-desktop.png'), fullPage: true }).catch(() => {});
    await browser?.close().catch(() => {});
    await Promise.all([stopProgram(gateway?.child), stopProgram(upstream?.child)]);
    consoleLog?.end();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('shows the stream open', async () => {
    await statusIs(page, 'open');
  });

  it('shows an event published with POST /broadcast', async () => {
    const marker = `broadcast-${randomBytes(4).toString('hex')}`;
    const id = await broadcast('news', 'headline', { title: marker });
    await items(page, marker).first().waitFor({ timeout: WAIT_MS });
    assert.equal(await items(page, marker).count(), 1);
    assert.equal(await items(page, marker).first().locator('.event-id').textContent(), id);
  });

  it('publishes from the form and shows the id, and errors in words', async () => {
    const marker = `form-${randomBytes(4).toString('hex')}`;
    await page.fill('#publish-channel', 'news');
    await page.fill('#publish-event', 'e2e-form');
    await page.fill('#publish-data', JSON.stringify({ text: marker }));
    await page.fill('#publish-credential-secret', key);
    await page.click('button:has-text("Publish")');
    const result = page.locator('[data-testid="publish-result"]');
    await result.waitFor({ timeout: WAIT_MS });
    assert.match(await result.textContent(), /Published event \d+-\d+ on news/);
    // A type the page did not listen for before: the form makes the feed listen first.
    await items(page, marker).first().waitFor({ timeout: WAIT_MS });

    await page.fill('#publish-credential-secret', 'not-a-key');
    await page.click('button:has-text("Publish")');
    const error = page.locator('[data-testid="publish-error"]');
    await error.waitFor({ timeout: WAIT_MS });
    const text = await error.textContent();
    assert.match(text, /Not signed in/);
    assert.match(text, /401 unauthorized/);
  });

  it('shows live stats with the admin key', async () => {
    await page.fill('#stats-credential-secret', key);
    await page.click('button:has-text("Show stats")');
    await page.locator('[data-testid="stats-open"]').waitFor({ timeout: WAIT_MS });
    // The feed's stream and the metrics chart's stream.
    await eventually('2 open streams in /stats', async () => Number(await page.locator('[data-testid="stats-open"]').textContent()) >= 2);
    const source = page.locator('[data-testid="source-row"]', { hasText: 'notifications' });
    await eventually('the notifications source connected', async () => /connected/.test(await source.textContent()));
  });

  it('shows a notification POSTed to the upstream', async () => {
    const marker = `upstream-${randomBytes(4).toString('hex')}`;
    const res = await fetch(`${upstream.url}/notifications`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: marker, level: 'success' }),
    });
    assert.equal(res.status, 201);
    const item = items(page, marker).first();
    await item.waitFor({ timeout: WAIT_MS });
    assert.equal(await item.getAttribute('data-event-type'), 'notification');
    assert.match(await item.textContent(), /success/);
  });

  it('reconnects after DELETE /clients/{id} and resumes without loss or duplicate', async () => {
    // Record every state the status element goes through.
    await page.evaluate(() => {
      const el = document.querySelector('[data-testid="connection-status"]');
      window.__states = [el.textContent];
      new MutationObserver(() => window.__states.push(el.textContent)).observe(el, { subtree: true, childList: true, characterData: true });
    });
    const list = await api('GET', '/clients?limit=1000');
    assert.equal(list.status, 200);
    const feed = list.json.clients.filter((c) => c.channels.includes('news'));
    assert.equal(feed.length, 1, `one feed stream expected: ${JSON.stringify(list.json.clients)}`);
    const del = await api('DELETE', `/clients/${encodeURIComponent(feed[0].id)}`);
    assert.equal(del.status, 204);

    await page.waitForFunction(() => window.__states.includes('reconnecting'), null, { timeout: WAIT_MS });
    const away = `away-${randomBytes(4).toString('hex')}`;
    await broadcast('news', 'message', { text: away });
    await statusIs(page, 'open');
    await items(page, away).first().waitFor({ timeout: WAIT_MS });
    // Events arrive in order: once one published later is shown, a duplicate would be too.
    const later = `later-${randomBytes(4).toString('hex')}`;
    await broadcast('news', 'message', { text: later });
    await items(page, later).first().waitFor({ timeout: WAIT_MS });
    assert.equal(await items(page, away).count(), 1, 'the event published while away is shown exactly once');
    const states = await page.evaluate(() => window.__states);
    assert.deepEqual(states.slice(-2), ['reconnecting', 'open'], `states: ${states.join(' -> ')}`);
  });

  it('shows a reset notice for a resume id the gateway cannot honour', async () => {
    const p = await openPage('/?channel=news&lastEventId=bogus');
    try {
      const notice = p.locator('[data-testid="reset-notice"]');
      await notice.waitFor({ timeout: WAIT_MS });
      assert.match(await notice.textContent(), /reset.*malformed_id/s);
      await statusIs(p, 'open');
      // The stream continues live after the reset.
      const marker = `after-reset-${randomBytes(4).toString('hex')}`;
      await broadcast('news', 'message', { text: marker });
      await items(p, marker).first().waitFor({ timeout: WAIT_MS });
      await p.setViewportSize({ width: 390, height: 844 });
      await p.screenshot({ path: join(artifacts, 'ui-phone.png'), fullPage: false });
    } finally {
      await p.close();
    }
  });

  it('explains a refused stream in words and stops retrying', async () => {
    // EventSource only says "error" for a 400; the client asks the gateway why.
    const p = await openPage('/?channel=bad%20name');
    try {
      await statusIs(p, 'closed');
      const alert = p.locator('.connection-status .status-error');
      await alert.waitFor({ timeout: WAIT_MS });
      const text = await alert.textContent();
      assert.match(text, /Invalid channel name/);
      assert.match(text, /400 invalid_channel/);
    } finally {
      await p.close();
    }
  });

  it('raised no error in the page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
