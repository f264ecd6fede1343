import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
import { decodeBase64 } from './base64';
import { GatewayError } from './errors';
import {
  CONNECTING,
  type ConnectionState,
  type EventMap,
  type EventSourceCtor,
  type EventSourceLike,
  type FetchLike,
  type ResetInfo,
  type SseEvent,
} from './types';

/** Event types the gateway itself sends, always listened for. */
export const RESET_EVENT = 'reset';
export const TOKEN_EXPIRED_EVENT = 'token_expired';

export interface SseClientOptions {
  /** The stream endpoint. Default `/events` (relative to the page). */
  url?: string;
  /** Channels to subscribe to (`?channel=` each). */
  channels: readonly string[];
  /** Only these event types are delivered (`?types=`, filtered by the gateway). They are also listened for. */
  types?: readonly string[];
  /**
   * Event types to listen for besides `message`, `types` and those given to `on()`. An
   * `EventSource` hands a named event (`event: notification`) only to listeners of that name, so
   * a type nobody listens for is dropped by the browser.
   */
  listen?: readonly string[];
  /** Resume point of the first connection (sent as `?lastEventId=`). */
  lastEventId?: string;
  /** Extra query parameters (e.g. `access_token`). */
  params?: Readonly<Record<string, string>>;
  /** `new EventSource(url, {withCredentials})`: send cookies cross-origin. */
  withCredentials?: boolean;
  /**
   * Called before every new `EventSource` for a single-use ticket, added as `?ticket=`. A ticket
   * opens one stream only, so the client also takes over the browser's own reconnects (which
   * would reuse the spent ticket). See `ticketSource()`.
   */
  getTicket?: (signal: AbortSignal) => Promise<string>;
  /**
   * Called when the gateway sends `event: token_expired` (the stream then ends). Refresh the
   * token here; when the returned promise settles the client reconnects, with a new ticket if
   * `getTicket` is set. Without this and without `getTicket`, the client closes with error
   * `token_expired`.
   */
  onTokenExpired?: () => void | Promise<void>;
  /** Reconnect delays for the failures the browser does not retry. */
  backoff?: Partial<BackoffOptions>;
  /** Failures in a row before the client gives up and closes. Default: never gives up. */
  maxAttempts?: number;
  /**
   * After a failure the browser does not retry (readyState CLOSED), fetch the same URL once to
   * learn why (the gateway's JSON error and `Retry-After`): a 400/401/403/404 closes the client
   * with that error instead of retrying forever; a 429/503 waits at least `Retry-After`. Default true.
   */
  probe?: boolean;
  /** The `EventSource` constructor. Default: the browser's. Tests inject a fake. */
  EventSource?: EventSourceCtor;
  /** `fetch` for the probe. Default: the global one. */
  fetch?: FetchLike;
  /** 0..1 random source for jitter. Default `Math.random`. */
  random?: () => number;
  /** Base for a relative `url`. Default `location.href`. */
  baseUrl?: string;
  /** Where to listen for `online` (reconnect at once when the network is back). Default `window`; `null` for none. */
  window?: Pick<Window, 'addEventListener' | 'removeEventListener'> | null;
}

/** The client's state at one moment; a new object on every change. */
export interface SseSnapshot {
  state: ConnectionState;
  /** Failed or dropped connections in a row since the stream was last open. */
  attempts: number;
  /** The resume point: the last event id received (or the initial `lastEventId`). */
  lastEventId: string;
  /** Why the last connection failed, or why the client closed, when known. */
  error: GatewayError | null;
  /** The last `reset` received, if any. */
  lastReset: ResetInfo | null;
  /** When the client's own next reconnect is due (ms since epoch), while it waits. */
  nextRetryAt: number | null;
  /** EventSources opened so far. */
  connections: number;
}

type Listener = (event: SseEvent<never>) => void;

/**
 * A typed wrapper over `EventSource` for the gateway's `GET /events`:
 * tracks the last event id, surfaces `reset` and `token_expired`, fetches a ticket per
 * connection when asked to, and reconnects with exponential backoff and jitter, resuming with
 * `?lastEventId=`, where the browser's own retry gives up.
 *
 * ```ts
 * const client = new SseClient<{ notification: { title: string } }>({ channels: ['notifications'] });
 * client.on('notification', (e) => console.log(e.json?.title));
 * client.onReset((r) => refetchEverything(r.reason));
 * client.start();
 * ```
 */
