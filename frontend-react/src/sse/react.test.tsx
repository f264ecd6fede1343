import { act, render, screen, waitFor } from '@testing-library/react';
import { useState } from 'react';
import { describe, expect, it, vi } from 'vitest';
import { fakeEventSource } from '../test/fakes';
import { SseProvider, useEventSource, type UseEventSourceOptions } from './react';

type Events = { notification: { title: string }; message: unknown };

function Probe(props: UseEventSourceOptions<Events>) {
  const s = useEventSource<Events>(props);
  return (
    <div>
      <span data-testid="state">{s.state}</span>
      <span data-testid="attempts">{s.attempts}</span>
      <span data-testid="last-id">{s.lastEventId}</span>
      <span data-testid="reset">{s.lastReset?.reason ?? ''}</span>
      <button onClick={s.close}>close</button>
    </div>
  );
}

function setup(props: Partial<UseEventSourceOptions<Events>> = {}) {
  const fake = fakeEventSource();
  const all: UseEventSourceOptions<Events> = { channels: ['news'], probe: false, window: null, random: () => 0, ...props };
  const view = render(
    <SseProvider value={{ EventSource: fake.EventSource, baseUrl: 'http://gw.test/' }}>
      <Probe {...all} />
    </SseProvider>,
  );
  const rerender = (next: Partial<UseEventSourceOptions<Events>>) =>
    view.rerender(
      <SseProvider value={{ EventSource: fake.EventSource, baseUrl: 'http://gw.test/' }}>
        <Probe {...all} {...next} />
      </SseProvider>,
    );
  return { fake, view, rerender };
}

const text = (id: string) => screen.getByTestId(id).textContent;

describe('useEventSource', () => {
  it('reports connecting, open, reconnecting and open again, with attempts and the last id', () => {
    const { fake } = setup();
    expect(text('state')).toBe('connecting');
    act(() => fake.last().open());
    expect(text('state')).toBe('open');
    act(() => fake.last().emit('message', 'hi', '3-1'));
    expect(text('last-id')).toBe('3-1');
    act(() => fake.last().drop());
    expect(text('state')).toBe('reconnecting');
    expect(text('attempts')).toBe('1');
    act(() => fake.last().open());
    expect(text('state')).toBe('open');
    expect(text('attempts')).toBe('0');
  });

  it('calls typed listeners and onEvent, with the latest callbacks and no reconnect', () => {
    const first = vi.fn();
    const second = vi.fn();
    const onEvent = vi.fn();
    const { fake, rerender } = setup({ on: { notification: first }, onEvent });
    act(() => fake.last().open());
    act(() => fake.last().emit('notification', { title: 'a' }, '1-1'));
    rerender({ on: { notification: second }, onEvent });
    act(() => fake.last().emit('notification', { title: 'b' }, '1-2'));
    expect(first).toHaveBeenCalledTimes(1);
    expect(second).toHaveBeenCalledWith(expect.objectContaining({ json: { title: 'b' } }));
    expect(onEvent).toHaveBeenCalledTimes(2);
    expect(fake.instances).toHaveLength(1);
  });

  it('listens for a type added later on the open stream', () => {
    const onEvent = vi.fn();
    const { fake, rerender } = setup({ onEvent });
    expect(fake.last().listened()).not.toContain('e2e');
    rerender({ onEvent, listen: ['e2e'] });
    expect(fake.last().listened()).toContain('e2e');
    act(() => fake.last().emit('e2e', '{}', '1-1'));
    expect(onEvent).toHaveBeenCalledTimes(1);
    expect(fake.instances).toHaveLength(1);
  });

  it('opens a new stream when the channels change, and closes the old one', () => {
    const { fake, rerender } = setup({ lastEventId: '1-9' });
    expect(fake.last().params.get('lastEventId')).toBe('1-9');
    rerender({ channels: ['news', 'alerts'], lastEventId: '1-9' });
    expect(fake.instances).toHaveLength(2);
    expect(fake.instances[0].closed).toBe(true);
    expect(fake.last().params.getAll('channel')).toEqual(['news', 'alerts']);
    // The initial resume point belongs to the first stream only.
    expect(fake.last().params.get('lastEventId')).toBeNull();
  });

  it('shows a reset and calls onReset', () => {
    const onReset = vi.fn();
    const { fake } = setup({ onReset });
    act(() => fake.last().open());
    act(() => fake.last().emit('reset', { reason: 'history_evicted' }, '2-7'));
    expect(text('reset')).toBe('history_evicted');
    expect(text('last-id')).toBe('2-7');
    expect(onReset).toHaveBeenCalledWith(expect.objectContaining({ reason: 'history_evicted' }));
  });

  it('closes the EventSource on unmount', () => {
    const { fake, view } = setup();
    act(() => fake.last().open());
    view.unmount();
    expect(fake.last().closed).toBe(true);
  });

  it('is closed and opens nothing when disabled', () => {
    const { fake, rerender } = setup({ enabled: false });
    expect(text('state')).toBe('closed');
    expect(fake.instances).toHaveLength(0);
    rerender({ enabled: true });
    expect(text('state')).toBe('connecting');
    expect(fake.instances).toHaveLength(1);
  });

  it('reconnect() connects with the options set in the same handler (a new credential)', async () => {
    const fake = fakeEventSource();
    function SignIn() {
      const [token, setToken] = useState('old');
      const s = useEventSource({ channels: ['news'], getTicket: async () => `ticket-for-${token}`, EventSource: fake.EventSource, baseUrl: 'http://gw.test/', window: null });
      return (
        <button
          onClick={() => {
            setToken('new');
            s.reconnect();
          }}
        >
          sign in
        </button>
      );
    }
    render(<SignIn />);
    await waitFor(() => expect(fake.last().params.get('ticket')).toBe('ticket-for-old'));
    act(() => fake.last().open());
    act(() => fake.last().emit('message', 'x', '4-2'));
    act(() => screen.getByText('sign in').click());
    await waitFor(() => expect(fake.instances).toHaveLength(2));
    expect(fake.instances[0].closed).toBe(true);
    expect(fake.last().params.get('ticket')).toBe('ticket-for-new');
    expect(fake.last().params.get('lastEventId')).toBe('4-2');
  });

  it('close() closes the stream', () => {
    const { fake } = setup();
    act(() => fake.last().open());
    act(() => screen.getByText('close').click());
    expect(text('state')).toBe('closed');
    expect(fake.last().closed).toBe(true);
  });
});
