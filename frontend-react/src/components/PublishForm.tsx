import { useState, type ChangeEvent, type FormEvent } from 'react';
import { BINARY_TYPE_SUFFIX, byteCount, DEFAULT_BINARY_TYPE, parseHex, toHex } from '../bytes';
import { describeError, type ErrorText } from '../errorText';
import { publish, type PublishReply, type PublishRequest } from '../gateway';
import { encodeBase64 } from '../sse/base64';
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

/** What the data field holds: JSON (`data`), or bytes written as hex (`data_base64`). */
type DataKind = 'json' | 'bytes';

/** The event type each kind starts with; switching kinds swaps one for the other, not a type you typed. */
const DEFAULT_TYPE: Record<DataKind, string> = { json: 'message', bytes: DEFAULT_BINARY_TYPE };

/**
 * The largest file the form loads. It becomes hex in the text area, so a huge file would stall
 * the page; the gateway's own limit (`limits.max_event_bytes`, 64 KiB by default) is far lower.
 */
export const MAX_FILE_BYTES = 1024 * 1024;
const MAX_FILE_WORDS = `${MAX_FILE_BYTES / 2 ** 20} MiB`;

/** The request's data from the form's fields, or what is wrong with them in words. */
function readData(kind: DataKind, json: string, hex: string): { data: unknown } | { dataBase64: string } | { error: ErrorText } {
  if (kind === 'json') {
    try {
      return { data: JSON.parse(json) };
    } catch (err) {
      return {
        error: {
          title: 'Data is not valid JSON: fix it, or put text in double quotes ("hello").',
          detail: err instanceof Error ? err.message : String(err),
        },
      };
    }
  }
  let bytes;
  try {
    bytes = parseHex(hex);
  } catch (err) {
    return { error: { title: err instanceof Error ? err.message : String(err), detail: '' } };
  }
  // An event with empty data reaches no EventSource (the browser does not dispatch it).
  if (bytes.length === 0) return { error: { title: 'No bytes: enter them as hex, or load a file.', detail: '' } };
  return { dataBase64: encodeBase64(bytes) };
}

/**
 * `POST /broadcast`: channel, event type, data and a credential; shows the 202 id or the error in
 * words. The data is JSON, or bytes (hex typed in or a file loaded) sent as `data_base64`.
 */
export function PublishForm({ defaultChannel = 'news', onPublishing }: PublishFormProps) {
  const env = useSseEnvironment();
  const [channel, setChannel] = useState(defaultChannel);
  const [eventType, setEventType] = useState('message');
  const [kind, setKind] = useState<DataKind>('json');
  const [data, setData] = useState('{"text": "hello"}');
  const [hex, setHex] = useState('');
  const [credential, setCredential] = useState<CredentialDraft>({ kind: 'apiKey', secret: '' });
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const payload = readData(kind, data, hex);
    if ('error' in payload) {
      setResult(payload);
      return;
    }
    const type = eventType.trim() || 'message';
    onPublishing?.(type);
    setBusy(true);
    setResult(null);
    try {
      const request: PublishRequest = { channel: channel.trim(), event: type, ...payload };
      const reply = await publish(request, toCredential(credential), env.fetch);
      setResult({ ok: reply });
    } catch (err) {
      setResult({ error: describeError(err, 'publish') });
    } finally {
      setBusy(false);
    }
  };

  const switchKind = (next: DataKind) => {
    setEventType((t) => (t.trim() === '' || t === DEFAULT_TYPE[kind] ? DEFAULT_TYPE[next] : t));
    setKind(next);
  };

  const loadFile = async (e: ChangeEvent<HTMLInputElement>) => {
    const file = e.target.files?.[0];
    if (!file) return;
    if (file.size > MAX_FILE_BYTES) {
      setResult({
        error: {
          title: `Too large to load: ${file.name} is ${byteCount(file.size)}, and the form loads at most ${MAX_FILE_WORDS}.`,
          detail: '',
        },
      });
      return;
    }
    try {
      setHex(toHex(new Uint8Array(await file.arrayBuffer())));
      setResult(null);
    } catch (err) {
      setResult({ error: { title: `Cannot read ${file.name}.`, detail: err instanceof Error ? err.message : String(err) } });
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
        <fieldset>
          <legend>Data</legend>
          <div className="radios">
            {(['json', 'bytes'] as const).map((k) => (
              <label key={k} className="check">
                <input type="radio" name="publish-data-kind" value={k} checked={kind === k} onChange={() => switchKind(k)} />
                {k === 'json' ? 'JSON' : 'Bytes (sent as data_base64)'}
              </label>
            ))}
          </div>
          {kind === 'json' ? (
            <div className="field">
              <label htmlFor="publish-data">Data (JSON)</label>
              <textarea id="publish-data" value={data} onChange={(e) => setData(e.target.value)} rows={4} spellCheck={false} />
            </div>
          ) : (
            <>
              <div className="field">
                <label htmlFor="publish-bytes">Bytes (hex)</label>
                <textarea
                  id="publish-bytes"
                  value={hex}
                  onChange={(e) => setHex(e.target.value)}
                  rows={4}
                  spellCheck={false}
                  placeholder="de ad be ef"
                  aria-describedby="publish-bytes-hint"
                />
              </div>
              <div className="field">
                <label htmlFor="publish-file">Or load a file</label>
                <input id="publish-file" type="file" onChange={loadFile} aria-describedby="publish-bytes-hint" />
              </div>
              <p id="publish-bytes-hint" className="hint">
                Two hex digits a byte, spaces optional; a file (at most {MAX_FILE_WORDS}) fills them in. The feed shows
                events whose type ends in <code>{BINARY_TYPE_SUFFIX}</code> as bytes.
              </p>
            </>
          )}
        </fieldset>
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
