// Publish throughput of the gateway's `POST /broadcast`, with thresholds that fail the run.
//
//   BASE_URL=http://127.0.0.1:8080 API_KEY=... RATE=20000 DURATION=20s SUBSCRIBERS=1000 \
//     k6 run --summary-export=publish-summary.json loadtest/k6/publish.js
//
// k6 exits 99 when a threshold is missed (0 when all pass); --summary-export writes every metric
// (http_reqs rate, http_req_duration percentiles, dropped_iterations, ...) as one JSON object.
//
// Env (defaults in brackets):
//   BASE_URL     gateway base URL [http://127.0.0.1:8080]; only loopback targets are accepted
//   API_KEY      sent as X-API-Key; needs the publish right on CHANNEL [required]
//   CHANNEL      channel to publish to [bench]
//   RATE         target POST /broadcast requests per second [20000]
//   DURATION     how long the publish scenario runs [20s]
//   SUBSCRIBERS  streams held open on CHANNEL during the run, so every publish fans out to them [0];
//                each is one VU holding `GET /events` with responseType 'none' (the body is read and
//                dropped, so k6 memory does not grow with the events); they start 5 s before the
//                publisher and are excluded from the publish thresholds. Delivery is not checked
//                here: that is sse-loadgen's and streams.js's job.
//   PRE_VUS / MAX_VUS  VUs for the constant-arrival-rate executor [max(50, RATE/100) / max(200, RATE/20)]
//   BATCH        1: one request per iteration at RATE arrivals/s (constant-arrival-rate) [1].
//                N > 1: BATCH_VUS VUs each send N requests per iteration with http.batch
//                (6 connections per VU, k6's batchPerHost), as fast as they are answered, and
//                the run must reach RATE requests/s. k6's JavaScript costs about 150 µs of CPU per
//                iteration, so one request per iteration tops out near 8,000 req/s on 2 cores
//                whatever the server; batches spread that cost over N requests.
//   BATCH_VUS    VUs in batch mode [6]
//
// Thresholds (the run fails when any is missed), on the publish scenario only:
//   http_req_failed rate < 0.1 %, http_req_duration p(99) < 20 ms, checks (status 202) rate > 99.9 %,
//   and either dropped_iterations (arrivals k6 could not start for want of a free VU) < 1 % of
//   RATE * DURATION, or (batch mode) http_reqs rate >= RATE.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { requireLoopback, seconds } from './lib.js';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const API_KEY = __ENV.API_KEY || '';
const CHANNEL = __ENV.CHANNEL || 'bench';
const RATE = parseInt(__ENV.RATE || '20000', 10);
const DURATION = __ENV.DURATION || '20s';
const SUBSCRIBERS = parseInt(__ENV.SUBSCRIBERS || '0', 10);
const PRE_VUS = parseInt(__ENV.PRE_VUS || String(Math.max(50, Math.ceil(RATE / 100))), 10);
const MAX_VUS = parseInt(__ENV.MAX_VUS || String(Math.max(200, Math.ceil(RATE / 20))), 10);
const BATCH = parseInt(__ENV.BATCH || '1', 10);
const BATCH_VUS = parseInt(__ENV.BATCH_VUS || '6', 10);
const SUB_LEAD_S = 5; // subscribers connect this long before the first publish

requireLoopback(BASE_URL);
if (!API_KEY) throw new Error('API_KEY is required (the gateway key with the publish right)');

const DURATION_S = seconds(DURATION);
const MAX_DROPPED = Math.floor(RATE * DURATION_S * 0.01);

const startTime = SUBSCRIBERS > 0 ? `${SUB_LEAD_S}s` : '0s';
const scenarios = {
  publish: BATCH > 1
    ? {
        executor: 'constant-vus',
        exec: 'publishBatch',
        vus: BATCH_VUS,
        duration: DURATION,
        startTime,
        gracefulStop: '5s',
      }
    : {
        executor: 'constant-arrival-rate',
        exec: 'publish',
        rate: RATE,
        timeUnit: '1s',
        duration: DURATION,
        preAllocatedVUs: PRE_VUS,
        maxVUs: MAX_VUS,
        startTime,
        gracefulStop: '5s',
      },
};
if (SUBSCRIBERS > 0) {
  scenarios.subscribers = {
    executor: 'per-vu-iterations',
    exec: 'subscribe',
    vus: SUBSCRIBERS,
    iterations: 1,
    maxDuration: `${SUB_LEAD_S + DURATION_S + 10}s`,
    gracefulStop: '0s',
  };
}

export const options = {
  scenarios,
  discardResponseBodies: true,
  // One keep-alive connection per VU is what a backend publisher does.
  noConnectionReuse: false,
  thresholds: {
    'http_req_failed{scenario:publish}': ['rate<0.001'],
    'http_req_duration{scenario:publish}': ['p(99)<20'],
    'checks{scenario:publish}': ['rate>0.999'],
    // dropped_iterations only has samples when something was dropped; no samples passes.
    dropped_iterations: [`count<${Math.max(1, MAX_DROPPED)}`],
    // Batch mode must reach the rate; otherwise this only gives the summary the figures the
    // report wants for the publish requests alone.
    'http_reqs{scenario:publish}': BATCH > 1 ? [`rate>=${RATE}`] : ['count>=0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

const PARAMS = {
  headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY },
  tags: { name: 'POST /broadcast' },
};

export function publish() {
  const n = exec.scenario.iterationInTest;
  const body = JSON.stringify({ channel: CHANNEL, event: 'bench', data: { n } });
  const res = http.post(`${BASE_URL}/broadcast`, body, PARAMS);
  check(res, { 'status is 202': (r) => r.status === 202 });
}

// The same request BATCH times: building a body per request would cost the JavaScript time that
// batch mode exists to save.
const BATCH_REQUESTS = Array.from({ length: BATCH }, () => [
  'POST',
  `${BASE_URL}/broadcast`,
  JSON.stringify({ channel: CHANNEL, event: 'bench', data: 'batch' }),
  PARAMS,
]);

export function publishBatch() {
  for (const res of http.batch(BATCH_REQUESTS)) {
    check(res, { 'status is 202': (r) => r.status === 202 });
  }
}

export function subscribe() {
  // Held until the publisher has finished; a timeout is how it ends, so it is not a failure here.
  const window = SUB_LEAD_S + DURATION_S + 5;
  http.get(`${BASE_URL}/events?channel=${encodeURIComponent(CHANNEL)}`, {
    timeout: `${window}s`,
    responseType: 'none',
    headers: { Accept: 'text/event-stream' },
    tags: { name: 'GET /events' },
    responseCallback: http.expectedStatuses(200, 0),
  });
}
