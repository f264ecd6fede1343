import { act, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SseProvider } from '../sse/react';
import type { FetchLike } from '../sse/types';
import { fakeEventSource, fetchReplies, gatewayError, jsonReply } from '../test/fakes';
import { EventFeed, type EventFeedProps } from './EventFeed';

function setup(props: Partial<EventFeedProps> = {}, fetch?: FetchLike) {
  const fake = fakeEventSource();
  const view = render(
    <SseProvider value={{ EventSource: fake.EventSource, fetch, baseUrl: 'http://gw.test/' }}>
      <EventFeed initialChannels={['notifications', 'news']} flushMs={0} {...props} />
    </SseProvider>,
  );
  return { fake, view };
}

const status = () => screen.getByTestId('connection-status');

afterEach(() => {
  vi.useRealTimers();
});

describe('EventFeed', () => {
  it('shows the state in words and one event-item per event', () => {
    const { fake } = setup();
    expect(status().textContent).toBe('connecting');
    act(() => fake.last().open());
    expect(status().textContent).toBe('open');
    act(() => {
      fake.last().emit('notification', { id: 'u-1', title: 'Deployed', body: 'v1.2', level: 'success', time: '' }, '5-1');
      fake.last().emit('message', { text: 'hello' }, '5-2');
    });
    const items = screen.getAllByTestId('event-item');
    expect(items).toHaveLength(2);
    // Newest first.
    expect(items[0]).toHaveTextContent('hello');
    expect(items[0]).toHaveTextContent('5-2');
    expect(items[1]).toHaveTextContent('Deployed');
    expect(items[1]).toHaveTextContent('success');
    expect(screen.getByTestId('connection-status-last-id')).toHaveTextContent('5-2');
  });

  it('shows a .bin event as its size and a hex preview, and as text on request', async () => {
    const { fake } = setup();
    act(() => fake.last().open());
    // Listened for without a filter: the publish form's binary type.
    expect(fake.last().listened()).toContain('blob.bin');
    const bytes = Uint8Array.from({ length: 40 }, (_, i) => 0xd0 + i);
    const base64 = Buffer.from(bytes).toString('base64');
    act(() => fake.last().emit('blob.bin', base64, '6-1'));
    const item = screen.getByTestId('event-item');
    expect(within(item).getByTestId('event-bytes-size')).toHaveTextContent('40 bytes');
    // The first 32 bytes, and a mark that there are more.
    const hex = Array.from(bytes.subarray(0, 32), (b) => b.toString(16).padStart(2, '0')).join(' ');
    expect(within(item).getByTestId('event-bytes-hex').textContent).toBe(`${hex} …`);
    expect(hex.startsWith('d0 d1 d2')).toBe(true);
    expect(item).not.toHaveTextContent(base64);
    await userEvent.click(within(item).getByRole('button', { name: 'Show as text' }));
    expect(item).toHaveTextContent(base64);
    expect(within(item).queryByTestId('event-bytes-size')).toBeNull();
  });

  it('shows any event whose data is base64 as bytes when asked, and offers it for no other', async () => {
    const { fake } = setup();
    act(() => fake.last().open());
    act(() => {
      fake.last().emit('message', 'AAEC//4=', '6-1');
      fake.last().emit('message', { text: 'hello' }, '6-2');
    });
    const [json, binary] = screen.getAllByTestId('event-item');
    expect(binary).toHaveTextContent('AAEC//4=');
    expect(within(json).queryByTestId('event-bytes-toggle')).toBeNull();
    await userEvent.click(within(binary).getByRole('button', { name: 'Show as bytes' }));
    expect(within(binary).getByTestId('event-bytes-size')).toHaveTextContent('5 bytes');
    expect(within(binary).getByTestId('event-bytes-hex').textContent).toBe('00 01 02 ff fe');
  });

  it('shows a .bin event whose data is not base64 as text, and says why', () => {
    const { fake } = setup();
    act(() => fake.last().open());
    act(() => fake.last().emit('blob.bin', 'not base64!', '6-1'));
    const item = screen.getByTestId('event-item');
    expect(item).toHaveTextContent('not base64!');
    expect(within(item).getByTestId('event-bytes-error')).toHaveTextContent(
      'Shown as text: the type says bytes, but the data is not standard base64: 11 characters, not a multiple of 4',
    );
    expect(within(item).queryByTestId('event-bytes-toggle')).toBeNull();
  });

  it('keeps at most `cap` events and counts the dropped ones, in batched renders', async () => {
    const { fake } = setup({ cap: 500, flushMs: 20 });
    act(() => fake.last().open());
    act(() => {
      for (let i = 1; i <= 5000; i++) fake.last().emit('message', { i }, `1-${i}`);
    });
    await waitFor(() => expect(screen.getByTestId('received-count')).toHaveTextContent('5,000'));
    const items = screen.getAllByTestId('event-item');
    expect(items).toHaveLength(500);
    expect(items[0]).toHaveTextContent('"i": 5000');
    expect(items[499]).toHaveTextContent('"i": 4501');
    expect(screen.getByTestId('dropped-count')).toHaveTextContent('4,500 older events not shown');
  });

  it('shows a reset notice in words until dismissed', async () => {
    const onReset = vi.fn();
    const { fake } = setup({ initialLastEventId: 'bogus', onReset });
    expect(fake.last().params.get('lastEventId')).toBe('bogus');
    act(() => fake.last().open());
    act(() => fake.last().emit('reset', { reason: 'malformed_id' }, '9-1'));
    const notice = screen.getByTestId('reset-notice');
    expect(notice).toHaveTextContent('The stream was reset');
    expect(notice).toHaveTextContent('malformed_id');
    expect(notice).toHaveTextContent('may be missing');
    expect(onReset).toHaveBeenCalledTimes(1);
    await userEvent.click(within(notice).getByRole('button', { name: 'Dismiss' }));
    expect(screen.queryByTestId('reset-notice')).toBeNull();
  });

  it('shows reconnecting with the attempt and countdown, then resumes from the last id', async () => {
    vi.useFakeTimers();
    const { fake } = setup({ backoff: { initialMs: 2000, jitter: 0 } }, fetchReplies(new TypeError('fetch failed')));
    act(() => fake.last().open());
    act(() => fake.last().emit('message', 'a', '4-1'));
    await act(async () => {
      fake.last().fail();
    });
    expect(status().textContent).toBe('reconnecting');
    expect(screen.getByRole('status', { name: '' })).toHaveTextContent('Attempt 1, next try in 2 s');
    expect(screen.getByRole('alert')).toHaveTextContent('Cannot reach the gateway');
    await act(async () => {
      await vi.advanceTimersByTimeAsync(2000);
    });
    expect(fake.instances).toHaveLength(2);
    expect(fake.last().params.get('lastEventId')).toBe('4-1');
    act(() => fake.last().open());
    expect(status().textContent).toBe('open');
  });

  it('explains a refused stream in words and stops retrying', async () => {
    const fetch = fetchReplies(gatewayError(403, 'forbidden', 'the credential does not cover channel private'));
    const { fake } = setup({}, fetch);
    await act(async () => fake.last().fail());
    await waitFor(() => expect(status().textContent).toBe('closed'));
    expect(screen.getByRole('alert')).toHaveTextContent('Not allowed: this credential cannot subscribe to that channel');
    expect(screen.getByRole('alert')).toHaveTextContent('403 forbidden');
  });

  it('applies channels and the type filter to a new stream', async () => {
    const user = userEvent.setup();
    const { fake } = setup();
    await user.click(screen.getByRole('checkbox', { name: 'notifications' }));
    await user.type(screen.getByLabelText('Add a channel'), 'alerts{Enter}');
    expect(screen.getByRole('checkbox', { name: 'alerts' })).toBeChecked();
    await user.type(screen.getByLabelText('Only these event types'), 'alert, headline');
    expect(fake.instances).toHaveLength(1); // nothing applied yet
    await user.click(screen.getByRole('button', { name: 'Apply' }));
    expect(fake.instances).toHaveLength(2);
    expect(fake.instances[0].closed).toBe(true);
    expect(fake.last().params.getAll('channel')).toEqual(['news', 'alerts']);
    expect(fake.last().params.get('types')).toBe('alert,headline');
  });

  it('fetches a ticket with the stream credential for every connection', async () => {
    const user = userEvent.setup();
    let n = 0;
    const fetch = vi.fn(async () => jsonReply(201, { ticket: `tk${++n}`, expires_in: 30 }));
    const { fake } = setup({ backoff: { initialMs: 50 } }, fetch);
    await user.type(screen.getByLabelText('API key'), 'sekrit');
    await user.click(screen.getByRole('button', { name: 'Apply' }));
    await waitFor(() => expect(fake.last().params.get('ticket')).toBe('tk1'));
    expect(fetch).toHaveBeenCalledWith('/tickets', expect.objectContaining({ method: 'POST', headers: { 'X-API-Key': 'sekrit' } }));
    act(() => fake.last().open());
    // The browser's own retry would reuse the spent ticket: the client takes over.
    act(() => fake.last().drop());
    await waitFor(() => expect(fake.last().params.get('ticket')).toBe('tk2'), { timeout: 3000 });
    expect(fake.instances.filter((es) => !es.closed)).toHaveLength(1);
  });

  it('says so when the gateway has no ticket endpoint', async () => {
    const user = userEvent.setup();
    const { fake } = setup({}, fetchReplies(gatewayError(404, 'not_found', 'no such path')));
    await user.type(screen.getByLabelText('API key'), 'k');
    await user.click(screen.getByRole('button', { name: 'Apply' }));
    await waitFor(() => expect(status().textContent).toBe('closed'));
    expect(screen.getByRole('alert')).toHaveTextContent('No ticket endpoint');
    expect(fake.instances.filter((es) => !es.closed)).toHaveLength(0);
  });

  it('Disconnect closes and Connect resumes', async () => {
    const user = userEvent.setup();
    const { fake } = setup();
    act(() => fake.last().open());
    act(() => fake.last().emit('message', 'x', '8-8'));
    await user.click(screen.getByRole('button', { name: 'Disconnect' }));
    expect(status().textContent).toBe('closed');
    await user.click(screen.getByRole('button', { name: 'Connect' }));
    expect(fake.last().params.get('lastEventId')).toBe('8-8');
    expect(status().textContent).toBe('connecting');
  });
});
