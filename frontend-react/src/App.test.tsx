import { act, render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App, readPageParams } from './App';
import { ConnectionStatus } from './components/ConnectionStatus';
import { GatewayError } from './sse/errors';
import { SseProvider } from './sse/react';
import { fakeEventSource } from './test/fakes';

describe('readPageParams', () => {
  it('reads channels, types and the resume point from the page URL', () => {
    expect(readPageParams('?channel=a&channel=b&channels=c,a&types=x,y&lastEventId=bogus')).toEqual({
      channels: ['a', 'b', 'c'],
      types: ['x', 'y'],
      lastEventId: 'bogus',
    });
    expect(readPageParams('')).toEqual({ channels: ['notifications', 'news'], types: [], lastEventId: undefined });
  });
});

describe('ConnectionStatus', () => {
  it.each(['connecting', 'open', 'reconnecting', 'closed'] as const)('shows %s as exactly that word, with a shape', (state) => {
    const { container } = render(<ConnectionStatus state={state} />);
    expect(screen.getByTestId('connection-status').textContent).toBe(state);
    expect(container.querySelector(`svg.status-icon-${state}`)).not.toBeNull();
  });

  it('explains an error in words', () => {
    render(<ConnectionStatus state="closed" error={new GatewayError(429, 'too_many_connections', 'per-IP limit', 5)} />);
    expect(screen.getByRole('alert')).toHaveTextContent('Too many connections');
    expect(screen.getByRole('alert')).toHaveTextContent('Try again in 5 s.');
  });
});

describe('App', () => {
  it('has one main connection-status and shows events, keyboard-reachable controls with labels', async () => {
    const fake = fakeEventSource();
    render(
      <SseProvider value={{ EventSource: fake.EventSource, baseUrl: 'http://gw.test/' }}>
        <App params={{ channels: ['news'], types: [], lastEventId: undefined }} />
      </SseProvider>,
    );
    // The feed's stream and the metrics chart's stream.
    expect(fake.instances.map((es) => es.params.getAll('channel').join())).toEqual(['news', 'metrics']);
    expect(screen.getAllByTestId('connection-status')).toHaveLength(1);
    act(() => fake.instances[0].open());
    expect(screen.getByTestId('connection-status')).toHaveTextContent('open');
    act(() => fake.instances[0].emit('message', 'hi', '1-1'));
    expect(await screen.findAllByTestId('event-item')).toHaveLength(1);
    // Every form control has a label.
    for (const input of document.querySelectorAll('input, textarea')) {
      expect(input).toHaveAccessibleName();
    }
    // Buttons are buttons.
    expect(screen.getByRole('button', { name: 'Publish' })).toBeInTheDocument();
  });
});
