/** Connection states, as shown by `data-testid="connection-status"`. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** One event as delivered to listeners. */
export interface SseEvent<T = unknown> {
  /** The SSE `event:` field (`message` when absent). */
  type: string;
  /** The stream's last event id after this event (`''` when the gateway sent none yet). */
  id: string;
  /** The raw `data:` text (several `data:` lines joined with `\n`). */
  data: string;
  /** `data` parsed as JSON, or `undefined` when it is not JSON (the gateway sends strings verbatim). */
  json: T | undefined;
  /** `Date.now()` when the event arrived. */
  receivedAt: number;
  /**
   * `data` decoded as standard base64: the bytes of an event published with `data_base64`.
   * Nothing on the wire says which events are binary, so this decodes when asked (on every call)
   * and throws `Base64Error` when the data is not base64.
   */
  bytes(): Uint8Array;
}

/** Maps event types to the JSON shape of their data, for typed listeners. */
export type EventMap = Record<string, unknown>;

/** What the gateway said when it sent `event: reset`: the app must refetch its state. */
export interface ResetInfo {
  /** `malformed_id`, `unknown_id`, `history_evicted`, or a reason of a later gateway. */
  reason: string;
  /** The reset event's id: a safe resume point from now on. */
  id: string;
  at: number;
}

/** The subset of the browser's `EventSource` the client uses; tests inject a fake one. */
export interface EventSourceLike {
  readonly readyState: number;
  readonly url: string;
  addEventListener(type: string, listener: (event: MessageEvent | Event) => void): void;
  removeEventListener(type: string, listener: (event: MessageEvent | Event) => void): void;
  close(): void;
}

export type EventSourceCtor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** `EventSource.readyState` values. */
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSED = 2;
