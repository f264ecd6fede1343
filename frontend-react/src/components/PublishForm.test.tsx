import { render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { SseProvider } from '../sse/react';
import type { FetchLike } from '../sse/types';
import { fetchReplies, gatewayError, jsonReply } from '../test/fakes';
import { MAX_FILE_BYTES, PublishForm } from './PublishForm';

function setup(fetch: FetchLike, onPublishing = vi.fn()) {
  render(
    <SseProvider value={{ fetch }}>
      <PublishForm defaultChannel="news" onPublishing={onPublishing} />
    </SseProvider>,
  );
  return { user: userEvent.setup(), onPublishing };
}

async function fillAndPublish(user: ReturnType<typeof userEvent.setup>, fields: { key?: string; data?: string; event?: string; bearer?: boolean } = {}) {
  if (fields.event !== undefined) {
    await user.clear(screen.getByLabelText('Event type'));
    await user.type(screen.getByLabelText('Event type'), fields.event);
  }
  if (fields.data !== undefined) {
    await user.clear(screen.getByLabelText('Data (JSON)'));
    // userEvent treats { and [ as key descriptors: paste instead.
    await user.click(screen.getByLabelText('Data (JSON)'));
    await user.paste(fields.data);
  }
  if (fields.bearer) await user.click(screen.getByRole('radio', { name: /Token/ }));
  if (fields.key) await user.type(screen.getByLabelText(fields.bearer ? 'Token' : 'API key'), fields.key);
  await user.click(screen.getByRole('button', { name: 'Publish' }));
}

describe('PublishForm', () => {
  it('POSTs /broadcast with the key and shows the 202 id', async () => {
    const fetch = fetchReplies(jsonReply(202, { id: '17-44', channels: ['news'] }));
    const { user, onPublishing } = setup(fetch);
    await fillAndPublish(user, { key: 'dev-key', event: 'headline', data: '{"title": "hi"}' });
    expect(await screen.findByTestId('publish-result')).toHaveTextContent('Published event 17-44 on news.');
    expect(fetch).toHaveBeenCalledTimes(1);
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe('/broadcast');
    expect(init?.method).toBe('POST');
    expect(init?.headers).toEqual({ 'Content-Type': 'application/json', 'X-API-Key': 'dev-key' });
    expect(JSON.parse(init?.body as string)).toEqual({ channel: 'news', event: 'headline', data: { title: 'hi' } });
    expect(onPublishing).toHaveBeenCalledWith('headline');
  });

  it('sends a token as Authorization: Bearer', async () => {
    const fetch = fetchReplies(jsonReply(202, { id: '1-1', channels: ['news'] }));
    const { user } = setup(fetch);
    await fillAndPublish(user, { key: 'jwt.token.here', bearer: true });
    await screen.findByTestId('publish-result');
    expect(fetch.mock.calls[0][1]?.headers).toEqual({ 'Content-Type': 'application/json', Authorization: 'Bearer jwt.token.here' });
  });

  it.each([
    [gatewayError(401, 'unauthorized', 'the credential is not valid'), 'Not signed in: publishing on this channel needs a valid API key or token'],
    [gatewayError(403, 'forbidden', 'key dev may not publish on news'), 'Not allowed: this key cannot publish on that channel'],
    [gatewayError(413, 'payload_too_large', 'the body is over 65536 bytes'), "Too large: the event is over the gateway's size limit"],
    [gatewayError(429, 'rate_limited', 'publish rate exceeded', { 'Retry-After': '3' }), 'Too many requests: this key publishes faster than the gateway allows. Try again in 3 s.'],
    [gatewayError(503, 'draining', 'the gateway is shutting down', { 'Retry-After': '1' }), 'Unavailable: the gateway is shutting down. Try again in 1 s.'],
    [gatewayError(400, 'invalid_channel', 'channel names match ...'), 'Invalid channel name'],
    [gatewayError(403, 'origin_not_allowed', 'this Origin is not in cors.allowed_origins'), "Not allowed: this page's origin"],
  ])('shows a gateway error as words: %#', async (reply, words) => {
    const { user } = setup(fetchReplies(reply));
    await fillAndPublish(user, { key: 'k' });
    const error = await screen.findByTestId('publish-error');
    expect(error).toHaveTextContent(words);
    // The code and the gateway's message are there too, but not alone.
    const body = (await reply.clone().json()) as { error: { code: string; message: string } };
    expect(error).toHaveTextContent(`${reply.status} ${body.error.code}: ${body.error.message}`);
    expect(screen.queryByTestId('publish-result')).toBeNull();
  });

  it('says when the gateway cannot be reached', async () => {
    const { user } = setup(fetchReplies(new TypeError('Failed to fetch')));
    await fillAndPublish(user, { key: 'k' });
    expect(await screen.findByTestId('publish-error')).toHaveTextContent('Cannot reach the gateway');
  });

  it('refuses data that is not JSON without sending anything', async () => {
    const fetch = fetchReplies(jsonReply(202, { id: '1-1', channels: ['news'] }));
    const { user } = setup(fetch);
    await fillAndPublish(user, { key: 'k', data: 'hello' });
    expect(await screen.findByTestId('publish-error')).toHaveTextContent('Data is not valid JSON');
    expect(fetch).not.toHaveBeenCalled();
  });

  describe('bytes', () => {
    const sentBody = (fetch: ReturnType<typeof fetchReplies>) => JSON.parse(fetch.mock.calls[0][1]?.body as string);

    it('publishes hex as data_base64, with a type the feed shows as bytes', async () => {
      const fetch = fetchReplies(jsonReply(202, { id: '3-1', channels: ['news'] }));
      const { user, onPublishing } = setup(fetch);
      await user.click(screen.getByRole('radio', { name: 'Bytes (sent as data_base64)' }));
      expect(screen.getByLabelText('Event type')).toHaveValue('blob.bin');
      expect(screen.queryByLabelText('Data (JSON)')).toBeNull();
      await user.type(screen.getByLabelText('Bytes (hex)'), 'DE AD be ef 00');
      await fillAndPublish(user, { key: 'k' });
      expect(await screen.findByTestId('publish-result')).toHaveTextContent('Published event 3-1 on news.');
      // Exactly the gateway's form: data_base64 and no data beside it.
      expect(sentBody(fetch)).toEqual({ channel: 'news', event: 'blob.bin', data_base64: '3q2+7wA=' });
      expect(onPublishing).toHaveBeenCalledWith('blob.bin');
    });

    it('loads a file as its bytes', async () => {
      const fetch = fetchReplies(jsonReply(202, { id: '3-2', channels: ['news'] }));
      const { user } = setup(fetch);
      await user.click(screen.getByRole('radio', { name: /Bytes/ }));
      await user.upload(screen.getByLabelText('Or load a file'), new File([Uint8Array.of(0, 1, 2, 0xff, 0xfe)], 'five.bin'));
      await waitFor(() => expect(screen.getByLabelText('Bytes (hex)')).toHaveValue('00 01 02 ff fe'));
      await fillAndPublish(user, { key: 'k' });
      await screen.findByTestId('publish-result');
      expect(sentBody(fetch).data_base64).toBe('AAEC//4=');
    });

    it('refuses a file too large to load, in words', async () => {
      const { user } = setup(fetchReplies(jsonReply(202, { id: '1-1', channels: ['news'] })));
      await user.click(screen.getByRole('radio', { name: /Bytes/ }));
      await user.upload(screen.getByLabelText('Or load a file'), new File([new Uint8Array(MAX_FILE_BYTES + 1)], 'big.bin'));
      expect(await screen.findByTestId('publish-error')).toHaveTextContent('Too large to load: big.bin is 1,048,577 bytes, and the form loads at most 1 MiB.');
      expect(screen.getByLabelText('Bytes (hex)')).toHaveValue('');
    });

    it.each([
      ['de ad bx', '"x" is not a hex digit'],
      ['abc', '3 hex digits, and a byte is two'],
      ['', 'No bytes: enter them as hex, or load a file.'],
    ])('refuses %j without sending anything', async (hex, words) => {
      const fetch = fetchReplies(jsonReply(202, { id: '1-1', channels: ['news'] }));
      const { user } = setup(fetch);
      await user.click(screen.getByRole('radio', { name: /Bytes/ }));
      if (hex) await user.type(screen.getByLabelText('Bytes (hex)'), hex);
      await fillAndPublish(user, { key: 'k' });
      expect(await screen.findByTestId('publish-error')).toHaveTextContent(words);
      expect(fetch).not.toHaveBeenCalled();
    });

    it('keeps an event type you typed when you switch between JSON and bytes', async () => {
      const { user } = setup(fetchReplies(jsonReply(202, { id: '1-1', channels: ['news'] })));
      await user.click(screen.getByRole('radio', { name: /Bytes/ }));
      await user.click(screen.getByRole('radio', { name: 'JSON' }));
      expect(screen.getByLabelText('Event type')).toHaveValue('message');
      await user.clear(screen.getByLabelText('Event type'));
      await user.type(screen.getByLabelText('Event type'), 'frame');
      await user.click(screen.getByRole('radio', { name: /Bytes/ }));
      expect(screen.getByLabelText('Event type')).toHaveValue('frame');
    });
  });
});
