import { describe, expect, it } from 'vitest';
import { describeError } from './errorText';
import { GatewayError } from './sse/errors';

describe('describeError', () => {
  it('words the same status by what the user was doing', () => {
    const forbidden = new GatewayError(403, 'forbidden', 'no');
    expect(describeError(forbidden, 'publish').title).toBe('Not allowed: this key cannot publish on that channel.');
    expect(describeError(forbidden, 'stats').title).toBe('Not allowed: this key is not an admin key.');
    expect(describeError(forbidden, 'subscribe').title).toBe('Not allowed: this credential cannot subscribe to that channel.');
  });

  it('keeps the code and the gateway message as detail', () => {
    expect(describeError(new GatewayError(413, 'payload_too_large', 'over 65536 bytes'), 'publish')).toEqual({
      title: "Too large: the event is over the gateway's size limit (limits.max_event_bytes).",
      detail: '413 payload_too_large: over 65536 bytes',
    });
  });

  it('says which endpoint failed when it was the ticket endpoint', () => {
    const e = new GatewayError(404, 'not_found', 'no such path');
    e.endpoint = '/tickets';
    expect(describeError(e, 'subscribe').title).toMatch(/^No ticket endpoint/);
  });

  it('tells a proxy error from a gateway error', () => {
    expect(describeError(new GatewayError(502, 'http_502', 'Bad Gateway'), 'subscribe').title).toMatch(/without a gateway error/);
    expect(describeError(new GatewayError(503, 'at_capacity', 'full', 5), 'subscribe').title).toBe(
      'Unavailable: the gateway is at its connection limit. Try again in 5 s.',
    );
  });

  it('words errors that are not from the gateway', () => {
    expect(describeError(new Error('boom'), 'publish').title).toBe('Something went wrong: boom');
  });
});
