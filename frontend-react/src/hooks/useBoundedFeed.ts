import { useCallback, useEffect, useRef, useState } from 'react';

export interface FeedItem<T> {
  /** Unique per feed, for React keys. */
  seq: number;
  value: T;
}

export interface BoundedFeed<T> {
  /** Newest first, at most `cap`. */
  items: FeedItem<T>[];
  /** Items pushed out by newer ones (and cleared). */
  dropped: number;
  /** Items ever pushed. */
  total: number;
  push(value: T): void;
  clear(): void;
}

/**
 * A feed that stays fast with thousands of events: at most `cap` items are kept and rendered,
 * and pushes are batched into one render every `flushMs` (0 = render each push at once).
 */
export function useBoundedFeed<T>(cap = 500, flushMs = 50): BoundedFeed<T> {
  const [state, setState] = useState<{ items: FeedItem<T>[]; dropped: number; total: number }>({
    items: [],
    dropped: 0,
    total: 0,
  });
  const pending = useRef<FeedItem<T>[]>([]);
  const seq = useRef(0);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  const flush = useCallback(() => {
    timer.current = null;
    const batch = pending.current;
    if (batch.length === 0) return;
    pending.current = [];
    setState((prev) => {
      const combined = batch.reverse().concat(prev.items);
      const kept = combined.length > cap ? combined.slice(0, cap) : combined;
      return { items: kept, dropped: prev.dropped + (combined.length - kept.length), total: prev.total + batch.length };
    });
  }, [cap]);

  const push = useCallback(
    (value: T) => {
      pending.current.push({ seq: ++seq.current, value });
      if (flushMs <= 0) flush();
      else if (timer.current === null) timer.current = setTimeout(flush, flushMs);
    },
    [flush, flushMs],
  );

  const clear = useCallback(() => {
    pending.current = [];
    setState((prev) => ({ items: [], dropped: 0, total: prev.total }));
  }, []);

  useEffect(
    () => () => {
      if (timer.current !== null) clearTimeout(timer.current);
    },
    [],
  );

  return { ...state, push, clear };
}
