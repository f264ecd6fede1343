/**
 * The gateway's browser client: a typed `EventSource` wrapper (`SseClient`), the ticket flow
 * (`ticketSource`), backoff, and React bindings (`useEventSource`, `SseProvider`).
 * The core (everything but `react.tsx`) does not depend on React.
 */
export { SseClient, RESET_EVENT, TOKEN_EXPIRED_EVENT, type SseClientOptions, type SseSnapshot } from './client';
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
export { Base64Error, decodeBase64, encodeBase64 } from './base64';
export { GatewayError } from './errors';
export { ticketSource, credentialHeaders, type Credential, type TicketSourceOptions } from './tickets';
export {
  CONNECTING,
  OPEN,
  CLOSED,
  type ConnectionState,
  type EventMap,
  type EventSourceCtor,
  type EventSourceLike,
  type FetchLike,
  type ResetInfo,
  type SseEvent,
} from './types';
export {
  SseProvider,
  useEventSource,
  useSseEnvironment,
  type SseEnvironment,
  type UseEventSourceOptions,
  type UseEventSourceResult,
} from './react';
