import { useCallback, useState } from 'react';
import { flushSync } from 'react-dom';
import { EventFeed } from './components/EventFeed';
import { PublishForm } from './components/PublishForm';
import { StatsPanel } from './components/StatsPanel';

export interface PageParams {
  channels: string[];
  types: string[];
  lastEventId?: string;
}

const DEFAULT_CHANNELS = ['notifications', 'news'];

/**
 * Reads the page's own query: `?channel=a&channel=b` or `?channels=a,b`, `?types=x,y`, and
 * `?lastEventId=ID` (the first stream resumes from it), so a view can be linked to.
 */
export function readPageParams(search: string): PageParams {
  const q = new URLSearchParams(search);
  const list = (values: string[]) => [...new Set(values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean))];
  const channels = list([...q.getAll('channel'), ...q.getAll('channels')]);
  return {
    channels: channels.length > 0 ? channels : DEFAULT_CHANNELS,
    types: list(q.getAll('types')),
    lastEventId: q.get('lastEventId') || undefined,
  };
}

export interface AppProps {
  params?: PageParams;
}

export function App(props: AppProps) {
  const [params] = useState(() => props.params ?? readPageParams(globalThis.location?.search ?? ''));
  const [published, setPublished] = useState<string[]>([]);
  const [statsRefresh, setStatsRefresh] = useState(0);
  // Synchronous, so the feed listens for a new type before the publish request is even sent.
  const onPublishing = useCallback(
    (type: string) => flushSync(() => setPublished((p) => (p.includes(type) ? p : [...p, type]))),
    [],
  );
  const onReset = useCallback(() => setStatsRefresh((n) => n + 1), []);

  return (
    <>
      <a className="skip-link" href="#feed-title">
        Skip to the events
      </a>
      <header className="page-header">
        <h1>sse-gateway</h1>
        <p>
          Live events from the gateway's <code>GET /events</code>, publishing with <code>POST /broadcast</code>, and the
          gateway's figures. See docs/src/api.md for the API.
        </p>
      </header>
      <main className="layout">
        <EventFeed
          initialChannels={params.channels}
          initialTypes={params.types}
          initialLastEventId={params.lastEventId}
          listen={published}
          onReset={onReset}
        />
        <div className="side">
          <PublishForm defaultChannel={params.channels.find((c) => c !== 'notifications') ?? params.channels[0]} onPublishing={onPublishing} />
          <StatsPanel refreshSignal={statsRefresh} />
        </div>
      </main>
    </>
  );
}
