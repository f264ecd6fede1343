// End-to-end test of the built UI in headless Chromium against a real gateway and a real
// reference upstream, both on port 0. Run with `npm run e2e` (node's test runner) after
// `npm run build` and a debug build of the Rust binaries.
//
// The programs and the browser are shared; every case gets a fresh browser context (its own
// storage, cookies and cache) and its own channel names, so each passes alone
// (`node --test --test-name-pattern='reset notice' e2e/run.mjs`) and in any order.
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
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac, randomBytes } from 'node:crypto';
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
/** Deadline for a whole case, and for starting the programs and the browser. */
const CASE = { timeout: 45_000 };
const DESKTOP = { width: 1280, height: 900 };

const key = `e2e-${randomBytes(12).toString('hex')}`;
/** The HS256 secret of the gateway's `auth.jwt`, for tokens signed here. */
const jwtSecret = randomBytes(32).toString('hex');
const children = [];
let upstream;
let gateway;
let browser;
let tmp;
let consoleLog;

/**
 * Starts a program and resolves with its address once it answers `GET /healthz`. Its output goes
 * to e2e/artifacts/<log>.log.
 */
async function startProgram(name, bin, args, env = {}, log = name) {
  const program = await spawnProgram(name, bin, args, env, log);
  // The address is printed before the listener accepts: wait until it answers.
  await eventually(`${name} to answer GET /healthz`, async () => (await fetch(`${program.url}/healthz`)).ok);
  return program;
}

