// The gateway's JSON API as the app uses it: POST /broadcast and GET /stats (see docs/src/api.md).
import { GatewayError } from './sse/errors';
import { credentialHeaders, type Credential } from './sse/tickets';
import type { FetchLike } from './sse/types';

/** The `notification` event data of the reference upstream. */
export interface Notification {
  id: string;
  title: string;
  body: string;
  level: 'info' | 'success' | 'warning' | 'error';
  time: string;
}

/** The `metrics` event data of the reference upstream. */
export interface HostMetrics {
  time: string;
  cpu_percent: number;
  memory: { total_bytes: number; available_bytes: number; used_percent: number };
  load?: [number, number, number];
  stream_clients?: number;
}

/** The event types the app knows the shape of. */
export type AppEvents = {
  message: unknown;
  notification: Notification;
  metrics: HostMetrics;
  reset: { reason: string };
};

export interface SourceStats {
  name: string;
  state: string;
  channel?: string;
  events_total: number;
  reconnects_total?: number;
  last_error?: string | null;
}

export interface GatewayStats {
  node?: { uptime_seconds?: number; broker?: string; draining?: boolean; last_event_id?: string };
  streams: { open: number; opened_total?: number };
  events: { published_total: number; delivered_total?: number; resets_total?: number };
  sources?: SourceStats[];
}

/** An event to publish: JSON `data`, or bytes as standard base64 (`data_base64`), never both. */
export type PublishRequest = { channel: string; event?: string } & ({ data: unknown } | { dataBase64: string });

export interface PublishReply {
  id: string;
  channels: string[];
}

async function call<T>(doFetch: FetchLike, url: string, init: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await doFetch(url, init);
  } catch (e) {
    throw GatewayError.network(e);
  }
  if (!res.ok) throw await GatewayError.fromResponse(res);
  return (await res.json()) as T;
}

/** `POST /broadcast`: 202 with the event's id, or a `GatewayError`. */
export function publish(req: PublishRequest, credential: Credential | null, doFetch: FetchLike = fetch): Promise<PublishReply> {
  const body: Record<string, unknown> = { channel: req.channel };
  if (req.event) body.event = req.event;
  if ('dataBase64' in req) body.data_base64 = req.dataBase64;
  else body.data = req.data;
  return call<PublishReply>(doFetch, '/broadcast', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...credentialHeaders(credential) },
    body: JSON.stringify(body),
  });
}

/** `GET /stats` with an admin credential. */
export function fetchStats(credential: Credential | null, doFetch: FetchLike = fetch): Promise<GatewayStats> {
  return call<GatewayStats>(doFetch, '/stats', { headers: credentialHeaders(credential), cache: 'no-store' });
}
