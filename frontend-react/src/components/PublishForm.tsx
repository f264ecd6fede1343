import { useState, type FormEvent } from 'react';
import { describeError, type ErrorText } from '../errorText';
import { publish, type PublishReply } from '../gateway';
import { useSseEnvironment } from '../sse/react';
import { CredentialInput, toCredential, type CredentialDraft } from './CredentialInput';

export interface PublishFormProps {
  defaultChannel?: string;
  /**
   * Called with the event type just before the request goes out, so the feed can start listening
   * for that type before the event can arrive (an EventSource drops types nobody listens for).
   */
  onPublishing?: (eventType: string) => void;
}

type Result = { ok: PublishReply } | { error: ErrorText } | null;

/** `POST /broadcast`: channel, event type, JSON data and a credential; shows the 202 id or the error in words. */
export function PublishForm({ defaultChannel = 'news', onPublishing }: PublishFormProps) {
  const env = useSseEnvironment();
  const [channel, setChannel] = useState(defaultChannel);
  const [eventType, setEventType] = useState('message');
  const [data, setData] = useState('{"text": "hello"}');
  const [credential, setCredential] = useState<CredentialDraft>({ kind: 'apiKey', secret: '' });
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch (err) {
      setResult({
        error: {
          title: 'Data is not valid JSON: fix it, or put text in double quotes ("hello").',
          detail: err instanceof Error ? err.message : String(err),
        },
      });
      return;
    }
    const type = eventType.trim() || 'message';
    onPublishing?.(type);
    setBusy(true);
    setResult(null);
    try {
      const reply = await publish({ channel: channel.trim(), event: type, data: value }, toCredential(credential), env.fetch);
      setResult({ ok: reply });
    } catch (err) {
      setResult({ error: describeError(err, 'publish') });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card" aria-labelledby="publish-title">
      <h2 id="publish-title">Publish an event</h2>
      <form onSubmit={submit} className="publish-form">
        <div className="field">
          <label htmlFor="publish-channel">Channel</label>
          <input id="publish-channel" value={channel} onChange={(e) => setChannel(e.target.value)} required autoComplete="off" />
        </div>
        <div className="field">
          <label htmlFor="publish-event">Event type</label>
          <input id="publish-event" value={eventType} onChange={(e) => setEventType(e.target.value)} placeholder="message" autoComplete="off" />
        </div>
        <div className="field">
          <label htmlFor="publish-data">Data (JSON)</label>
          <textarea id="publish-data" value={data} onChange={(e) => setData(e.target.value)} rows={4} spellCheck={false} />
        </div>
        <CredentialInput
          idPrefix="publish-credential"
          legend="Credential"
          hint="A key or token whose publish patterns cover the channel (./scripts/run prints the dev key)."
          value={credential}
          onChange={setCredential}
        />
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Publishing…' : 'Publish'}
          </button>
        </div>
      </form>
      <div aria-live="polite">
        {result && 'ok' in result && (
          <p className="notice notice-success" data-testid="publish-result">
            <span aria-hidden="true">✓ </span>
            Published event <code>{result.ok.id}</code> on {result.ok.channels.join(', ')}.
          </p>
        )}
      </div>
      {result && 'error' in result && (
        <div className="notice notice-error" role="alert" data-testid="publish-error">
          <p>
            <span aria-hidden="true">✕ </span>
            {result.error.title}
          </p>
          {result.error.detail && <p className="error-detail">{result.error.detail}</p>}
        </div>
      )}
    </section>
  );
}
