import { useMemo, useState, type FormEvent } from 'react';
import { DEFAULT_BINARY_TYPE } from '../bytes';
import type { AppEvents } from '../gateway';
import { useBoundedFeed } from '../hooks/useBoundedFeed';
import type { BackoffOptions } from '../sse/backoff';
import { useEventSource, useSseEnvironment } from '../sse/react';
import { ticketSource, type Credential } from '../sse/tickets';
import type { ResetInfo, SseEvent } from '../sse/types';
import { ConnectionStatus } from './ConnectionStatus';
import { CredentialInput, type CredentialDraft, toCredential } from './CredentialInput';
import { EventList } from './EventList';
import { ResetNotice } from './ResetNotice';

/**
 * Event types listened for by default. An EventSource hands a named event only to listeners of
 * that name, so types beyond these must be named (the type filter, or a type you publish).
 */
export const DEFAULT_TYPES = ['message', 'notification', 'metrics', 'alert', 'headline', DEFAULT_BINARY_TYPE];

const SUGGESTED_CHANNELS = ['notifications', 'news', 'metrics'];

export interface EventFeedProps {
  initialChannels: string[];
  initialTypes?: string[];
  /** Resume point of the first stream (e.g. from the page's `?lastEventId=`). */
  initialLastEventId?: string;
  /** More event types to listen for (the app adds the types you publish). */
  listen?: string[];
  /** Most events kept and shown. */
  cap?: number;
  /** Batching of renders, ms. */
  flushMs?: number;
  backoff?: Partial<BackoffOptions>;
  onReset?: (reset: ResetInfo) => void;
}

function splitList(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/** The page's main stream: which channels and types, its state, a reset notice and the events. */
export function EventFeed({
  initialChannels,
  initialTypes = [],
  initialLastEventId,
  listen = [],
  cap = 500,
  flushMs = 50,
  backoff,
  onReset,
}: EventFeedProps) {
  const env = useSseEnvironment();
  const [knownChannels, setKnownChannels] = useState(() => [...new Set([...SUGGESTED_CHANNELS, ...initialChannels])]);
  const [draftChannels, setDraftChannels] = useState<string[]>(initialChannels);
  const [newChannel, setNewChannel] = useState('');
  const [draftTypes, setDraftTypes] = useState(initialTypes.join(', '));
  const [draftCredential, setDraftCredential] = useState<CredentialDraft>({ kind: 'apiKey', secret: '' });
  const [channels, setChannels] = useState<string[]>(initialChannels);
  const [types, setTypes] = useState<string[]>(initialTypes);
  const [credential, setCredential] = useState<Credential | null>(null);
  const [dismissedReset, setDismissedReset] = useState<number | null>(null);
  const feed = useBoundedFeed<SseEvent>(cap, flushMs);

  const getTicket = useMemo(
    () => (credential ? ticketSource({ credential, fetch: env.fetch }) : undefined),
    [credential, env.fetch],
  );
  const listened = useMemo(() => [...new Set([...DEFAULT_TYPES, ...listen])], [listen]);

  const stream = useEventSource<AppEvents>({
    channels,
    types,
    listen: listened,
    lastEventId: initialLastEventId,
    enabled: channels.length > 0,
    getTicket,
    backoff,
    onEvent: feed.push,
    onReset,
  });

  const apply = (e: FormEvent) => {
    e.preventDefault();
    const nextTypes = splitList(draftTypes);
    const nextCredential = toCredential(draftCredential);
    const sameStream = draftChannels.join(',') === channels.join(',') && nextTypes.join(',') === types.join(',');
    setChannels(draftChannels);
    setTypes(nextTypes);
    setCredential(nextCredential);
    // A new credential alone does not change the URL: reconnect so the next ticket uses it.
    if (sameStream) stream.reconnect();
  };

  const addChannel = () => {
    const names = splitList(newChannel);
    if (names.length === 0) return;
    setKnownChannels((k) => [...new Set([...k, ...names])]);
    setDraftChannels((d) => [...new Set([...d, ...names])]);
    setNewChannel('');
  };

  const toggle = (name: string, on: boolean) =>
    setDraftChannels((d) => (on ? [...new Set([...d, name])] : d.filter((c) => c !== name)));

  const showReset = stream.lastReset && stream.lastReset.at !== dismissedReset;

  return (
    <section className="card feed" aria-labelledby="feed-title">
      <h2 id="feed-title">Live events</h2>
      <ConnectionStatus
        state={stream.state}
        attempts={stream.attempts}
        nextRetryAt={stream.nextRetryAt}
        lastEventId={stream.lastEventId}
        error={stream.error}
        onReconnect={channels.length > 0 ? stream.reconnect : undefined}
      />
      {showReset && stream.lastReset && <ResetNotice reset={stream.lastReset} onDismiss={() => setDismissedReset(stream.lastReset!.at)} />}

      <form className="subscription" onSubmit={apply} aria-label="Subscription">
        <fieldset>
          <legend>Channels</legend>
          <div className="checks">
            {knownChannels.map((name) => (
              <label key={name} className="check">
                <input type="checkbox" checked={draftChannels.includes(name)} onChange={(e) => toggle(name, e.target.checked)} />
                {name}
              </label>
            ))}
          </div>
          <div className="inline">
            <label htmlFor="new-channel">Add a channel</label>
            <input
              id="new-channel"
              value={newChannel}
              onChange={(e) => setNewChannel(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter') {
                  e.preventDefault();
                  addChannel();
                }
              }}
              placeholder="e.g. user.42"
              autoComplete="off"
            />
            <button type="button" onClick={addChannel}>
              Add
            </button>
          </div>
        </fieldset>
        <div className="field">
          <label htmlFor="type-filter">Only these event types</label>
          <input
            id="type-filter"
            value={draftTypes}
            onChange={(e) => setDraftTypes(e.target.value)}
            placeholder="all types (e.g. notification, alert)"
            aria-describedby="type-filter-hint"
            autoComplete="off"
          />
          <p id="type-filter-hint" className="hint">
            Filtered by the gateway (<code>?types=</code>). Listening for: {[...new Set([...listened, ...types])].join(', ')}.
          </p>
        </div>
        <CredentialInput
          idPrefix="stream-credential"
          legend="Stream credential (optional)"
          hint="For channels that are not public: the app fetches a single-use ticket (POST /tickets) before each connection."
          value={draftCredential}
          onChange={setDraftCredential}
        />
        <div className="actions">
          <button type="submit" className="primary">
            Apply
          </button>
          {stream.state === 'closed' ? (
            <button type="button" onClick={stream.reconnect} disabled={channels.length === 0}>
              Connect
            </button>
          ) : (
            <button type="button" onClick={stream.close}>
              Disconnect
            </button>
          )}
        </div>
        {draftChannels.length === 0 && <p className="hint">Pick at least one channel.</p>}
      </form>

      <div className="feed-toolbar">
        <p className="counts" aria-live="off">
          <span data-testid="received-count">{feed.total.toLocaleString('en')}</span> received, showing {feed.items.length}
        </p>
        <button type="button" onClick={feed.clear} disabled={feed.items.length === 0}>
          Clear list
        </button>
      </div>
      <EventList items={feed.items} dropped={feed.dropped} cap={cap} />
    </section>
  );
}
