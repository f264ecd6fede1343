import { GatewayError } from './errors';
import type { FetchLike } from './types';

/** A credential the app holds; it is sent in a header, never in a URL. */
export type Credential = { bearer: string } | { apiKey: string };

export interface TicketSourceOptions {
  credential: Credential | (() => Credential | Promise<Credential>);
  /** The ticket endpoint. Default `/tickets` (same origin as the page). */
  url?: string;
  fetch?: FetchLike;
}

/** Builds the request headers for a credential: `Authorization: Bearer` or `X-API-Key`. */
export function credentialHeaders(credential: Credential | null | undefined): Record<string, string> {
  if (!credential) return {};
  if ('bearer' in credential) return credential.bearer ? { Authorization: `Bearer ${credential.bearer}` } : {};
  return credential.apiKey ? { 'X-API-Key': credential.apiKey } : {};
}

/**
 * Returns a function that fetches a fresh single-use stream ticket: `POST /tickets` with the
 * credential in a header, answered `201 {"ticket": "...", "expires_in": 30}`. Pass it as
 * `getTicket` to `SseClient`: it is called before every new `EventSource`, since a ticket opens
 * one stream only. A credential given as a function is read each time, so a refreshed token is used.
 */
export function ticketSource(opts: TicketSourceOptions): (signal?: AbortSignal) => Promise<string> {
  const url = opts.url ?? '/tickets';
  return async (signal?: AbortSignal) => {
    const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    const credential = typeof opts.credential === 'function' ? await opts.credential() : opts.credential;
    let res: Response;
    try {
      res = await doFetch(url, { method: 'POST', headers: credentialHeaders(credential), signal });
    } catch (e) {
      if (signal?.aborted) throw e;
      const err = GatewayError.network(e);
      err.endpoint = url;
      throw err;
    }
    if (!res.ok) {
      const err = await GatewayError.fromResponse(res);
      err.endpoint = url;
      throw err;
    }
    const body = (await res.json()) as { ticket?: unknown };
    if (typeof body.ticket !== 'string' || body.ticket === '') {
      const err = new GatewayError(res.status, 'bad_ticket_reply', 'the ticket reply has no "ticket" string');
      err.endpoint = url;
      throw err;
    }
    return body.ticket;
  };
}
