import { createContext, useContext, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from 'react';
import { SseClient, type SseClientOptions, type SseSnapshot } from './client';
import type { EventMap, EventSourceCtor, FetchLike, ResetInfo, SseEvent } from './types';

/** What `useEventSource` connects with, when its options do not say: tests provide fakes here. */
export interface SseEnvironment {
  EventSource?: EventSourceCtor;
  fetch?: FetchLike;
  baseUrl?: string;
}

const SseContext = createContext<SseEnvironment>({});

/** Provides the `EventSource` constructor (and `fetch`) to every `useEventSource` below it. */
export function SseProvider({ value, children }: { value: SseEnvironment; children: ReactNode }) {
  return <SseContext.Provider value={value}>{children}</SseContext.Provider>;
}

export function useSseEnvironment(): SseEnvironment {
  return useContext(SseContext);
}

export interface UseEventSourceOptions<M extends EventMap = EventMap> extends Omit<SseClientOptions, 'channels'> {
  channels: readonly string[];
  /** `false`: no connection (state `closed`). Default true. */
  enabled?: boolean;
  /** Typed listeners by event type; each type here is listened for. May change between renders. */
  on?: { [K in keyof M & string]?: (event: SseEvent<M[K]>) => void };
  /** Every event of every listened type, `reset` included. */
  onEvent?: (event: SseEvent<M[keyof M]>) => void;
  /** Each `reset` event: refetch what the app shows. */
  onReset?: (reset: ResetInfo) => void;
}

export interface UseEventSourceResult extends SseSnapshot {
  /**
   * Connect again (ends a backoff wait, restarts a closed stream), once the render this causes is
   * done: options set in the same event handler, such as a new credential behind `getTicket`,
   * are the ones it connects with.
   */
  reconnect(): void;
  /** Close the stream until `reconnect()`. */
  close(): void;
}

const CLOSED_SNAPSHOT: SseSnapshot = {
  state: 'closed',
  attempts: 0,
  lastEventId: '',
  error: null,
  lastReset: null,
  nextRetryAt: null,
  connections: 0,
};

/**
 * One gateway stream for the life of the component: state, attempts, last id and error, typed
 * listeners, closed on unmount. A change of `url`, `channels`, `types`, `params` or
 * `withCredentials` opens a new stream (starting live); listeners and newly listened types are
 * taken up without reconnecting. The initial `lastEventId` is used by the first stream only.
 */
export function useEventSource<M extends EventMap = EventMap>(options: UseEventSourceOptions<M>): UseEventSourceResult {
  const env = useSseEnvironment();
  const latest = useRef(options);
  latest.current = options;

  const enabled = options.enabled ?? true;
  const EventSourceImpl = options.EventSource ?? env.EventSource;
  const fetchImpl = options.fetch ?? env.fetch;
  const hasTicket = Boolean(options.getTicket);
  const hasTokenHandler = Boolean(options.onTokenExpired);
  const key = JSON.stringify([
    options.url ?? '/events',
    options.channels,
    options.types ?? [],
    options.params ?? {},
    options.withCredentials ?? false,
    options.baseUrl ?? env.baseUrl ?? '',
    enabled,
  ]);
  const firstKey = useRef(key);
  const clientRef = useRef<SseClient<M> | null>(null);
  const [snap, setSnap] = useState<SseSnapshot>(() =>
    enabled ? { ...CLOSED_SNAPSHOT, state: 'connecting', lastEventId: options.lastEventId ?? '' } : CLOSED_SNAPSHOT,
  );
  // `reconnect()` asks for a reconnect here, and an effect does it after the render, when
  // `latest` holds that render's options. Calling the client at once would connect with the
  // options of the render before (the old credential, say).
  const [reconnectAsked, setReconnectAsked] = useState(0);
  const reconnectDone = useRef(0);

  useEffect(() => {
    if (!enabled) {
      setSnap(CLOSED_SNAPSHOT);
      return;
    }
    const o = latest.current;
    const client = new SseClient<M>({
      url: o.url,
      channels: o.channels,
      types: o.types,
      listen: [...(o.listen ?? []), ...Object.keys(o.on ?? {})],
      lastEventId: key === firstKey.current ? o.lastEventId : undefined,
      params: o.params,
      withCredentials: o.withCredentials,
      getTicket: hasTicket ? (signal) => latest.current.getTicket!(signal) : undefined,
      onTokenExpired: hasTokenHandler ? () => latest.current.onTokenExpired?.() : undefined,
      backoff: o.backoff,
      maxAttempts: o.maxAttempts,
      probe: o.probe,
      random: o.random,
      window: o.window,
      EventSource: EventSourceImpl,
      fetch: fetchImpl,
      baseUrl: o.baseUrl ?? env.baseUrl,
    });
    client.onAny((event) => {
      const handlers = latest.current.on as Record<string, ((e: typeof event) => void) | undefined> | undefined;
      handlers?.[event.type]?.(event);
      latest.current.onEvent?.(event);
    });
    client.onReset((reset) => latest.current.onReset?.(reset));
    clientRef.current = client;
    // A new client connects with this render's options: a reconnect asked for with them is done.
    reconnectDone.current = reconnectAsked;
    setSnap(client.getSnapshot());
    const unsubscribe = client.subscribe(setSnap);
    client.start();
    return () => {
      unsubscribe();
      client.close();
      if (clientRef.current === client) clientRef.current = null;
    };
    // `key` covers every option that needs a new stream; the rest is read through `latest`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, EventSourceImpl, fetchImpl, hasTicket, hasTokenHandler]);

  useEffect(() => {
    if (reconnectDone.current === reconnectAsked) return;
    reconnectDone.current = reconnectAsked;
    clientRef.current?.reconnect();
  }, [reconnectAsked]);

  // Event types that appear later are listened for on the open stream, without reconnecting.
  // A layout effect, so a type added inside `flushSync` is listened for when it returns.
  const listenKey = [...(options.listen ?? []), ...Object.keys(options.on ?? {})].join(',');
  useLayoutEffect(() => {
    for (const t of listenKey.split(',')) if (t) clientRef.current?.listenFor(t);
  }, [listenKey, key]);

  return {
    ...snap,
    reconnect: () => setReconnectAsked((n) => n + 1),
    close: () => clientRef.current?.close(),
  };
}
