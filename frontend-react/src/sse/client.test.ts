import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fakeEventSource, fetchReplies, gatewayError, jsonReply, streamReply } from '../test/fakes';
import { backoffDelay, DEFAULT_BACKOFF } from './backoff';
import { Base64Error } from './base64';
import { SseClient, type SseClientOptions } from './client';
import { GatewayError } from './errors';
import { ticketSource } from './tickets';
import type { SseEvent } from './types';

const BASE = 'http://gw.test/';

function makeClient(extra: Partial<SseClientOptions> = {}) {
  const fake = fakeEventSource();
  const client = new SseClient({
    channels: ['news'],
    EventSource: fake.EventSource,
    baseUrl: BASE,
    window: null,
    random: () => 0, // no jitter: the full exponential delay
    probe: false,
    ...extra,
  });
  const states: string[] = [];
  client.subscribe((s) => {
    if (states[states.length - 1] !== s.state) states.push(s.state);
  });
  return { client, fake, states };
}

/** Lets pending promises (ticket fetches, probes) settle under fake timers. */
async function settle() {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe('backoffDelay', () => {
  it('doubles from the initial delay up to the maximum', () => {
    const none = () => 0;
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, DEFAULT_BACKOFF, none))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
  });

  it('takes up to the jitter share off at random', () => {
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 1)).toBe(2000); // 4000 - 50%
    expect(backoffDelay(3, { ...DEFAULT_BACKOFF, jitter: 0.2 }, () => 0.5)).toBe(3600);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(2, DEFAULT_BACKOFF);
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});

