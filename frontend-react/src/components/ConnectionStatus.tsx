import type { GatewayError } from '../sse/errors';
import type { ConnectionState } from '../sse/types';
import { describeError } from '../errorText';
import { useNow } from '../hooks/useNow';
import { StatusIcon } from './StatusIcon';

export interface ConnectionStatusProps {
  state: ConnectionState;
  attempts?: number;
  nextRetryAt?: number | null;
  lastEventId?: string;
  error?: GatewayError | null;
  /** Offered as a "Retry now" button while reconnecting. */
  onReconnect?: () => void;
  /** `data-testid` of the state word; the page's main stream uses `connection-status`. */
  testId?: string;
  label?: string;
}

const DESCRIPTION: Record<ConnectionState, string> = {
  connecting: 'Opening the stream…',
  open: 'Receiving events live.',
  reconnecting: 'The stream dropped; resuming from the last event id.',
  closed: 'Not connected.',
};

/** The stream's state in words, with a shape for each state, attempts and the next retry. */
export function ConnectionStatus({
  state,
  attempts = 0,
  nextRetryAt = null,
  lastEventId = '',
  error = null,
  onReconnect,
  testId = 'connection-status',
  label = 'Stream',
}: ConnectionStatusProps) {
  const now = useNow(nextRetryAt !== null);
  const waitS = nextRetryAt !== null ? Math.max(0, Math.ceil((nextRetryAt - now) / 1000)) : null;
  const errorText = error ? describeError(error, 'subscribe') : null;
  return (
    <div className={`connection-status state-${state}`}>
      <p className="status-line" role="status" aria-live="polite">
        <StatusIcon state={state} />
        <span className="status-label">{label}: </span>
        <strong data-testid={testId}>{state}</strong>
        <span className="status-description">
          {' '}
          {DESCRIPTION[state]}
          {state === 'reconnecting' && attempts > 0 && ` Attempt ${attempts}`}
          {state === 'reconnecting' && waitS !== null && `, next try in ${waitS} s`}
          {state === 'reconnecting' && attempts > 0 && '.'}
        </span>
      </p>
      {errorText && state !== 'open' && (
        <p className="status-error" role="alert">
          {errorText.title}
          {errorText.detail && <span className="error-detail"> ({errorText.detail})</span>}
        </p>
      )}
      <p className="status-meta">
        Last event id: <code data-testid={`${testId}-last-id`}>{lastEventId || 'none yet'}</code>
        {onReconnect && state === 'reconnecting' && (
          <button type="button" className="link-button" onClick={onReconnect}>
            Retry now
          </button>
        )}
      </p>
    </div>
  );
}
