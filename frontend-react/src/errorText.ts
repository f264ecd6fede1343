// Gateway errors in words: what happened and what to do, from the JSON error's status and code.
import { GatewayError } from './sse/errors';

export type Action = 'publish' | 'stats' | 'subscribe' | 'ticket';

export interface ErrorText {
  /** One sentence: what went wrong, in words. */
  title: string;
  /** The gateway's own message and code, for the curious. */
  detail: string;
}

function retryIn(err: GatewayError): string {
  return err.retryAfter !== undefined ? ` Try again in ${err.retryAfter} s.` : ' Try again shortly.';
}

/** Describes any error thrown by the API helpers or reported by `SseClient`. */
export function describeError(e: unknown, action: Action): ErrorText {
  if (!(e instanceof GatewayError)) {
    const message = e instanceof Error ? e.message : String(e);
    return { title: `Something went wrong: ${message}`, detail: '' };
  }
  const detail = e.status ? `${e.status} ${e.code}: ${e.message}` : `${e.code}: ${e.message}`;
  // A stream that failed while getting its ticket failed at POST /tickets.
  const where = e.endpoint?.endsWith('/tickets') ? 'ticket' : action;
  return { title: title(e, where), detail };
}

function title(e: GatewayError, action: Action): string {
  switch (e.code) {
    case 'network_error':
      return 'Cannot reach the gateway: is it running, and is this page served by it (or by npm run dev)?';
    case 'origin_not_allowed':
      return `Not allowed: this page's origin (${globalThis.location?.origin ?? 'unknown'}) is not in the gateway's cors.allowed_origins.`;
    case 'token_expired':
      return 'Signed out: the token expired. Get a fresh token and connect again.';
    case 'not_event_stream':
      return 'Not a stream: the stream URL did not answer with text/event-stream. Is the gateway behind this address?';
    case 'no_eventsource':
      return 'This browser cannot open event streams (no EventSource).';
    case 'gave_up':
      return 'Gave up reconnecting after too many failures.';
    case 'draining':
      return `Unavailable: the gateway is shutting down.${retryIn(e)}`;
    case 'at_capacity':
      return `Unavailable: the gateway is at its connection limit.${retryIn(e)}`;
    case 'broker_unavailable':
      return `Unavailable: the gateway's broker could not take the event.${retryIn(e)}`;
    case 'too_many_connections':
      return `Too many connections: this address or credential holds as many streams as allowed.${retryIn(e)}`;
    case 'rate_limited':
      return action === 'publish'
        ? `Too many requests: this key publishes faster than the gateway allows.${retryIn(e)}`
        : `Too many requests: slow down.${retryIn(e)}`;
    case 'payload_too_large':
      return "Too large: the event is over the gateway's size limit (limits.max_event_bytes).";
    case 'unsupported_media_type':
      return 'Not JSON: the request was not sent as application/json.';
    case 'invalid_channel':
      return 'Invalid channel name: use letters, digits and . _ : / - (at most 128 characters).';
    case 'invalid_event':
      return 'Invalid event type: use letters, digits and . _ : - (at most 64 characters).';
    case 'invalid_types':
      return 'Invalid event type filter: use letters, digits and . _ : - separated by commas.';
    case 'too_many_channels':
      return 'Too many channels for one stream or one event.';
    case 'missing_channel':
      return 'No channel: pick at least one channel.';
  }
  if (e.status >= 500 && e.code.startsWith('http_')) {
    // No JSON error body: not the gateway's own answer (a proxy in front of it, say).
    return `The server answered ${e.status} without a gateway error: is the gateway running behind this address? (npm run dev forwards to GATEWAY_URL, default http://127.0.0.1:8080)`;
  }
  switch (e.status) {
    case 401:
      if (action === 'stats') return 'Not signed in: enter an admin API key (the gateway did not accept this one, or none was given).';
      if (action === 'publish') return 'Not signed in: publishing on this channel needs a valid API key or token, and the gateway did not accept the one given.';
      if (action === 'ticket') return 'Not signed in: the gateway did not accept this key or token for a stream ticket.';
      return 'Not signed in: this channel needs a valid credential.';
    case 403:
      if (action === 'stats') return 'Not allowed: this key is not an admin key.';
      if (action === 'publish') return 'Not allowed: this key cannot publish on that channel.';
      return 'Not allowed: this credential cannot subscribe to that channel.';
    case 404:
      if (action === 'ticket') return 'No ticket endpoint: this gateway does not offer POST /tickets. Leave the stream credential empty for public channels.';
      return 'Not found: the gateway has no such endpoint.';
    case 413:
      return "Too large: the request is over the gateway's size limit.";
    case 429:
      return `Too many requests.${retryIn(e)}`;
    case 503:
      return `Unavailable: the gateway cannot serve this now.${retryIn(e)}`;
    case 502:
    case 504:
      return 'Upstream failure: the gateway could not get an answer from its upstream.';
  }
  if (e.status >= 500) return `The gateway failed (${e.status}).${retryIn(e)}`;
  if (e.status >= 400) return `Rejected: ${e.message}`;
  return e.message;
}
