// Thousands of VUs each hold one SSE stream for a fixed window and count the events in the body,
// while a second scenario publishes a known number of events at a fixed rate. Fails the run when
// any stream missed an event.
//
//   BASE_URL=http://127.0.0.1:8080 API_KEY=... STREAMS=2000 PUB_RATE=2 PUB_DURATION=20s \
//     k6 run --summary-export=streams-summary.json loadtest/k6/streams.js
//   # the same against nginx + nchan (loadtest/peers/nchan/start PORT):
//   TARGET=nchan BASE_URL=http://127.0.0.1:PORT STREAMS=2000 PUB_RATE=2 PUB_DURATION=20s \
//     k6 run loadtest/k6/streams.js
//
// What k6 1.1.0 does when its timeout ends a streaming response (observed here, 2026-11-27, against
// the gateway and against nchan, with events published during the window; see README.md):
//   - res.body KEEPS every byte received before the timeout (21 of 21 events published during a
//     4 s window were in the body, from the opening `retry:`/`: hi` on), so counting the events in
//     the body of a timed-out request is sound, and that is what this script relies on;
//   - but res.status is 0, res.error is "request timeout", res.error_code is 1050, and res.headers
//     is empty; res.timings.waiting (time to first byte) is kept;
//   - the request counts as failed in http_req_failed (status 0 is not an expected status).
// So http_req_failed is thresholded on the publish scenario only, and each stream is judged by
// `stream_ok`: a stream is ok when it ended with error_code 1050 (our timeout) or status 200 and
// its body starts as an event stream does (gateway: `retry:`, nchan: `: hi`); a refused
// connection, a 4xx/5xx or an early reset are not.
//
// Timeline (every stream's window covers the whole publish period, so each must see every event):
//   0 .. RAMP                 streams connect, spread evenly
//   RAMP + SETTLE             the publisher starts: EVENTS = PUB_RATE * PUB_DURATION events,
//                             data {"n": 0..EVENTS-1}
//   ... + PUB_DURATION + TAIL every stream's request times out at the same moment
//
// Env (defaults in brackets):
//   TARGET        gateway | nchan [gateway]
//                 gateway: GET BASE_URL/events?channel=CHANNEL, POST BASE_URL/broadcast (JSON, X-API-Key)
//                 nchan:   GET BASE_URL/sub/CHANNEL, POST BASE_URL/pub/CHANNEL (the data as the raw body)
//   BASE_URL      [http://127.0.0.1:8080]; only loopback targets are accepted
//   API_KEY       publish key for the gateway [required with TARGET=gateway]
//   CHANNEL       [bench]
//   STREAMS       streams (VUs) held open [2000]; k6 costs roughly 0.4 MB per VU here
//   RAMP          time over which the streams connect [10s]
//   SETTLE        wait after the ramp before the first publish [2s]
//   PUB_RATE      events published per second [2]
//   PUB_DURATION  publish period [20s]
//   TAIL          wait after the last publish before the windows end [3s]
// To spread the streams over several source addresses use k6's own flag, e.g.
//   k6 run --local-ips=127.0.0.1-127.0.0.4 ...
//
// Metrics and thresholds (the run fails when any is missed; k6 exits 99):
//   events_per_stream  Trend, distinct events (by n) each stream saw      min >= EVENTS
//   events_missing     Counter, sum over streams of EVENTS - distinct     count == 0
//   events_duplicate   Counter, events a stream saw more than once        count == 0
//   stream_ok          Rate, streams that opened and ended by our timeout rate == 1
//   stream_ttfb        Trend, ms to the first byte of each stream         (reported)
//   http_req_failed{scenario:publish} < 0.1 %, checks{scenario:publish} > 99.9 % (status 202 / 201|202),
//   dropped_iterations == 0 (a dropped publish would show up as missing events).
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { requireLoopback, seconds } from './lib.js';
import { Counter, Rate, Trend } from 'k6/metrics';

const TARGET = __ENV.TARGET || 'gateway';
const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const API_KEY = __ENV.API_KEY || '';
const CHANNEL = __ENV.CHANNEL || 'bench';
const STREAMS = parseInt(__ENV.STREAMS || '2000', 10);
const RAMP = __ENV.RAMP || '10s';
const SETTLE = __ENV.SETTLE || '2s';
const PUB_RATE = parseInt(__ENV.PUB_RATE || '2', 10);
const PUB_DURATION = __ENV.PUB_DURATION || '20s';
const TAIL = __ENV.TAIL || '3s';

requireLoopback(BASE_URL);
if (TARGET !== 'gateway' && TARGET !== 'nchan') throw new Error(`TARGET must be gateway or nchan: ${TARGET}`);
if (TARGET === 'gateway' && !API_KEY) throw new Error('API_KEY is required with TARGET=gateway');

