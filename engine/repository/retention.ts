// Which restore points a retention policy keeps: the newest N, and the newest point of each of the last N
// hours, days, ISO weeks, months and years that have points (times in UTC). Pure: no storage involved.
import type { Retention } from '../../protocol/model.ts';

export interface Dated {
  id: string;
  time: string;
}

function isoWeek(date: Date): string {
  const day = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const weekday = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(day.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((day.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

const buckets: [keyof Retention, string, (time: string) => string][] = [
  ['keepHourly', 'hourly', (t) => t.slice(0, 13)],
  ['keepDaily', 'daily', (t) => t.slice(0, 10)],
  ['keepWeekly', 'weekly', (t) => isoWeek(new Date(t))],
  ['keepMonthly', 'monthly', (t) => t.slice(0, 7)],
  ['keepYearly', 'yearly', (t) => t.slice(0, 4)],
];

export function policyIsEmpty(policy: Retention): boolean {
  return Object.values(policy).every((n) => n === undefined);
}

/** id → the reasons it is kept; points not in the map are to be forgotten. */
export function applyRetention(points: readonly Dated[], policy: Retention): Map<string, string[]> {
  const newestFirst = [...points].sort((a, b) => b.time.localeCompare(a.time) || b.id.localeCompare(a.id));
  const keep = new Map<string, string[]>();
  const add = (id: string, reason: string) => {
    keep.set(id, [...(keep.get(id) ?? []), reason]);
  };
  for (const point of newestFirst.slice(0, policy.keepLast ?? 0)) add(point.id, 'last');
  for (const [field, name, bucketOf] of buckets) {
    const wanted = policy[field] ?? 0;
    let lastBucket: string | null = null;
    let taken = 0;
    for (const point of newestFirst) {
      if (taken >= wanted) break;
      const bucket = bucketOf(point.time);
      if (bucket === lastBucket) continue;
      lastBucket = bucket;
      taken += 1;
      add(point.id, name);
    }
  }
  return keep;
}