/** Spawns a program and resolves with its address once it prints `<name> listening on http://ADDR`. */
function spawnProgram(name, bin, args, env, log) {
  const logFile = `${log}.log`;
  const out = createWriteStream(join(artifacts, logFile));
  const child = spawn(bin, args, { env: { ...process.env, RUST_LOG: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  child.stderr.pipe(out);
  return new Promise((resolvePromise, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not print its address within ${WAIT_MS} ms (see e2e/artifacts/${logFile})`)), WAIT_MS);
    child.stdout.on('data', (chunk) => {
      text += chunk;
      out.write(chunk);
      const m = text.match(new RegExp(`${name} listening on (http://\\S+)`));
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
      reject(new Error(`${name} exited (${code ?? signal}) before listening; see e2e/artifacts/${logFile}`));
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

/** Writes a gateway config serving the built UI, from YAML lines after `listen` and `static_dir`. */
function gatewayConfig(name, lines) {
  const path = join(tmp, `${name}.yaml`);
  writeFileSync(path, ['listen: 127.0.0.1:0', `static_dir: ${JSON.stringify(dist)}`, ...lines, ''].join('\n'));
  return path;
}

async function api(method, path, body, base = gateway.url) {
  const headers = { 'X-API-Key': key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function broadcast(channel, event, data, base = gateway.url) {
  const res = await api('POST', '/broadcast', { channel, event, data }, base);
  assert.equal(res.status, 202, `POST /broadcast: ${JSON.stringify(res.json)}`);
  return res.json.id;
}

/** A name no other case uses: `prefix-<random>` (a channel, a marker in an event). */
const unique = (prefix) => `${prefix}-${randomBytes(4).toString('hex')}`;

/** An HS256 JWT with `claims` that expires in `ttlS` seconds, as a login service would issue it. */
function signJwt(claims, ttlS) {
  const part = (json) => Buffer.from(JSON.stringify(json)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ ...claims, exp: Math.floor(Date.now() / 1000) + ttlS })}`;
  return `${unsigned}.${createHmac('sha256', jwtSecret).update(unsigned).digest('base64url')}`;
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

/** The sentence the feed shows under its state when the stream failed. */
const statusError = async (p) => {
  const alert = p.locator('.feed .connection-status .status-error');
  await alert.waitFor({ timeout: WAIT_MS });
  return alert.textContent();
};

/** Enters a token as the feed's stream credential and applies it, as a user would. */
async function useStreamToken(p, token) {
  await p.check('input[name="stream-credential-kind"][value="bearer"]');
  await p.fill('#stream-credential-secret', token);
  await p.click('button:has-text("Apply")');
}

/**
 * Records the page's requests to `/events` and `/tickets` from now on: `{method, type, url,
 * headers, status()}`, where `type` is the browser's (`eventsource`, `fetch`) and `status()`
 * resolves with the answer's status.
 */
function recordRequests(p) {
  const seen = [];
  p.on('request', (r) => {
    const url = new URL(r.url());
    if (url.pathname !== '/events' && url.pathname !== '/tickets') return;
    seen.push({ method: r.method(), type: r.resourceType(), url, headers: r.headers(), at: Date.now(), status: async () => (await r.response())?.status() });
  });
  return seen;
}

/**
 * Runs one case on a page of its own, in a fresh browser context (its own storage, cookies and
 * cache), opened at `path` of `origin` (`null`: the case navigates itself). An error raised in
 * the page fails the case; a failing case leaves a screenshot in e2e/artifacts/. The context is
 * closed at the end, streams and all.
 */
async function inFreshPage(t, path, fn, { origin = gateway.url, viewport = DESKTOP } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => consoleLog.write(`[${t.name}] ${m.type()}: ${m.text()}\n`));
  try {
    if (path !== null) await page.goto(origin + path);
    await fn(page);
    assert.deepEqual(errors, [], 'errors raised in the page');
  } catch (e) {
    const shot = `failed-${t.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60)}.png`;
    await page.screenshot({ path: join(artifacts, shot), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

describe('web UI against a real gateway and upstream', () => {
  before(
    async () => {
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
      const config = gatewayConfig('gateway', [
        'sse: {retry: 500ms}',
        'channels:',
        // Streams on these need a token whose `subscribe` claim covers the channel.
        '  - name: "private.*"',
        '    subscribe: claims',
        '    publish: claims',
        '  - name: "*"',
        '    subscribe: public',
        '    publish: claims',
        'auth:',
        '  jwt: {algorithms: [HS256], secret_env: E2E_JWT_SECRET}',
        '  api_keys:',
        '    - {name: e2e, key_env: E2E_KEY, publish: ["*"], admin: true}',
        'sources:',
        '  - name: notifications',
        `    url: ${upstream.url}/streams/notifications`,
        '    channel: notifications',
        '  - name: metrics',
        `    url: ${upstream.url}/streams/metrics`,
        '    channel: metrics',
        '    mode: on_demand',
        // The page is served by the gateway itself on a port picked at start, and browsers send
        // `Origin` on same-origin POST and DELETE: allow any origin (no credentials) here.
        'cors:',
        '  allowed_origins: ["*"]',
      ]);
      gateway = await startProgram('sse-gateway', gatewayBin, ['--config', config], { E2E_KEY: key, E2E_JWT_SECRET: jwtSecret });

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
    },
    CASE,
  );

  after(async () => {
    await browser?.close().catch(() => {});
    await Promise.all([stopProgram(gateway?.child), stopProgram(upstream?.child)]);
    consoleLog?.end();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('shows the stream open', CASE, (t) =>
    inFreshPage(t, `/?channel=${unique('open')}`, async (page) => {
      await statusIs(page, 'open');
    }));

  it('shows an event published with POST /broadcast', CASE, (t) => {
    const channel = unique('news');
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      await statusIs(page, 'open');
      const marker = unique('broadcast');
      const id = await broadcast(channel, 'headline', { title: marker });
      await items(page, marker).first().waitFor({ timeout: WAIT_MS });
      assert.equal(await items(page, marker).count(), 1);
      assert.equal(await items(page, marker).first().locator('.event-id').textContent(), id);
    });
  });

  it('publishes from the form and shows the id, and errors in words', CASE, (t) => {
    const channel = unique('form');
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      await statusIs(page, 'open');
      const marker = unique('form');
      await page.fill('#publish-channel', channel);
      await page.fill('#publish-event', 'e2e-form');
      await page.fill('#publish-data', JSON.stringify({ text: marker }));
      await page.fill('#publish-credential-secret', key);
      await page.click('button:has-text("Publish")');
      const result = page.locator('[data-testid="publish-result"]');
      await result.waitFor({ timeout: WAIT_MS });
      assert.match(await result.textContent(), new RegExp(`Published event \\d+-\\d+ on ${channel}`));
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
  });

  it('shows a data_base64 event as its size and a hex preview', CASE, (t) => {
    const channel = unique('bin');
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      await statusIs(page, 'open');
      // 40 bytes no text encoding would carry: more than the preview's 32.
      const bytes = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, ...Array.from({ length: 34 }, (_, i) => 0x80 + i)]);
      const res = await api('POST', '/broadcast', { channel, event: 'blob.bin', data_base64: bytes.toString('base64') });
      assert.equal(res.status, 202, `POST /broadcast: ${JSON.stringify(res.json)}`);
      const item = page.locator('[data-testid="event-item"][data-event-type="blob.bin"]');
      await item.waitFor({ timeout: WAIT_MS });
      assert.equal(await item.locator('.event-id').textContent(), res.json.id);
      assert.equal(await item.locator('[data-testid="event-bytes-size"]').textContent(), '40 bytes');
      const hex = [...bytes.subarray(0, 32)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      assert.equal(await item.locator('[data-testid="event-bytes-hex"]').textContent(), `${hex} …`);
      assert.match(hex, /^de ad be ef 00 ff 80 81/);
    });
  });

  it('publishes a file from the form as data_base64 and shows its bytes', CASE, (t) => {
    const channel = unique('binform');
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      await statusIs(page, 'open');
      await page.fill('#publish-channel', channel);
      await page.check('input[name="publish-data-kind"][value="bytes"]');
      await page.setInputFiles('#publish-file', { name: 'five.bin', mimeType: 'application/octet-stream', buffer: Buffer.from([0, 1, 2, 0xff, 0xfe]) });
      await page.waitForFunction(() => document.querySelector('#publish-bytes')?.value === '00 01 02 ff fe', null, { timeout: WAIT_MS });
      await page.fill('#publish-credential-secret', key);
      const sent = page.waitForRequest((r) => new URL(r.url()).pathname === '/broadcast', { timeout: WAIT_MS });
      await page.click('button:has-text("Publish")');
      assert.deepEqual((await sent).postDataJSON(), { channel, event: 'blob.bin', data_base64: 'AAEC//4=' });
      await page.locator('[data-testid="publish-result"]').waitFor({ timeout: WAIT_MS });
      const item = page.locator('[data-testid="event-item"][data-event-type="blob.bin"]');
      await item.waitFor({ timeout: WAIT_MS });
      assert.equal(await item.locator('[data-testid="event-bytes-size"]').textContent(), '5 bytes');
      assert.equal(await item.locator('[data-testid="event-bytes-hex"]').textContent(), '00 01 02 ff fe');
      // The base64 the gateway delivered, one click away.
      await item.locator('button:has-text("Show as text")').click();
      assert.equal(await item.locator('.event-data').textContent(), 'AAEC//4=');
    });
  });

  it('shows live stats with the admin key', CASE, (t) =>
    inFreshPage(t, `/?channel=${unique('stats')}`, async (page) => {
      await page.fill('#stats-credential-secret', key);
      await page.click('button:has-text("Show stats")');
      await page.locator('[data-testid="stats-open"]').waitFor({ timeout: WAIT_MS });
      // This page's feed stream and metrics chart stream, at least.
      await eventually('2 open streams in /stats', async () => Number(await page.locator('[data-testid="stats-open"]').textContent()) >= 2);
      const source = page.locator('[data-testid="source-row"]', { hasText: 'notifications' });
      await eventually('the notifications source connected', async () => /connected/.test(await source.textContent()));
      await page.screenshot({ path: join(artifacts, 'ui-desktop.png'), fullPage: true });
    }));

  it("charts the upstream's host metrics from the metrics channel", CASE, (t) =>
    inFreshPage(t, `/?channel=${unique('chart')}`, async (page) => {
      await page.locator('polyline.series-cpu').waitFor({ state: 'attached', timeout: WAIT_MS });
      const legend = await page.locator('.metrics .legend').textContent();
      assert.match(legend, /CPU \d+\.\d%/);
      assert.match(legend, /Memory \d+\.\d%/);
      assert.equal(await page.locator('[data-testid="metrics-connection-status"]').textContent(), 'open');
    }));

  it('shows a notification POSTed to the upstream', CASE, (t) =>
    inFreshPage(t, '/?channel=notifications', async (page) => {
      await statusIs(page, 'open');
      const marker = unique('upstream');
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
    }));

  it('reconnects after DELETE /clients/{id} and resumes without loss or duplicate', CASE, (t) => {
    const channel = unique('kick');
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      await statusIs(page, 'open');
      // The resume point: a stream that has seen no event yet has no id to resume from, and
      // would start live again, without what was published while it was away.
      const first = unique('first');
      await broadcast(channel, 'message', { text: first });
      await items(page, first).first().waitFor({ timeout: WAIT_MS });
      // Record every state the status element goes through.
      await page.evaluate(() => {
        const el = document.querySelector('[data-testid="connection-status"]');
        window.__states = [el.textContent];
        new MutationObserver(() => window.__states.push(el.textContent)).observe(el, { subtree: true, childList: true, characterData: true });
      });
      const list = await api('GET', '/clients?limit=1000');
      assert.equal(list.status, 200);
      const feed = list.json.clients.filter((c) => c.channels.includes(channel));
      assert.equal(feed.length, 1, `one feed stream expected: ${JSON.stringify(list.json.clients)}`);
      const del = await api('DELETE', `/clients/${encodeURIComponent(feed[0].id)}`);
      assert.equal(del.status, 204);

      await page.waitForFunction(() => window.__states.includes('reconnecting'), null, { timeout: WAIT_MS });
      const away = unique('away');
      await broadcast(channel, 'message', { text: away });
      await statusIs(page, 'open');
      await items(page, away).first().waitFor({ timeout: WAIT_MS });
      // Events arrive in order: once one published later is shown, a duplicate would be too.
      const later = unique('later');
      await broadcast(channel, 'message', { text: later });
      await items(page, later).first().waitFor({ timeout: WAIT_MS });
      assert.equal(await items(page, away).count(), 1, 'the event published while away is shown exactly once');
      const states = await page.evaluate(() => window.__states);
      assert.deepEqual(states.slice(-2), ['reconnecting', 'open'], `states: ${states.join(' -> ')}`);
    });
  });

  it('opens a channel that needs a token through a single-use ticket, never putting the token in a URL', CASE, (t) => {
    const channel = unique('private.ticket');
    const user = unique('user'); // per-credential limits (limits.ticket_rate) are this case's own
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      // Without a credential the gateway refuses the stream, and the page says why.
      await statusIs(page, 'closed');
      assert.match(await statusError(page), /Not signed in.*401 unauthorized/s);

      const requests = recordRequests(page);
      const token = signJwt({ sub: user, subscribe: [channel] }, 120);
      await useStreamToken(page, token);
      await statusIs(page, 'open');
      const marker = unique('private');
      await broadcast(channel, 'message', { text: marker });
      await items(page, marker).first().waitFor({ timeout: WAIT_MS });

      const tickets = requests.filter((r) => r.url.pathname === '/tickets');
      const streams = requests.filter((r) => r.type === 'eventsource');
      assert.deepEqual(
        tickets.map((r) => [r.method, r.headers.authorization]),
        [['POST', `Bearer ${token}`]],
        'one ticket, fetched with the token in a header',
      );
      assert.equal(await tickets[0].status(), 201);
      assert.equal(streams.length, 1, `one EventSource: ${streams.map((r) => r.url.search).join(' ')}`);
      assert.match(streams[0].url.searchParams.get('ticket') ?? '', /^[0-9a-f]{64}$/);
      for (const r of requests) assert.ok(!r.url.href.includes(token), `the token is in a URL: ${r.url.href}`);
    });
  });

  it('a ticket opens one stream only: a second EventSource with it gets no event', CASE, (t) => {
    const channel = unique('private.once');
    const token = signJwt({ sub: unique('user'), subscribe: [channel] }, 120);
    // A page of the gateway's origin with no stream of its own, driven by its own script.
    return inFreshPage(t, '/healthz', async (page) => {
      const url = await page.evaluate(
        async ({ token, channel }) => {
          const res = await fetch('/tickets', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
          if (res.status !== 201) throw new Error(`POST /tickets answered ${res.status}: ${await res.text()}`);
          const { ticket } = await res.json();
          // What each EventSource went through: opened, readyState at each error, data received.
          window.streams = {};
          window.openStream = (name, url) => {
            const log = (window.streams[name] = { opened: false, errors: [], data: [] });
            const es = new EventSource(url);
            es.onopen = () => (log.opened = true);
            es.onerror = () => log.errors.push(es.readyState);
            es.onmessage = (e) => log.data.push(e.data);
          };
          return `/events?channel=${encodeURIComponent(channel)}&ticket=${ticket}`;
        },
        { token, channel },
      );
      const stream = (name) => page.evaluate((n) => window.streams[n], name);

      await page.evaluate((u) => window.openStream('first', u), url);
      await eventually('the first EventSource open', async () => (await stream('first')).opened);
      const one = unique('one');
      await broadcast(channel, 'message', one);
      await eventually('the first EventSource to receive the event', async () => (await stream('first')).data.includes(one));

      await page.evaluate((u) => window.openStream('second', u), url);
      // Refused (401): the browser closes it for good (readyState 2, CLOSED) and never retries.
      await eventually('the second EventSource closed', async () => (await stream('second')).errors.includes(2));
      const two = unique('two');
      await broadcast(channel, 'message', two);
      await eventually('the first EventSource to receive the next event', async () => (await stream('first')).data.includes(two));
      // Events arrive in order on the first stream: had the second opened, it would have this one too.
      assert.deepEqual(await stream('second'), { opened: false, errors: [2], data: [] });

      // EventSource cannot say why; the same URL fetched shows the gateway's answer.
      const why = await page.evaluate(async (u) => {
        const res = await fetch(u);
        return { status: res.status, body: await res.json() };
      }, url);
      assert.equal(why.status, 401);
      assert.equal(why.body.error.code, 'invalid_ticket');
    });
  });

  it('ends a stream with token_expired when its token expires, and resumes after signing in again', CASE, (t) => {
    const channel = unique('private.expiry');
    const user = unique('user');
    return inFreshPage(t, `/?channel=${channel}`, async (page) => {
      await statusIs(page, 'closed'); // no credential yet
      const requests = recordRequests(page);
      // Long enough to open the stream and see an event before it expires, on a busy machine.
      await useStreamToken(page, signJwt({ sub: user, subscribe: [channel] }, 5));
      await statusIs(page, 'open');
      const seen = unique('seen');
      await broadcast(channel, 'message', { text: seen });
      await items(page, seen).first().waitFor({ timeout: WAIT_MS });

      // At the token's exp the gateway sends token_expired and ends the stream. The client does not
      // let the browser reconnect with the spent ticket: it asks for a new ticket, which the expired
      // token cannot get, and stops, saying why.
      await page.locator('[data-testid="event-item"][data-event-type="token_expired"]').waitFor({ timeout: WAIT_MS });
      await statusIs(page, 'closed');
      assert.match(await statusError(page), /Signed out: the token expired/);
      const streams = requests.filter((r) => r.type === 'eventsource');
      assert.equal(streams.length, 1, `no EventSource after the expiry: ${streams.map((r) => r.url.search).join(' ')}`);
      const tickets = requests.filter((r) => r.url.pathname === '/tickets');
      assert.deepEqual(await Promise.all(tickets.map((r) => r.status())), [201, 401], 'a second ticket asked for, and refused');

      // Published while signed out; a fresh token resumes from the last event id, so it is shown once.
      const missed = unique('missed');
      await broadcast(channel, 'message', { text: missed });
      const fresh = signJwt({ sub: user, subscribe: [channel] }, 120);
      await useStreamToken(page, fresh);
      await statusIs(page, 'open');
      await items(page, missed).first().waitFor({ timeout: WAIT_MS });
      const after = unique('after');
      await broadcast(channel, 'message', { text: after });
      await items(page, after).first().waitFor({ timeout: WAIT_MS });
      assert.equal(await items(page, missed).count(), 1);
      assert.equal(await items(page, seen).count(), 1);
      const last = requests.filter((r) => r.url.pathname === '/tickets').at(-1);
      assert.equal(last.headers.authorization, `Bearer ${fresh}`, 'the new ticket is fetched with the fresh token');
    });
  });

  it('waits out Retry-After when the gateway is at capacity (503), then connects by itself', CASE, async (t) => {
    // A gateway of its own, full with two streams held from here: the limit must not depend on
    // what other cases hold.
    const config = gatewayConfig('capacity', [
      'sse: {retry: 500ms}',
      'channels:',
      '  - name: "*"',
      '    subscribe: public',
      '    publish: claims',
      'auth:',
      '  api_keys:',
      '    - {name: e2e, key_env: E2E_KEY, publish: ["*"], admin: true}',
      'limits: {max_connections: 2}',
    ]);
    const full = await startProgram('sse-gateway', gatewayBin, ['--config', config], { E2E_KEY: key }, 'sse-gateway-capacity');
    const held = new AbortController();
    try {
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${full.url}/events?channel=holder`, { signal: held.signal });
        assert.equal(res.status, 200, 'a held stream');
      }
      const channel = unique('capacity');
      await inFreshPage(t, null, async (page) => {
        const requests = recordRequests(page);
        await page.goto(`${full.url}/?channel=${channel}`);
        // The browser's EventSource gets 503 and gives up for good; the client asks the gateway
        // why, says so, and waits the Retry-After it was told.
        await statusIs(page, 'reconnecting');
        assert.match(await statusError(page), /Unavailable: the gateway is at its connection limit\. Try again in 5 s\..*503 at_capacity/s);
        assert.match(await page.locator('.feed .status-description').textContent(), /Attempt 1, next try in \d s\./);
        // The header reaches the page's script.
        const seen = await page.evaluate(async (u) => {
          const res = await fetch(u);
          return { status: res.status, retryAfter: res.headers.get('retry-after'), code: (await res.json()).error.code };
        }, `/events?channel=${channel}`);
        assert.deepEqual(seen, { status: 503, retryAfter: '5', code: 'at_capacity' });

        // Room again: the page connects by itself, no sooner than Retry-After after its first try.
        held.abort();
        await statusIs(page, 'open');
        const tries = requests.filter((r) => r.type === 'eventsource' && r.url.searchParams.get('channel') === channel);
        assert.ok(tries.length >= 2, `tries: ${tries.length}`);
        const waited = tries[1].at - tries[0].at;
        assert.ok(waited >= 4_500, `tried again after ${waited} ms, before Retry-After (5 s)`);
        const marker = unique('room');
        await broadcast(channel, 'message', { text: marker }, full.url);
        await items(page, marker).first().waitFor({ timeout: WAIT_MS });
      });
    } finally {
      held.abort();
      await stopProgram(full.child);
    }
  });

  it('shows a reset notice for a resume id the gateway cannot honour', CASE, (t) => {
    const channel = unique('reset');
    return inFreshPage(t, `/?channel=${channel}&lastEventId=bogus`, async (page) => {
      const notice = page.locator('[data-testid="reset-notice"]');
      await notice.waitFor({ timeout: WAIT_MS });
      assert.match(await notice.textContent(), /reset.*malformed_id/s);
      await statusIs(page, 'open');
      // The stream continues live after the reset.
      const marker = unique('after-reset');
      await broadcast(channel, 'message', { text: marker });
      await items(page, marker).first().waitFor({ timeout: WAIT_MS });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: join(artifacts, 'ui-phone.png'), fullPage: false });
    });
  });

  it('explains a refused stream in words and stops retrying', CASE, (t) =>
    // EventSource only says "error" for a 400; the client asks the gateway why.
    inFreshPage(t, '/?channel=bad%20name', async (page) => {
      await statusIs(page, 'closed');
      const alert = page.locator('.connection-status .status-error');
      await alert.waitFor({ timeout: WAIT_MS });
      const text = await alert.textContent();
      assert.match(text, /Invalid channel name/);
      assert.match(text, /400 invalid_channel/);
    }));
});