const RAMP_S = seconds(RAMP);
const PUB_START_S = RAMP_S + seconds(SETTLE);
const PUB_DURATION_S = seconds(PUB_DURATION);
const WINDOW_END_S = PUB_START_S + PUB_DURATION_S + seconds(TAIL);
// k6's constant-arrival-rate starts one more iteration than rate*duration (observed: 20002 for
// 2000/s over 10 s); the publisher skips every iteration past EVENTS so the count is exact.
const EVENTS = Math.round(PUB_RATE * PUB_DURATION_S);

const SUB_URL = TARGET === 'gateway'
  ? `${BASE_URL}/events?channel=${encodeURIComponent(CHANNEL)}`
  : `${BASE_URL}/sub/${CHANNEL}`;
const PUB_URL = TARGET === 'gateway' ? `${BASE_URL}/broadcast` : `${BASE_URL}/pub/${CHANNEL}`;
// The first bytes each server sends on a new stream.
const OPENING = TARGET === 'gateway' ? /^(retry:|:)/ : /^: hi\n/;

const eventsPerStream = new Trend('events_per_stream');
const eventsMissing = new Counter('events_missing');
const eventsDuplicate = new Counter('events_duplicate');
const streamOk = new Rate('stream_ok');
const streamTtfb = new Trend('stream_ttfb', true);

export const options = {
  setupTimeout: '10s',
  scenarios: {
    streams: {
      executor: 'per-vu-iterations',
      exec: 'stream',
      vus: STREAMS,
      iterations: 1,
      maxDuration: `${Math.ceil(WINDOW_END_S + 30)}s`,
      gracefulStop: '5s',
    },
    publish: {
      executor: 'constant-arrival-rate',
      exec: 'publish',
      rate: PUB_RATE,
      timeUnit: '1s',
      duration: PUB_DURATION,
      startTime: `${PUB_START_S}s`,
      preAllocatedVUs: Math.max(2, Math.ceil(PUB_RATE / 50)),
      maxVUs: Math.max(20, Math.ceil(PUB_RATE / 5)),
      gracefulStop: '5s',
    },
  },
  thresholds: {
    events_per_stream: [`min>=${EVENTS}`],
    events_missing: ['count==0'],
    events_duplicate: ['count==0'],
    stream_ok: ['rate==1'],
    'http_req_failed{scenario:publish}': ['rate<0.001'],
    'checks{scenario:publish}': ['rate>0.999'],
    dropped_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

export function setup() {
  // Shared by every VU: all windows end at the same moment, whenever each stream connected.
  return { t0: Date.now() };
}

export function stream(data) {
  const i = exec.scenario.iterationInTest; // 0 .. STREAMS-1
  const connectAt = data.t0 + (RAMP_S * 1000 * i) / STREAMS;
  const wait = connectAt - Date.now();
  if (wait > 0) sleep(wait / 1000);
  const timeoutMs = Math.max(1000, Math.round(data.t0 + WINDOW_END_S * 1000 - Date.now()));
  const res = http.get(SUB_URL, {
    timeout: `${timeoutMs}ms`,
    headers: { Accept: 'text/event-stream' }, // nchan answers 403 without it
    tags: { name: 'GET stream' },
  });
  const body = typeof res.body === 'string' ? res.body : '';
  const ended = res.error_code === 1050 || res.status === 200;
  streamOk.add(ended && OPENING.test(body), { status: String(res.status), error_code: String(res.error_code) });
  if (res.timings && res.timings.waiting > 0) streamTtfb.add(res.timings.waiting);

  const seen = new Set();
  let dup = 0;
  for (const line of body.split(/\r\n|\r|\n/)) {
    if (!line.startsWith('data:')) continue;
    const value = line.slice(line.startsWith('data: ') ? 6 : 5);
    let n;
    try {
      n = JSON.parse(value).n;
    } catch (e) {
      continue; // not one of ours (e.g. a reset event)
    }
    if (typeof n !== 'number' || n < 0 || n >= EVENTS) continue;
    if (seen.has(n)) dup += 1;
    else seen.add(n);
  }
  eventsPerStream.add(seen.size);
  eventsMissing.add(EVENTS - seen.size);
  eventsDuplicate.add(dup);
}

const PUB_PARAMS = TARGET === 'gateway'
  ? { headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY }, tags: { name: 'publish' } }
  : { headers: { 'Content-Type': 'text/plain' }, tags: { name: 'publish' } };

export function publish() {
  const n = exec.scenario.iterationInTest;
  if (n >= EVENTS) return;
  const body = TARGET === 'gateway'
    ? JSON.stringify({ channel: CHANNEL, event: 'bench', data: { n } })
    : JSON.stringify({ n });
  const res = http.post(PUB_URL, body, PUB_PARAMS);
  // nchan: 201 when the message had subscribers, 202 when none.
  check(res, { 'publish accepted': (r) => (TARGET === 'gateway' ? r.status === 202 : r.status === 201 || r.status === 202) });
}
