import { act, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SseProvider } from '../sse/react';
import type { FetchLike } from '../sse/types';
import { fakeEventSource, fetchReplies, gatewayError, jsonReply } from '../test/fakes';
import { MetricsChart } from './MetricsChart';
import { StatsPanel } from './StatsPanel';

function stats(published: number, open = 3) {
  return jsonReply(200, {
    node: { uptime_seconds: 10, broker: 'memory', draining: false, last_event_id: '1-1' },
    streams: { open, opened_total: 9 },
    events: { published_total: published, delivered_total: 0 },
    sources: [
      { name: 'notifications', channel: 'notifications', state: 'connected', events_total: 41 },
      { name: 'metrics', channel: 'metrics', state: 'backoff', events_total: 0, last_error: 'connect: refused' },
    ],
  });
}

function setup(fetch: FetchLike) {
  render(
    <SseProvider value={{ fetch }}>
      <StatsPanel intervalMs={2000} showChart={false} />
    </SseProvider>,
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('StatsPanel', () => {
  it('polls GET /stats with the admin key and shows streams, events/s and sources', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const fetch = fetchReplies(stats(10), stats(30, 4));
    setup(fetch);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    await user.type(screen.getByLabelText('API key'), 'admin-key');
    await user.click(screen.getByRole('button', { name: 'Show stats' }));
    expect(await screen.findByTestId('stats-open')).toHaveTextContent('3');
    expect(fetch).toHaveBeenCalledWith('/stats', expect.objectContaining({ headers: { 'X-API-Key': 'admin-key' } }));
    const rows = screen.getAllByTestId('source-row');
    expect(rows[0]).toHaveTextContent('notifications');
    expect(within(rows[0]).getByText('connected', { exact: false })).toBeInTheDocument();
    expect(rows[1]).toHaveTextContent('backoff');
    await act(async () => {
      await vi.advanceTimersByTimeAsync(2000);
    });
    expect(screen.getByTestId('stats-open')).toHaveTextContent('4');
    // 20 events in about 2 s.
    const rate = Number(screen.getByTestId('stats-rate').textContent);
    expect(rate).toBeGreaterThan(8);
    expect(rate).toBeLessThanOrEqual(10);
  });

  it('says in words that a key is not an admin key, and stops polling', async () => {
    const fetch = fetchReplies(gatewayError(403, 'forbidden', 'this credential is not admin'));
    setup(fetch);
    const user = userEvent.setup();
    await user.type(screen.getByLabelText('API key'), 'publisher-key');
    await user.click(screen.getByRole('button', { name: 'Show stats' }));
    expect(await screen.findByTestId('stats-error')).toHaveTextContent('Not allowed: this key is not an admin key.');
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('says in words that the key was not accepted', async () => {
    setup(fetchReplies(gatewayError(401, 'unauthorized', 'the credential is not valid')));
    const user = userEvent.setup();
    await user.type(screen.getByLabelText('API key'), 'nope');
    await user.click(screen.getByRole('button', { name: 'Show stats' }));
    expect(await screen.findByTestId('stats-error')).toHaveTextContent('Not signed in: enter an admin API key');
  });
});

describe('MetricsChart', () => {
  it('charts cpu_percent and memory.used_percent from the metrics channel', () => {
    const fake = fakeEventSource();
    render(
      <SseProvider value={{ EventSource: fake.EventSource, baseUrl: 'http://gw.test/' }}>
        <MetricsChart maxPoints={10} />
      </SseProvider>,
    );
    expect(fake.last().params.getAll('channel')).toEqual(['metrics']);
    expect(fake.last().params.get('types')).toBe('metrics');
    act(() => fake.last().open());
    expect(screen.getByTestId('metrics-connection-status')).toHaveTextContent('open');
    act(() => {
      for (let i = 0; i < 12; i++) {
        fake.last().emit('metrics', { time: '', cpu_percent: 10 + i, memory: { total_bytes: 1, available_bytes: 1, used_percent: 40 } }, `m-${i}`);
      }
    });
    const legend = document.querySelector('.legend')!;
    expect(legend).toHaveTextContent('CPU 21.0%');
    expect(legend).toHaveTextContent('Memory 40.0%');
    const cpu = document.querySelector('polyline.series-cpu')!;
    expect(cpu.getAttribute('points')!.split(' ')).toHaveLength(10); // the last 10 samples only
    expect(screen.getByRole('img')).toHaveAccessibleName(/Host metrics.*CPU 21\.0%, memory 40\.0% used/);
  });
});