/** A TCP port on 127.0.0.1 that was free a moment ago (for a listener the gateway does not print). */
function freePort() {
  return new Promise((resolvePromise, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePromise(port));
    });
  });
}

describe('HTTPS and HTTP/2 in the browser', () => {
  let tlsGateway;
  let tlsBrowser;
  let tlsTmp;
  let origin;

  before(
    async () => {
      for (const [what, path] of [
        ['sse-gateway', gatewayBin],
        ['chromium', chromiumPath],
      ]) {
        assert.ok(existsSync(path), `${what} not found at ${path}`);
      }
      mkdirSync(artifacts, { recursive: true });
      tlsTmp = mkdtempSync(join(tmpdir(), 'sse-gateway-e2e-tls-'));
      // A self-signed certificate made for this run: the browser is told to accept it.
      const [cert, certKey] = [join(tlsTmp, 'gateway.crt'), join(tlsTmp, 'gateway.key')];
      const made = spawnSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
        '-keyout', certKey, '-out', cert, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ]);
      assert.equal(made.status, 0, `openssl: ${made.stderr}`);
      const port = await freePort();
      origin = `https://localhost:${port}`;
      const config = join(tlsTmp, 'gateway.yaml');
      writeFileSync(config, [
        'listen: 127.0.0.1:0',
        'static_dir: ""',
        `tls: {listen: "127.0.0.1:${port}", cert_file: ${JSON.stringify(cert)}, key_file: ${JSON.stringify(certKey)}}`,
        'channels:',
        '  - {name: "*", subscribe: public, publish: claims}',
        'auth:',
        '  api_keys:',
        '    - {name: e2e, key_env: E2E_KEY, publish: ["*"], admin: true}',
        '',
      ].join('\n'));
      tlsGateway = await startProgram('sse-gateway', gatewayBin, ['--config', config], { E2E_KEY: key }, 'sse-gateway-https');
      tlsBrowser = await chromium.launch({
        executablePath: chromiumPath,
        headless: !process.env.E2E_HEADED,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--ignore-certificate-errors'],
      });
    },
    CASE,
  );

  after(async () => {
    await tlsBrowser?.close().catch(() => {});
    await stopProgram(tlsGateway?.child);
    if (tlsTmp) rmSync(tlsTmp, { recursive: true, force: true });
  });

  it('ten EventSources to one origin over HTTPS (HTTP/2) all open and all receive a published event', CASE, async () => {
    const context = await tlsBrowser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${origin}/healthz`);
      // Over HTTP/1.1 a browser holds six connections per origin, and the seventh stream would wait.
      assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h2');
      const channel = unique('h2');
      await page.evaluate((channel) => {
        window.opened = new Set();
        window.received = new Map();
        for (let i = 0; i < 10; i++) {
          const source = new EventSource(`/events?channel=${channel}`);
          source.onopen = () => window.opened.add(i);
          source.addEventListener('note', (e) => window.received.set(i, e.data));
        }
      }, channel);
      await page.waitForFunction(() => window.opened.size === 10, null, { timeout: WAIT_MS });
      const clients = await api('GET', '/clients', undefined, tlsGateway.url);
      assert.equal(clients.json.total, 10);
      const marker = unique('all-ten');
      await broadcast(channel, 'note', marker, tlsGateway.url);
      await page.waitForFunction(
        (marker) => [...window.received.values()].filter((data) => data === marker).length === 10,
        marker,
        { timeout: WAIT_MS },
      );
    } finally {
      await context.close();
    }
  });
});
