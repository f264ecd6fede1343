import { memo } from 'react';
import type { FeedItem } from '../hooks/useBoundedFeed';
import type { Notification } from '../gateway';
import type { SseEvent } from '../sse/types';

const MAX_DATA_CHARS = 2000;

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

/** One received event. Memoised: a new event does not re-render the ones already shown. */
export const EventItem = memo(function EventItem({ event }: { event: SseEvent }) {
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
  } else {
    body = <pre className="event-data">{shown(event)}</pre>;
  }
  return (
    <li className={`event event-type-${event.type === 'reset' ? 'reset' : 'other'}`} data-testid="event-item" data-event-type={event.type}>
      <div className="event-head">
        <span className="event-type">{event.type}</span>
        <code className="event-id" title="event id">
          {event.id || '(no id)'}
        </code>
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
