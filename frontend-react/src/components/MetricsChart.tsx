import { useState } from 'react';
import type { AppEvents } from '../gateway';
import { useEventSource } from '../sse/react';
import { ConnectionStatus } from './ConnectionStatus';

interface Point {
  cpu: number;
  mem: number;
}

const W = 320;
const H = 140;
const PAD = { left: 36, right: 8, top: 10, bottom: 18 };

function line(points: Point[], pick: (p: Point) => number, max: number): string {
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const step = max > 1 ? innerW / (max - 1) : innerW;
  const offset = max - points.length; // newest at the right edge
  return points
    .map((p, i) => {
      const v = Math.min(100, Math.max(0, pick(p)));
      return `${(PAD.left + (offset + i) * step).toFixed(1)},${(PAD.top + innerH * (1 - v / 100)).toFixed(1)}`;
    })
    .join(' ');
}

/**
 * The `metrics` channel (the reference upstream's host metrics, one event a second) as an inline
 * SVG chart of CPU and memory use: its own stream, the last `maxPoints` samples.
 */
export function MetricsChart({ maxPoints = 60, channel = 'metrics' }: { maxPoints?: number; channel?: string }) {
  const [enabled, setEnabled] = useState(true);
  const [points, setPoints] = useState<Point[]>([]);
  const stream = useEventSource<AppEvents>({
    channels: [channel],
    types: ['metrics'],
    enabled,
    on: {
      metrics: (e) => {
        const m = e.json;
        if (!m || typeof m.cpu_percent !== 'number') return;
        const point = { cpu: m.cpu_percent, mem: m.memory?.used_percent ?? 0 };
        setPoints((p) => (p.length >= maxPoints ? [...p.slice(p.length - maxPoints + 1), point] : [...p, point]));
      },
    },
  });
  const last = points[points.length - 1];
  const summary = last
    ? `CPU ${last.cpu.toFixed(1)}%, memory ${last.mem.toFixed(1)}% used, over the last ${points.length} seconds.`
    : 'No host metrics received yet.';
  const innerBottom = H - PAD.bottom;
  const y = (v: number) => PAD.top + (innerBottom - PAD.top) * (1 - v / 100);

  return (
    <div className="metrics">
      <h3 id="metrics-title">Host metrics (channel {channel})</h3>
      <label className="check">
        <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />
        Stream host metrics
      </label>
      <ConnectionStatus
        state={stream.state}
        attempts={stream.attempts}
        nextRetryAt={stream.nextRetryAt}
        error={stream.error}
        testId="metrics-connection-status"
        label="Metrics stream"
      />
      <svg className="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby="metrics-title metrics-summary">
        {[0, 50, 100].map((v) => (
          <g key={v} className="grid">
            <line x1={PAD.left} x2={W - PAD.right} y1={y(v)} y2={y(v)} />
            <text x={PAD.left - 4} y={y(v) + 4} textAnchor="end">
              {v}%
            </text>
          </g>
        ))}
        <text x={W - PAD.right} y={H - 4} textAnchor="end" className="axis-note">
          now
        </text>
        <text x={PAD.left} y={H - 4} className="axis-note">
          −{maxPoints} s
        </text>
        {points.length > 0 && (
          <>
            <polyline className="series series-cpu" points={line(points, (p) => p.cpu, maxPoints)} />
            <polyline className="series series-mem" points={line(points, (p) => p.mem, maxPoints)} />
          </>
        )}
      </svg>
      <p id="metrics-summary" className="legend">
        <span className="legend-item">
          <svg width="24" height="8" aria-hidden="true">
            <line x1="0" x2="24" y1="4" y2="4" className="series series-cpu" />
          </svg>{' '}
          CPU {last ? `${last.cpu.toFixed(1)}%` : '–'}
        </span>
        <span className="legend-item">
          <svg width="24" height="8" aria-hidden="true">
            <line x1="0" x2="24" y1="4" y2="4" className="series series-mem" />
          </svg>{' '}
          Memory {last ? `${last.mem.toFixed(1)}%` : '–'}
        </span>
        <span className="visually-hidden">{summary}</span>
      </p>
    </div>
  );
}
