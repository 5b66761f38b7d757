// Throughput over the job's life as an area chart in a canvas, redrawn from a store subscription.
import { useEffect, useRef } from 'react';
import { formatRate } from '../format/units.ts';
import type { ThroughputSample } from '../store/jobs-slice.ts';
import { useStoreEffect } from './use-store-effect.ts';

export function ThroughputChart({ jobId }: { jobId: string }) {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const peakRef = useRef<HTMLSpanElement>(null);
  const latest = useRef<ThroughputSample[] | undefined>(undefined);
  const scheduled = useRef(0);
  const colours = useRef<{ grid: string; accent: string; at: number } | null>(null);

  // Many updates a second arrive; draw at most once per animation frame.
  function schedule(samples: ThroughputSample[] | undefined): void {
    latest.current = samples;
    if (!scheduled.current)
      scheduled.current = requestAnimationFrame(() => {
        scheduled.current = 0;
        draw(latest.current);
      });
  }

  useEffect(() => () => cancelAnimationFrame(scheduled.current), []);

  function draw(samples: ThroughputSample[] | undefined): void {
    const canvas = canvasRef.current;
    const points = samples ?? [];
    const peak = points.reduce((max, s) => Math.max(max, s.bytesPerSecond), 0);
    if (peakRef.current) peakRef.current.textContent = peak > 0 ? `peak ${formatRate(peak)}` : '';
    const context = canvas?.getContext('2d');
    if (!canvas || !context) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.floor(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.floor(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    context.clearRect(0, 0, width, height);
    const now = performance.now();
    if (!colours.current || now - colours.current.at > 1000) {
      const style = getComputedStyle(canvas);
      colours.current = {
        grid: style.getPropertyValue('--border').trim() || '#ccc',
        accent: style.getPropertyValue('--accent').trim() || '#3b82f6',
        at: now,
      };
    }
    const { grid, accent } = colours.current;
    context.strokeStyle = grid;
    context.lineWidth = ratio;
    for (let i = 1; i < 4; i++) {
      const y = Math.round((height * i) / 4) + 0.5;
      context.beginPath();
      context.moveTo(0, y);
      context.lineTo(width, y);
      context.stroke();
    }
    if (points.length < 2 || peak <= 0) return;
    const first = points[0]!.at;
    const span = Math.max(1, points[points.length - 1]!.at - first);
    const x = (s: ThroughputSample) => ((s.at - first) / span) * width;
    const y = (s: ThroughputSample) => height - (s.bytesPerSecond / (peak * 1.1)) * height;
    context.beginPath();
    context.moveTo(0, height);
    for (const s of points) context.lineTo(x(s), y(s));
    context.lineTo(width, height);
    context.closePath();
    context.globalAlpha = 0.18;
    context.fillStyle = accent;
    context.fill();
    context.globalAlpha = 1;
    context.beginPath();
    context.moveTo(x(points[0]!), y(points[0]!));
    for (const s of points) context.lineTo(x(s), y(s));
    context.strokeStyle = accent;
    context.lineWidth = 1.6 * ratio;
    context.stroke();
  }

  useStoreEffect((s) => s.throughput[jobId], schedule, [jobId]);

  return (
    <figure className="throughput">
      <canvas ref={canvasRef} role="img" aria-label="Throughput over time" />
      <figcaption>
        Throughput <span ref={peakRef} className="muted" />
      </figcaption>
    </figure>
  );
}