export class SseClient<M extends EventMap = EventMap> {
  private readonly opts: SseClientOptions;
  private readonly backoff: BackoffOptions;
  private snap: SseSnapshot;
  private es: EventSourceLike | null = null;
  private esHandler: ((ev: Event) => void) | null = null;
  /** Bumped by every connect, failure and close; async steps of an older one then stop. */
  private generation = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private abort: AbortController | null = null;
  private started = false;
  private readonly types = new Set<string>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly anyListeners = new Set<Listener>();
  private readonly resetListeners = new Set<(reset: ResetInfo) => void>();
  private readonly stateListeners = new Set<(snap: SseSnapshot) => void>();

  constructor(options: SseClientOptions) {
    this.opts = options;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.snap = {
      state: 'connecting',
      attempts: 0,
      lastEventId: options.lastEventId ?? '',
      error: null,
      lastReset: null,
      nextRetryAt: null,
      connections: 0,
    };
    for (const t of ['message', RESET_EVENT, TOKEN_EXPIRED_EVENT, ...(options.types ?? []), ...(options.listen ?? [])]) {
      this.types.add(t);
    }
  }

  /** Opens the first connection. Calling it again does nothing. */
  start(): this {
    if (this.started) return this;
    this.started = true;
    this.win()?.addEventListener('online', this.onOnline);
    void this.connect();
    return this;
  }

  /** Closes the stream for good (state `closed`); `reconnect()` starts it again. */
  close(): void {
    this.stop(null);
  }

  /**
   * Connects again now, resuming from the last id: ends a waiting backoff, restarts a closed
   * client, or replaces an open stream.
   */
  reconnect(): void {
    if (!this.started) {
      this.start();
      return;
    }
    this.clearPending();
    this.dropEventSource();
    if (this.snap.state === 'closed') {
      this.win()?.addEventListener('online', this.onOnline);
      this.set({ state: 'connecting', attempts: 0, error: null });
    } else if (this.snap.state === 'open') {
      this.set({ state: 'reconnecting' });
    }
    void this.connect();
  }

  getSnapshot(): SseSnapshot {
    return this.snap;
  }

  /** Calls `fn` with every new snapshot; returns the unsubscribe function. */
  subscribe(fn: (snap: SseSnapshot) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  /** Listens for one event type (and starts listening for it on the stream). */
  on<K extends keyof M & string>(type: K, fn: (event: SseEvent<M[K]>) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn as Listener);
    this.listenFor(type);
    return () => set.delete(fn as Listener);
  }

  /** Listens for every event of every listened type, `reset` included. */
  onAny(fn: (event: SseEvent<M[keyof M]>) => void): () => void {
    this.anyListeners.add(fn as Listener);
    return () => this.anyListeners.delete(fn as Listener);
  }

  /** Called with each `reset`: events may be missing, the app must refetch its state. */
  onReset(fn: (reset: ResetInfo) => void): () => void {
    this.resetListeners.add(fn);
    return () => this.resetListeners.delete(fn);
  }

  /** Starts listening for an event type on the current and every later `EventSource`. */
  listenFor(type: string): void {
    if (this.types.has(type)) return;
    this.types.add(type);
    if (this.es && this.esHandler) this.es.addEventListener(type, this.esHandler);
  }

  /** The stream URL with the current resume point (and a ticket, when given). */
  buildUrl(ticket?: string): string {
    const base = this.opts.baseUrl ?? globalThis.location?.href ?? 'http://localhost/';
    const u = new URL(this.opts.url ?? '/events', base);
    for (const ch of this.opts.channels) u.searchParams.append('channel', ch);
    if (this.opts.types?.length) u.searchParams.set('types', this.opts.types.join(','));
    for (const [k, v] of Object.entries(this.opts.params ?? {})) u.searchParams.set(k, v);
    if (this.snap.lastEventId) u.searchParams.set('lastEventId', this.snap.lastEventId);
    if (ticket !== undefined) u.searchParams.set('ticket', ticket);
    return u.toString();
  }

