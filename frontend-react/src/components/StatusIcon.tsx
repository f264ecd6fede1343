import type { ConnectionState } from '../sse/types';

/**
 * A shape per state, so the state never rests on colour alone: a filled circle (open), a dashed
 * ring (connecting), a circular arrow (reconnecting), a square (closed). The text beside it says
 * the same in words; the icon is hidden from screen readers.
 */
export function StatusIcon({ state }: { state: ConnectionState }) {
  return (
    <svg className={`status-icon status-icon-${state}`} viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">
      {state === 'open' && <circle cx="8" cy="8" r="6" fill="currentColor" />}
      {state === 'connecting' && <circle cx="8" cy="8" r="5.5" fill="none" stroke="currentColor" strokeWidth="2.5" strokeDasharray="3 2.5" />}
      {state === 'reconnecting' && (
        <g fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round">
          <path d="M13 8a5 5 0 1 1-1.6-3.7" />
          <path d="M13 2.5v3h-3" />
        </g>
      )}
      {state === 'closed' && <rect x="2.5" y="2.5" width="11" height="11" rx="1.5" fill="currentColor" />}
    </svg>
  );
}
