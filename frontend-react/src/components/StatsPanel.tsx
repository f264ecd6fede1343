import { useEffect, useRef, useState, type FormEvent } from 'react';
import { describeError, type ErrorText } from '../errorText';
import { fetchStats, type GatewayStats } from '../gateway';
import { GatewayError } from '../sse/errors';
import { useSseEnvironment } from '../sse/react';
import type { Credential } from '../sse/tickets';
import { CredentialInput, toCredential, type CredentialDraft } from './CredentialInput';
import { MetricsChart } from './MetricsChart';

export interface StatsPanelProps {
  /** Poll period of GET /stats, ms. */
  intervalMs?: number;
  /** Changing it fetches the stats at once (the app bumps it on a stream reset). */
  refreshSignal?: number;
  /** Show the host metrics chart (its own stream on channel `metrics`). */
  showChart?: boolean;
}

const SOURCE_ICON: Record<string, string> = { connected: '●', connecting: '◌', backoff: '↻', idle: '○', stopped: '■' };

/** Live figures from GET /stats (admin key), refreshed every few seconds, and the host metrics chart. */
export function StatsPanel({ intervalMs = 2000, refreshSignal = 0, showChart = true }: StatsPanelProps) {
  const env = useSseEnvironment();
  const [draft, setDraft] = useState<CredentialDraft>({ kind: 'apiKey', secret: '' });
  const [credential, setCredential] = useState<Credential | null>(null);
  const [stats, setStats] = useState<GatewayStats | null>(null);
  const [rate, setRate] = useState<number | null>(null);
  const [error, setError] = useState<ErrorText | null>(null);
  const previous = useRef<{ at: number; published: number } | null>(null);

  useEffect(() => {
    if (!credential) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const s = await fetchStats(credential, env.fetch);
        if (stopped) return;
        const at = Date.now();
        const p = previous.current;
        if (p && at > p.at) setRate(Math.max(0, ((s.events.published_total - p.published) * 1000) / (at - p.at)));
        previous.current = { at, published: s.events.published_total };
        setStats(s);
        setError(null);
      } catch (e) {
        if (stopped) return;
        setError(describeError(e, 'stats'));
        // A wrong or non-admin key stays wrong: stop asking until the user enters another.
        if (e instanceof GatewayError && !e.transient) return;
      }
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [credential, intervalMs, env.fetch, refreshSignal]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    previous.current = null;
    setRate(null);
    setStats(null);
    setError(null);
    setCredential(toCredential(draft));
  };

  return (
    <section className="card" aria-labelledby="stats-title">
      <h2 id="stats-title">Gateway stats</h2>
      <form onSubmit={submit} className="stats-form">
        <CredentialInput idPrefix="stats-credential" legend="Admin credential" value={draft} onChange={setDraft} required />
        <div className="actions">
          <button type="submit" className="primary">
            Show stats
          </button>
          {credential && (
            <button type="button" onClick={() => setCredential(null)}>
              Stop
            </button>
          )}
        </div>
      </form>
      {error && (
        <div className="notice notice-error" role="alert" data-testid="stats-error">
          <p>
            <span aria-hidden="true">✕ </span>
            {error.title}
          </p>
          {error.detail && <p className="error-detail">{error.detail}</p>}
        </div>
      )}
      {stats && (
        <div data-testid="stats" aria-live="off">
          <dl className="figures">
            <div>
              <dt>Open streams</dt>
              <dd data-testid="stats-open">{stats.streams.open.toLocaleString('en')}</dd>
            </div>
            <div>
              <dt>Events/s</dt>
              <dd data-testid="stats-rate">{rate === null ? '…' : rate.toFixed(1)}</dd>
            </div>
            <div>
              <dt>Published</dt>
              <dd>{stats.events.published_total.toLocaleString('en')}</dd>
            </div>
          </dl>
          {stats.sources && stats.sources.length > 0 && (
            <table className="sources">
              <caption>Upstream sources</caption>
              <thead>
                <tr>
                  <th scope="col">Source</th>
                  <th scope="col">State</th>
                  <th scope="col">Events</th>
                </tr>
              </thead>
              <tbody>
                {stats.sources.map((s) => (
                  <tr key={s.name} data-testid="source-row">
                    <th scope="row">
                      {s.name}
                      {s.channel && <span className="hint"> → {s.channel}</span>}
                    </th>
                    <td className={`source-state source-${s.state}`} title={s.last_error ?? undefined}>
                      <span aria-hidden="true">{SOURCE_ICON[s.state] ?? '•'} </span>
                      {s.state}
                    </td>
                    <td>{s.events_total.toLocaleString('en')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
      {showChart && <MetricsChart />}
    </section>
  );
}
