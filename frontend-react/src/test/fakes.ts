// Test doubles: an EventSource the test drives by hand, and fetch replies.
import { vi } from 'vitest';
import type { EventSourceCtor, EventSourceLike } from '../sse/types';

type Handler = (event: Event) => void;

export class FakeEventSourceInstance implements EventSourceLike {
  readyState = 0;
  readonly url: string;
  readonly withCredentials: boolean;
  closed = false;
  private lastId = '';
  private readonly handlers = new Map<string, Set<Handler>>();

  constructor(url: string, init?: { withCredentials?: boolean }) {
    this.url = url;
    this.withCredentials = init?.withCredentials ?? false;
  }

  addEventListener(type: string, fn: Handler): void {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type)!.add(fn);
  }

  removeEventListener(type: string, fn: Handler): void {
    this.handlers.get(type)?.delete(fn);
  }

  close(): void {
    this.readyState = 2;
    this.closed = true;
  }

  /** Query parameters of the URL it was opened with. */
  get params(): URLSearchParams {
    return new URL(this.url).searchParams;
  }

  /** Types with at least one listener. */
  listened(): string[] {
    return [...this.handlers].filter(([, s]) => s.size > 0).map(([t]) => t);
  }

  // ---- what the browser would do ----
  open(): void {
    this.readyState = 1;
    this.dispatch(new Event('open'));
  }

  /** An event on the stream; `id` sets the last event id as an `id:` line would. */
  emit(type: string, data: unknown, id?: string): void {
    if (id !== undefined) this.lastId = id;
    const text = typeof data === 'string' ? data : JSON.stringify(data);
    this.dispatch(new MessageEvent(type, { data: text, lastEventId: this.lastId }));
  }

  /** The stream ended or broke; the browser will retry by itself (readyState CONNECTING). */
  drop(): void {
    this.readyState = 0;
    this.dispatch(new Event('error'));
  }

  /** A failure the browser does not retry (non-200, wrong content type): readyState CLOSED. */
  fail(): void {
    this.readyState = 2;
    this.dispatch(new Event('error'));
  }

  private dispatch(event: Event): void {
    if (this.closed && event.type !== 'error') return;
    for (const fn of [...(this.handlers.get(event.type) ?? [])]) fn(event);
  }
}

/** A fresh fake `EventSource` constructor and the list of what it opened. */
export function fakeEventSource(): { EventSource: EventSourceCtor; instances: FakeEventSourceInstance[]; last(): FakeEventSourceInstance } {
  const instances: FakeEventSourceInstance[] = [];
  class EventSource extends FakeEventSourceInstance {
    constructor(url: string, init?: { withCredentials?: boolean }) {
      super(url, init);
      instances.push(this);
    }
  }
  return {
    EventSource,
    instances,
    last: () => {
      const es = instances[instances.length - 1];
      if (!es) throw new Error('no EventSource opened');
      return es;
    },
  };
}

export function jsonReply(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

export function gatewayError(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return jsonReply(status, { error: { code, message } }, headers);
}

export function streamReply(): Response {
  return new Response('retry: 3000\n\n: connected\n\n', { status: 200, headers: { 'Content-Type': 'text/event-stream; charset=utf-8' } });
}

/** A `fetch` mock answering each call with the next reply (the last one repeats). */
export function fetchReplies(...replies: Array<Response | (() => Response) | Error>) {
  let i = 0;
  return vi.fn(async (_url: string, _init?: RequestInit) => {
    const r = replies[Math.min(i++, replies.length - 1)];
    if (r instanceof Error) throw r;
    return typeof r === 'function' ? r() : r.clone();
  });
}
