import { memo, useMemo, useState } from 'react';
import { byteCount, hexPreview, isBinaryType } from '../bytes';
import type { FeedItem } from '../hooks/useBoundedFeed';
import type { Notification } from '../gateway';
import type { SseEvent } from '../sse/types';

const MAX_DATA_CHARS = 2000;

/** Bytes shown in hex for a binary event. */
export const HEX_PREVIEW_BYTES = 32;

const LEVEL_ICON: Record<string, string> = { info: 'ℹ', success: '✓', warning: '⚠', error: '✕' };

function timeOf(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function shown(event: SseEvent): string {
  const text = event.json !== undefined && typeof event.json === 'object' ? JSON.stringify(event.json, null, 2) : event.data;
  return text.length > MAX_DATA_CHARS ? `${text.slice(0, MAX_DATA_CHARS)}… (${text.length} characters)` : text;
}

function isNotification(event: SseEvent): event is SseEvent<Notification> {
  const j = event.json as Partial<Notification> | undefined;
  return event.type === 'notification' && typeof j === 'object' && j !== null && typeof j.title === 'string';
}

/** An event's data as bytes (size and hex preview), or why it cannot be: decoded once per event. */
type BytesView = { size: number; hex: string } | { error: string };

function bytesView(event: SseEvent): BytesView {
  try {
    const bytes = event.bytes();
    return { size: bytes.length, hex: hexPreview(bytes, HEX_PREVIEW_BYTES) };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * One received event. Memoised: a new event does not re-render the ones already shown. Its data
 * is shown as bytes when its type ends in `.bin`, or when you ask (a button on any event whose
 * data is base64): nothing on the wire says an event was published with `data_base64`.
 */
export const EventItem = memo(function EventItem({ event }: { event: SseEvent }) {
  const view = useMemo(() => bytesView(event), [event]);
  const [asBytes, setAsBytes] = useState(() => isBinaryType(event.type));
  const isData = !isNotification(event) && event.type !== 'reset';
  let body;
  if (isNotification(event)) {
    const n = event.json!;
    body = (
      <p className={`notification level-${n.level}`}>
        <span className="level">
          <span aria-hidden="true">{LEVEL_ICON[n.level] ?? '•'} </span>
          {n.level}
        </span>{' '}
        <strong>{n.title}</strong>
        {n.body && <span className="notification-body"> — {n.body}</span>}
      </p>
    );
  } else if (event.type === 'reset') {
    const reason = (event.json as { reason?: string } | undefined)?.reason ?? 'unknown';
    body = <p className="reset-line">Stream reset ({reason}): events before this point may be missing.</p>;
  } else if (asBytes && 'size' in view) {
    body = (
      <p className="event-bytes">
        <span className="event-bytes-size" data-testid="event-bytes-size">
          {byteCount(view.size)}
        </span>{' '}
        <code className="event-bytes-hex" data-testid="event-bytes-hex" title={`the first ${HEX_PREVIEW_BYTES} bytes in hex`}>
          {view.hex}
        </code>
      </p>
    );
  } else {
    body = (
      <>
        <pre className="event-data">{shown(event)}</pre>
        {asBytes && 'error' in view && (
          <p className="hint" data-testid="event-bytes-error">
            Shown as text: the type says bytes, but the data is {view.error}.
          </p>
        )}
      </>
    );
  }
  return (
    <li className={`event event-type-${event.type === 'reset' ? 'reset' : 'other'}`} data-testid="event-item" data-event-type={event.type}>
      <div className="event-head">
        <span className="event-type">{event.type}</span>
        <code className="event-id" title="event id">
          {event.id || '(no id)'}
        </code>
        {isData && 'size' in view && (
          <button type="button" className="link-button" data-testid="event-bytes-toggle" onClick={() => setAsBytes((b) => !b)}>
            {asBytes ? 'Show as text' : 'Show as bytes'}
          </button>
        )}
        <time className="event-time" dateTime={new Date(event.receivedAt).toISOString()}>
          {timeOf(event.receivedAt)}
        </time>
      </div>
      {body}
    </li>
  );
});

export interface EventListProps {
  items: FeedItem<SseEvent>[];
  /** Events no longer shown because newer ones took their place. */
  dropped: number;
  cap: number;
}

/** Received events, newest first, at most `cap` of them. */
export function EventList({ items, dropped, cap }: EventListProps) {
  return (
    <div className="event-list">
      {items.length === 0 ? (
        <p className="empty">No events yet. Publish one with the form, or wait for the upstream's notifications.</p>
      ) : (
        <ol className="events" aria-label="Received events, newest first">
          {items.map((item) => (
            <EventItem key={item.seq} event={item.value} />
          ))}
        </ol>
      )}
      {dropped > 0 && (
        <p className="dropped" data-testid="dropped-count">
          {dropped.toLocaleString('en')} older {dropped === 1 ? 'event' : 'events'} not shown (the list keeps the newest {cap}).
        </p>
      )}
    </div>
  );
}
