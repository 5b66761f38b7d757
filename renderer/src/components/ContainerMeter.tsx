// The intermediate container as a meter: bytes held versus capacity, the high and low watermarks, and whether
// writers are being throttled or suspended. Updated in place from a store subscription.
import { useRef } from 'react';
import { formatBytes } from '../format/units.ts';
import { useStoreEffect } from './use-store-effect.ts';

const pressureText = {
  normal: 'Writers pass freely',
  throttled: 'Above the high watermark: writers are slowed',
  suspended: 'Full: writers wait until the copier drains it below the low watermark',
} as const;

export function ContainerMeter({ jobId }: { jobId: string }) {
  const meterRef = useRef<HTMLDivElement>(null);
  const fillRef = useRef<HTMLDivElement>(null);
  const highRef = useRef<HTMLDivElement>(null);
  const lowRef = useRef<HTMLDivElement>(null);
  const textRef = useRef<HTMLSpanElement>(null);
  const stateRef = useRef<HTMLSpanElement>(null);
  const marksRef = useRef<HTMLSpanElement>(null);

  useStoreEffect(
    (s) => s.jobs[jobId]?.container ?? null,
    (container) => {
      const meter = meterRef.current;
      if (!meter) return;
      const capacity = container?.capacityBytes ?? 1;
      const used = container?.usedBytes ?? 0;
      meter.setAttribute('aria-valuemax', String(capacity));
      meter.setAttribute('aria-valuenow', String(used));
      meter.setAttribute('aria-valuetext', `${formatBytes(used)} of ${formatBytes(capacity)}`);
      meter.dataset.pressure = container?.pressure ?? 'normal';
      const at = (bytes: number) => `${Math.min(100, (bytes / capacity) * 100)}%`;
      if (fillRef.current) fillRef.current.style.width = at(used);
      if (highRef.current) highRef.current.style.left = at(container?.highWatermark ?? capacity);
      if (lowRef.current) lowRef.current.style.left = at(container?.lowWatermark ?? 0);
      if (textRef.current)
        textRef.current.textContent = container
          ? `${formatBytes(used)} of ${formatBytes(capacity)}`
          : 'No container for this job';
      if (marksRef.current)
        marksRef.current.textContent = container
          ? `watermarks: low ${formatBytes(container.lowWatermark)} · high ${formatBytes(container.highWatermark)}`
          : '';
      if (stateRef.current) {
        const pressure = container?.pressure ?? 'normal';
        stateRef.current.textContent = pressureText[pressure];
        stateRef.current.className = `pressure pressure-${pressure}`;
      }
    },
    [jobId],
  );

  return (
    <div className="container-meter">
      {/* biome-ignore lint/a11y/useSemanticElements: <meter> cannot draw the watermarks inside it. */}
      <div
        ref={meterRef}
        className="meter"
        role="meter"
        aria-label="Intermediate container"
        aria-valuemin={0}
        aria-valuemax={1}
        aria-valuenow={0}
      >
        <div ref={fillRef} className="meter-fill" />
        <div ref={lowRef} className="watermark low" title="Low watermark" />
        <div ref={highRef} className="watermark high" title="High watermark" />
      </div>
      <div className="meter-caption">
        <span ref={textRef} />
        <span ref={stateRef} className="pressure" />
      </div>
      <span ref={marksRef} className="muted small" />
    </div>
  );
}
