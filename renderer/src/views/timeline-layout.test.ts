import { describe, expect, it } from 'vitest';
import { makePoint } from '../testing/fake-engine.ts';
import { layoutTimeline, MAX_LANES, pixelsPerHour, zoomToFit } from './timeline-layout.ts';

const now = Date.parse('2026-11-25T12:00:00Z');
const hour = 3_600_000;

describe('timeline layout', () => {
  it('places points by time and puts points too close together in separate lanes', () => {
    const points = [
      makePoint({ id: 'a', time: new Date(now - 10 * hour).toISOString() }),
      makePoint({ id: 'b', time: new Date(now - 10 * hour + 60_000).toISOString() }),
      makePoint({ id: 'c', time: new Date(now - 2 * hour).toISOString() }),
    ];
    const layout = layoutTimeline(points, 'days', now, 800);
    const [a, b, c] = layout.markers;
    expect(c!.x - a!.x).toBeCloseTo(8 * pixelsPerHour.days, 5);
    expect(a!.lane).toBe(0);
    expect(b!.lane).toBe(1);
    expect(c!.lane).toBe(0);
    expect(layout.lanes).toBe(2);
    expect(layout.width).toBeGreaterThanOrEqual(800);
  });

  it('lets very dense points overlap rather than grow past the lane limit', () => {
    const points = Array.from({ length: 12 }, (_, i) =>
      makePoint({ id: `p${i}`, time: new Date(now - 10 * hour + i * 1000).toISOString() }),
    );
    const layout = layoutTimeline(points, 'days', now, 800);
    expect(layout.lanes).toBe(MAX_LANES);
    expect(Math.max(...layout.markers.map((m) => m.lane))).toBe(MAX_LANES - 1);
  });

  it('labels the axis in the unit of the zoom level', () => {
    const points = [makePoint({ time: new Date(now - 3 * 365 * 24 * hour).toISOString() })];
    const years = layoutTimeline(points, 'years', now, 400);
    expect(years.ticks.map((t) => t.label).filter(Boolean)).toEqual(['2024', '2025', '2026', '2027']);
  });

  it('opens at the closest zoom that shows every point', () => {
    const recent = [makePoint({ time: new Date(now - 3 * hour).toISOString() })];
    expect(zoomToFit(recent, now, 1000)).toBe('hours');
    const quarter = [makePoint({ time: new Date(now - 90 * 24 * hour).toISOString() })];
    expect(zoomToFit(quarter, now, 1000)).toBe('months');
    expect(zoomToFit([], now, 1000)).toBe('days');
  });
});