describe('SseClient', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('opens one EventSource with channels, types and the resume point in the query', () => {
    const { client, fake } = makeClient({ channels: ['news', 'alerts'], types: ['headline'], lastEventId: '17-4' });
    client.start();
    expect(fake.instances).toHaveLength(1);
    const p = fake.last().params;
    expect(p.getAll('channel')).toEqual(['news', 'alerts']);
    expect(p.get('types')).toBe('headline');
    expect(p.get('lastEventId')).toBe('17-4');
    expect(new URL(fake.last().url).pathname).toBe('/events');
  });

  it('goes connecting -> open -> reconnecting -> open when the browser retries by itself', () => {
    const { client, fake, states } = makeClient();
    client.start();
    expect(client.getSnapshot().state).toBe('connecting');
    fake.last().open();
    fake.last().drop(); // readyState CONNECTING: the browser reconnects with Last-Event-ID
    expect(client.getSnapshot()).toMatchObject({ state: 'reconnecting', attempts: 1 });
    fake.last().open();
    expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
    expect(client.getSnapshot().attempts).toBe(0);
    expect(fake.instances).toHaveLength(1); // the browser's retry, not a new EventSource
  });

  it('tracks the last event id and resumes with ?lastEventId= when it opens a new EventSource', () => {
    const { client, fake } = makeClient();
    client.start();
    fake.last().open();
    fake.last().emit('message', { n: 1 }, '17-1');
    fake.last().emit('message', { n: 2 }, '17-2');
    expect(client.getSnapshot().lastEventId).toBe('17-2');
    fake.last().fail(); // readyState CLOSED: the browser gave up
    expect(fake.last().closed).toBe(true);
    vi.advanceTimersByTime(1000);
    expect(fake.instances).toHaveLength(2);
    expect(fake.last().params.get('lastEventId')).toBe('17-2');
  });

  it('backs off exponentially between failures, and resets after an open', () => {
    const { client, fake } = makeClient();
    client.start();
    const expectNextAfter = (ms: number) => {
      const before = fake.instances.length;
      fake.last().fail();
      vi.advanceTimersByTime(ms - 1);
      expect(fake.instances).toHaveLength(before);
      vi.advanceTimersByTime(1);
      expect(fake.instances).toHaveLength(before + 1);
    };
    expectNextAfter(1000);
    expectNextAfter(2000);
    expectNextAfter(4000);
    expect(client.getSnapshot()).toMatchObject({ state: 'reconnecting', attempts: 3 });
    fake.last().open();
    expect(client.getSnapshot()).toMatchObject({ state: 'open', attempts: 0 });
    expectNextAfter(1000);
  });

  it('applies jitter and the maximum delay', () => {
    const { client, fake } = makeClient({ random: () => 1, backoff: { initialMs: 400, maxMs: 1000 } });
    client.start();
    fake.last().fail();
    expect(client.getSnapshot().nextRetryAt).toBe(Date.now() + 200); // 400 less 50%
    vi.advanceTimersByTime(200);
    fake.last().fail();
    vi.advanceTimersByTime(400);
    fake.last().fail();
    vi.advanceTimersByTime(500); // 1600 capped at 1000, less 50%
    expect(fake.instances).toHaveLength(4);
  });

  it('gives up after maxAttempts failures in a row', () => {
    const { client, fake } = makeClient({ maxAttempts: 2 });
    client.start();
    fake.last().fail();
    vi.advanceTimersByTime(1000);
    fake.last().fail();
    expect(client.getSnapshot().state).toBe('closed');
    expect(client.getSnapshot().error?.code).toBe('gave_up');
    vi.advanceTimersByTime(60_000);
    expect(fake.instances).toHaveLength(2);
  });

  it('probes a failed stream and stops on an error that will not go away', async () => {
    const fetch = fetchReplies(gatewayError(400, 'invalid_channel', 'channel names match [A-Za-z0-9._:/-]{1,128}'));
    const { client, fake } = makeClient({ probe: true, fetch, channels: ['bad name'] });
    client.start();
    fake.last().fail();
    await settle();
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(fetch.mock.calls[0][1]?.headers).toEqual({ Accept: 'text/event-stream' });
    expect(client.getSnapshot().state).toBe('closed');
    expect(client.getSnapshot().error).toMatchObject({ status: 400, code: 'invalid_channel' });
    vi.advanceTimersByTime(60_000);
    expect(fake.instances).toHaveLength(1);
  });

  it('waits at least Retry-After when the probe meets a 503', async () => {
    const fetch = fetchReplies(gatewayError(503, 'at_capacity', 'too many streams', { 'Retry-After': '5' }), streamReply());
    const { client, fake } = makeClient({ probe: true, fetch });
    client.start();
    fake.last().fail();
    await settle();
    expect(client.getSnapshot()).toMatchObject({ state: 'reconnecting', error: { code: 'at_capacity' } });
    vi.advanceTimersByTime(4999);
    expect(fake.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(fake.instances).toHaveLength(2);
  });

  it('treats a probe that finds a healthy stream as transient', async () => {
    const fetch = fetchReplies(streamReply());
    const { client, fake } = makeClient({ probe: true, fetch });
    client.start();
    fake.last().fail();
    await settle();
    expect(client.getSnapshot()).toMatchObject({ state: 'reconnecting', error: null });
    vi.advanceTimersByTime(1000);
    expect(fake.instances).toHaveLength(2);
  });

  it('surfaces reset: reason, listeners, and the reset id as the new resume point', () => {
    const { client, fake } = makeClient({ lastEventId: 'bogus' });
    const onReset = vi.fn();
    const onAny = vi.fn();
    client.onReset(onReset);
    client.onAny(onAny);
    client.start();
    fake.last().open();
    fake.last().emit('reset', { reason: 'malformed_id' }, '17-57');
    expect(onReset).toHaveBeenCalledWith(expect.objectContaining({ reason: 'malformed_id', id: '17-57' }));
    expect(client.getSnapshot().lastReset).toMatchObject({ reason: 'malformed_id' });
    expect(client.getSnapshot().lastEventId).toBe('17-57');
    expect(onAny).toHaveBeenCalledWith(expect.objectContaining({ type: 'reset' }));
    expect(client.getSnapshot().state).toBe('open'); // a reset does not end the stream
  });

  it('delivers typed events to listeners of their type, and listens for new types on the open stream', () => {
    const { client, fake } = makeClient();
    const got: string[] = [];
    client.on('notification', (e) => got.push((e.json as { title: string }).title));
    client.start();
    expect(fake.last().listened()).toEqual(expect.arrayContaining(['message', 'reset', 'token_expired', 'notification']));
    expect(fake.last().listened()).not.toContain('alert');
    fake.last().emit('notification', { title: 'Deployed' }, '1-1');
    client.listenFor('alert');
    expect(fake.last().listened()).toContain('alert');
    const alerts = vi.fn();
    client.on('alert', alerts);
    fake.last().emit('alert', 'plain text', '1-2');
    expect(got).toEqual(['Deployed']);
    expect(alerts).toHaveBeenCalledWith(expect.objectContaining({ type: 'alert', data: 'plain text', json: undefined, id: '1-2' }));
  });

  it('hands out the bytes of an event published with data_base64, on request', () => {
    const { client, fake } = makeClient();
    const events: SseEvent[] = [];
    client.onAny((e) => events.push(e));
    client.start();
    fake.last().emit('message', 'AAEC//4=', '1-1'); // what the gateway sends for data_base64
    fake.last().emit('message', { text: 'hello' }, '1-2');
    expect(events[0].data).toBe('AAEC//4=');
    expect(events[0].bytes()).toEqual(Uint8Array.of(0x00, 0x01, 0x02, 0xff, 0xfe));
    // Nothing on the wire marks an event binary: text data is only refused when asked for bytes.
    expect(events[1].json).toEqual({ text: 'hello' });
    expect(() => events[1].bytes()).toThrow(Base64Error);
    expect(() => events[1].bytes()).toThrow(/not standard base64/);
  });

  it('fetches a new ticket for every EventSource and never lets the browser reuse one', async () => {
    let n = 0;
    const getTicket = vi.fn(async () => `t${++n}`);
    const { client, fake } = makeClient({ getTicket });
    client.start();
    await settle();
    expect(fake.last().params.get('ticket')).toBe('t1');
    fake.last().open();
    fake.last().emit('message', 'x', '5-1');
    fake.last().drop(); // the browser would retry with the spent ticket t1
    expect(fake.instances[0].closed).toBe(true);
    expect(client.getSnapshot().state).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    await settle();
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(fake.instances).toHaveLength(2);
    expect(fake.last().params.get('ticket')).toBe('t2');
    expect(fake.last().params.get('lastEventId')).toBe('5-1');
  });

  it('stops when the ticket endpoint refuses the credential', async () => {
    const getTicket = ticketSource({ credential: { apiKey: 'wrong' }, fetch: fetchReplies(gatewayError(401, 'unauthorized', 'bad key')) });
    const { client, fake } = makeClient({ getTicket });
    client.start();
    await settle();
    expect(fake.instances).toHaveLength(0);
    expect(client.getSnapshot()).toMatchObject({ state: 'closed', error: { status: 401, endpoint: '/tickets' } });
  });

  it('on token_expired closes the stream, lets the app refresh, and reconnects with a fresh ticket', async () => {
    let n = 0;
    const getTicket = vi.fn(async () => `t${++n}`);
    let refreshed = false;
    const onTokenExpired = vi.fn(async () => {
      await Promise.resolve();
      refreshed = true;
    });
    const { client, fake, states } = makeClient({ getTicket, onTokenExpired });
    client.start();
    await settle();
    fake.last().open();
    fake.last().emit('message', 'x', '9-3');
    fake.last().emit('token_expired', { reason: 'token_expired' }, '9-3');
    expect(fake.instances[0].closed).toBe(true);
    expect(onTokenExpired).toHaveBeenCalledTimes(1);
    await settle();
    expect(refreshed).toBe(true);
    expect(fake.instances).toHaveLength(2);
    expect(fake.last().params.get('ticket')).toBe('t2');
    expect(fake.last().params.get('lastEventId')).toBe('9-3');
    fake.last().open();
    expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
  });

  it('on token_expired, when the ticket endpoint still refuses the credential, closes with token_expired', async () => {
    const replies = fetchReplies(jsonReply(201, { ticket: 't1', expires_in: 30 }), gatewayError(401, 'unauthorized', 'the token has expired'));
    const getTicket = ticketSource({ credential: { bearer: 'expired' }, fetch: replies });
    const { client, fake, states } = makeClient({ getTicket });
    client.start();
    await settle();
    fake.last().open();
    fake.last().emit('token_expired', { reason: 'token_expired' });
    await vi.waitFor(() => expect(client.getSnapshot().state).toBe('closed'));
    expect(fake.instances).toHaveLength(1);
    expect(client.getSnapshot()).toMatchObject({
      error: { status: 401, code: 'token_expired', endpoint: '/tickets', message: expect.stringContaining('the token has expired') },
    });
    expect(states).toEqual(['connecting', 'open', 'reconnecting', 'closed']);
  });

  it('on token_expired without a way to refresh, closes with the error', () => {
    const { client, fake } = makeClient();
    client.start();
    fake.last().open();
    fake.last().emit('token_expired', { reason: 'token_expired' });
    expect(fake.last().closed).toBe(true);
    expect(client.getSnapshot()).toMatchObject({ state: 'closed', error: { code: 'token_expired' } });
    vi.advanceTimersByTime(60_000);
    expect(fake.instances).toHaveLength(1);
  });

  it('reconnects at once when the network comes back during a backoff', () => {
    const win = new EventTarget();
    const { client, fake } = makeClient({ window: win as unknown as Window });
    client.start();
    fake.last().fail();
    fake.last(); // still the first
    expect(fake.instances).toHaveLength(1);
    win.dispatchEvent(new Event('online'));
    expect(fake.instances).toHaveLength(2);
  });

  it('close() ends the stream and cancels a pending reconnect; reconnect() starts again', () => {
    const { client, fake } = makeClient();
    client.start();
    fake.last().fail();
    client.close();
    expect(client.getSnapshot().state).toBe('closed');
    vi.advanceTimersByTime(60_000);
    expect(fake.instances).toHaveLength(1);
    client.reconnect();
    expect(fake.instances).toHaveLength(2);
    expect(client.getSnapshot()).toMatchObject({ state: 'connecting', attempts: 0 });
  });
});

describe('ticketSource', () => {
  it('POSTs /tickets with the credential in a header and returns the ticket', async () => {
    const fetch = fetchReplies(jsonReply(201, { ticket: 'abc', expires_in: 30 }));
    expect(await ticketSource({ credential: { bearer: 'jwt' }, fetch })()).toBe('abc');
    expect(fetch).toHaveBeenCalledWith('/tickets', expect.objectContaining({ method: 'POST', headers: { Authorization: 'Bearer jwt' } }));
    const fetch2 = fetchReplies(jsonReply(201, { ticket: 'def', expires_in: 30 }));
    await ticketSource({ credential: () => ({ apiKey: 'k' }), fetch: fetch2, url: '/t' })();
    expect(fetch2).toHaveBeenCalledWith('/t', expect.objectContaining({ headers: { 'X-API-Key': 'k' } }));
  });

  it('turns an error reply into a GatewayError', async () => {
    const fetch = fetchReplies(gatewayError(429, 'rate_limited', 'slow down', { 'Retry-After': '3' }));
    const err = await ticketSource({ credential: { apiKey: 'k' }, fetch })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect(err).toMatchObject({ status: 429, code: 'rate_limited', retryAfter: 3, transient: true });
  });
});
