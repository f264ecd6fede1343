import type { ResetInfo } from '../sse/types';

const REASONS: Record<string, string> = {
  malformed_id: 'the resume id is not one this gateway issues',
  unknown_id: 'the resume id is from an earlier run of the gateway, or ahead of its last event',
  history_evicted: "the events since the resume id have left the gateway's history",
};

/** The visible notice that the stream was reset: events may be missing, state must be refetched. */
export function ResetNotice({ reset, onDismiss }: { reset: ResetInfo; onDismiss: () => void }) {
  return (
    <div className="notice notice-warning" role="alert" data-testid="reset-notice">
      <p>
        <span aria-hidden="true">⚠ </span>
        <strong>The stream was reset</strong> ({reset.reason}
        {REASONS[reset.reason] ? `: ${REASONS[reset.reason]}` : ''}). Events from before this point may be missing; the
        list continues live from here.
      </p>
      <button type="button" onClick={onDismiss}>
        Dismiss
      </button>
    </div>
  );
}
