// Where restore points sit on the timeline at a zoom level: x in pixels, a lane so markers close in time do not
// overlap, and the axis ticks (hours, days, weeks, months or years) with their labels.
import type { PointSummary } from '../../../protocol/model.ts';
import type { ZoomLevel } from '../store/points-slice.ts';

const hour = 3_600_000;
const day = 24 * hour;

/** Pixels per hour at each zoom level. */
export const pixelsPerHour: Record<ZoomLevel, number> = {
  hours: 96,
  days: 6,
  weeks: 1.2,
  months: 0.22,
  years: 0.022,
};

export interface TimelineLayout {
  start: number;
  width: number;
  lanes: number;
  markers: { id: string; x: number; lane: number }[];
  ticks: { x: number; label: string; major: boolean }[];
}

const markerSpacing = 22;
/** Beyond this many lanes dense points overlap instead of making the track tall; zooming in separates them. */
export const MAX_LANES = 4;

function tickStep(zoom: ZoomLevel): { next(t: Date): Date; label(t: Date): string; major(t: Date): boolean } {
  const floorTo = (t: Date, unit: 'hour' | 'day' | 'month' | 'year') => {
    const d = new Date(t);
    d.setMinutes(0, 0, 0);
    if (unit !== 'hour') d.setHours(0);
    if (unit === 'month' || unit === 'year') d.setDate(1);
    if (unit === 'year') d.setMonth(0);
    return d;
  };
  switch (zoom) {
    case 'hours':
      return {
        next: (t) => new Date(floorTo(t, 'hour').getTime() + hour),
        label: (t) =>
          t.getHours() === 0
            ? t.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
            : `${String(t.getHours()).padStart(2, '0')}:00`,
        major: (t) => t.getHours() === 0,
      };
    case 'days':
    case 'weeks':
      return {
        next: (t) => {
          const d = floorTo(t, 'day');
          d.setDate(d.getDate() + (zoom === 'weeks' ? 7 - ((d.getDay() + 6) % 7) : 1));
          return d;
        },
        label: (t) => t.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }),
        major: (t) => t.getDate() <= (zoom === 'weeks' ? 7 : 1),
      };
    case 'months':
      return {
        next: (t) => {
          const d = floorTo(t, 'month');
          d.setMonth(d.getMonth() + 1);
          return d;
        },
        label: (t) =>
          t.toLocaleDateString(undefined, {
            month: 'short',
            year: t.getMonth() === 0 ? 'numeric' : undefined,
          }),
        major: (t) => t.getMonth() === 0,
      };
    case 'years':
      return {
        next: (t) => {
          const d = floorTo(t, 'year');
          d.setFullYear(d.getFullYear() + 1);
          return d;
        },
        label: (t) => String(t.getFullYear()),
        major: () => true,
      };
  }
}

export function layoutTimeline(
  points: PointSummary[],
  zoom: ZoomLevel,
  now: number,
  minWidth: number,
): TimelineLayout {
  const pph = pixelsPerHour[zoom];
  const times = points.map((p) => new Date(p.time).getTime()).filter(Number.isFinite);
  const padding = (60 / pph) * hour;
  const earliest = times.length ? Math.min(...times) : now - day;
  const latest = Math.max(now, ...times);
  let start = earliest - padding;
  const end = latest + padding;
  const minSpan = (minWidth / pph) * hour;
  if (end - start < minSpan) start = end - minSpan;
  const toX = (t: number) => ((t - start) / hour) * pph;
  const width = Math.ceil(toX(end));

  const laneEnds: number[] = [];
  const markers = points.map((point) => {
    const x = toX(new Date(point.time).getTime());
    let lane = laneEnds.findIndex((lastX) => x - lastX >= markerSpacing);
    if (lane === -1 && laneEnds.length < MAX_LANES) {
      lane = laneEnds.length;
      laneEnds.push(x);
    } else {
      if (lane === -1) lane = laneEnds.indexOf(Math.min(...laneEnds));
      laneEnds[lane] = x;
    }
    return { id: point.id, x, lane };
  });

  const step = tickStep(zoom);
  const ticks: TimelineLayout['ticks'] = [];
  let lastLabelX = Number.NEGATIVE_INFINITY;
  for (let t = step.next(new Date(start)); t.getTime() < end && ticks.length < 2000; t = step.next(t)) {
    const x = toX(t.getTime());
    const major = step.major(t);
    const labelled = x - lastLabelX > 56;
    if (labelled) lastLabelX = x;
    ticks.push({ x, label: labelled ? step.label(t) : '', major });
  }
  return { start, width, lanes: Math.max(1, laneEnds.length), markers, ticks };
}

/** The closest zoom at which every point fits in `width` pixels (the timeline opens at it). */
export function zoomToFit(points: PointSummary[], now: number, width: number): ZoomLevel {
  const times = points.map((p) => new Date(p.time).getTime()).filter(Number.isFinite);
  if (times.length === 0) return 'days';
  const spanHours = (Math.max(now, ...times) - Math.min(...times)) / hour;
  const levels = Object.keys(pixelsPerHour) as ZoomLevel[];
  return levels.find((level) => spanHours * pixelsPerHour[level] <= width - 160) ?? 'years';
}