  // ---- connection lifecycle -------------------------------------------------------------

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    this.set({ nextRetryAt: null });
    let ticket: string | undefined;
    if (this.opts.getTicket) {
      const abort = (this.abort = new AbortController());
      try {
        ticket = await this.opts.getTicket(abort.signal);
      } catch (e) {
        if (gen !== this.generation) return;
        void this.fail(this.stillExpired(toGatewayError(e)), false);
        return;
      }
      if (gen !== this.generation) return;
    }
    const Ctor = this.opts.EventSource ?? (globalThis as { EventSource?: EventSourceCtor }).EventSource;
    if (!Ctor) {
      this.stop(new GatewayError(0, 'no_eventsource', 'this browser has no EventSource'));
      return;
    }
    const es = new Ctor(this.buildUrl(ticket), { withCredentials: this.opts.withCredentials ?? false });
    const handler = (ev: Event) => this.onEsEvent(es, ev);
    this.es = es;
    this.esHandler = handler;
    es.addEventListener('open', handler);
    es.addEventListener('error', handler);
    for (const t of this.types) es.addEventListener(t, handler);
    this.set({ connections: this.snap.connections + 1 });
  }

  private onEsEvent(es: EventSourceLike, ev: Event): void {
    if (es !== this.es) return; // a stream we already let go of
    if (ev.type === 'open') {
      this.set({ state: 'open', attempts: 0, error: null, nextRetryAt: null });
      return;
    }
    if (ev.type === 'error') {
      if (es.readyState === CONNECTING) {
        // The stream ended or broke and the browser retries by itself after `retry:`, sending
        // the Last-Event-ID header. A ticket cannot be used twice, so then we retry ourselves.
        if (this.opts.getTicket) {
          void this.fail(null, false);
        } else {
          this.set({ state: 'reconnecting', attempts: this.snap.attempts + 1 });
        }
      } else {
        // CLOSED: a non-200 or non-SSE reply, or a failure the browser gave up on.
        void this.fail(null, this.opts.probe ?? true);
      }
      return;
    }
    this.onMessage(ev as MessageEvent);
  }

  private onMessage(ev: MessageEvent): void {
    const data = typeof ev.data === 'string' ? ev.data : String(ev.data ?? '');
    const id = ev.lastEventId || this.snap.lastEventId;
    const event: SseEvent<never> = {
      type: ev.type,
      id,
      data,
      json: parseJson(data) as never,
      receivedAt: Date.now(),
      bytes: () => decodeBase64(data),
    };
    if (id !== this.snap.lastEventId) this.set({ lastEventId: id });

    if (ev.type === RESET_EVENT) {
      const reason = (event.json as { reason?: unknown } | undefined)?.reason;
      const reset: ResetInfo = { reason: typeof reason === 'string' ? reason : 'unknown', id, at: event.receivedAt };
      this.set({ lastReset: reset });
      for (const fn of [...this.resetListeners]) fn(reset);
    }
    for (const fn of [...(this.listeners.get(ev.type) ?? [])]) fn(event);
    for (const fn of [...this.anyListeners]) fn(event);
    if (ev.type === TOKEN_EXPIRED_EVENT) void this.tokenExpired();
  }

  private async tokenExpired(): Promise<void> {
    this.dropEventSource(); // the browser would retry with the same expired credential
    const expired = new GatewayError(401, 'token_expired', 'the credential expired');
    if (!this.opts.getTicket && !this.opts.onTokenExpired) {
      this.stop(expired);
      return;
    }
    const gen = ++this.generation;
    this.set({ state: 'reconnecting', attempts: this.snap.attempts + 1, error: expired });
    try {
      await this.opts.onTokenExpired?.();
    } catch (e) {
      if (gen === this.generation) this.stop(toGatewayError(e));
      return;
    }
    if (gen === this.generation) void this.connect();
  }

  /**
   * A ticket refused with 401 right after `token_expired`: the credential is still the expired
   * one (nothing refreshed it), so that is the error to show, not a generic "not signed in".
   */
  private stillExpired(error: GatewayError): GatewayError {
    if (error.status !== 401 || this.snap.error?.code !== TOKEN_EXPIRED_EVENT) return error;
    const expired = new GatewayError(401, TOKEN_EXPIRED_EVENT, `the credential expired and cannot get a new ticket: ${error.message}`);
    expired.endpoint = error.endpoint;
    return expired;
  }

  /** A connection failed: find out why when asked, then wait with backoff and connect again. */
  private async fail(known: GatewayError | null, probe: boolean): Promise<void> {
    this.dropEventSource();
    const gen = ++this.generation;
    const attempts = this.snap.attempts + 1;
    this.set({ state: 'reconnecting', attempts, error: known ?? this.snap.error });
    let error = known;
    if (!error && probe) {
      error = await this.probe();
      if (gen !== this.generation) return;
      this.set({ error });
    }
    if (error && !error.transient) {
      this.stop(error);
      return;
    }
    if (attempts >= (this.opts.maxAttempts ?? Infinity)) {
      this.stop(error ?? new GatewayError(0, 'gave_up', `gave up after ${attempts} failed connections`));
      return;
    }
    const delay = Math.max(backoffDelay(attempts, this.backoff, this.opts.random), (error?.retryAfter ?? 0) * 1000);
    this.set({ nextRetryAt: Date.now() + delay });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (gen === this.generation) void this.connect();
    }, delay);
  }

  /** Fetches the stream URL once to read the gateway's error; `null` when it would open fine now. */
  private async probe(): Promise<GatewayError | null> {
    const doFetch = this.opts.fetch ?? (typeof fetch === 'function' ? fetch.bind(globalThis) : undefined);
    if (!doFetch) return null;
    const abort = (this.abort = new AbortController());
    try {
      const ticket = this.opts.getTicket ? await this.opts.getTicket(abort.signal) : undefined;
      const res = await doFetch(this.buildUrl(ticket), {
        headers: { Accept: 'text/event-stream' },
        credentials: this.opts.withCredentials ? 'include' : 'same-origin',
        cache: 'no-store',
        signal: abort.signal,
      });
      if (!res.ok) return await GatewayError.fromResponse(res);
      const type = res.headers.get('content-type') ?? '';
      if (!type.startsWith('text/event-stream')) {
        return new GatewayError(res.status, 'not_event_stream', `the stream URL answered ${type || 'no content type'}, not text/event-stream`);
      }
      return null;
    } catch (e) {
      if (abort.signal.aborted) return null;
      return toGatewayError(e);
    } finally {
      abort.abort(); // never keep the probe's stream open
    }
  }

  private stop(error: GatewayError | null): void {
    this.generation++;
    this.clearPending();
    this.dropEventSource();
    this.win()?.removeEventListener('online', this.onOnline);
    this.set({ state: 'closed', nextRetryAt: null, error });
  }

  private readonly onOnline = (): void => {
    // Back online while waiting out a backoff: do not wait for the timer.
    if (this.timer !== null) {
      this.clearPending();
      void this.connect();
    }
  };

  private clearPending(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    this.abort = null;
  }

  private dropEventSource(): void {
    const es = this.es;
    if (!es) return;
    if (this.esHandler) {
      es.removeEventListener('open', this.esHandler);
      es.removeEventListener('error', this.esHandler);
      for (const t of this.types) es.removeEventListener(t, this.esHandler);
    }
    es.close();
    this.es = null;
    this.esHandler = null;
  }

  private win(): Pick<Window, 'addEventListener' | 'removeEventListener'> | null {
    if (this.opts.window !== undefined) return this.opts.window;
    return typeof window === 'undefined' ? null : window;
  }

  private set(patch: Partial<SseSnapshot>): void {
    let changed = false;
    for (const [k, v] of Object.entries(patch)) {
      if (this.snap[k as keyof SseSnapshot] !== v) changed = true;
    }
    if (!changed) return;
    this.snap = { ...this.snap, ...patch };
    for (const fn of [...this.stateListeners]) fn(this.snap);
  }
}

function parseJson(data: string): unknown {
  if (data === '') return undefined;
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

function toGatewayError(e: unknown): GatewayError {
  return e instanceof GatewayError ? e : GatewayError.network(e);
}
