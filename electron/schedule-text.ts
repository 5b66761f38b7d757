// The tray's line about the next scheduled backup ("Next backup: today 02:30"), worded relative to
// the user's clock: today, tomorrow, a weekday within the coming week, otherwise a date.

export type ScheduleTextInput = {
  /** ISO time of the engine's next scheduled run, or null when no plan has a schedule. */
  nextRun: string | null;
  schedulesPaused: boolean;
  now: Date;
  /** IANA zone to word the time in; the system's zone when absent (tests pin one). */
  timeZone?: string;
  locale?: string;
};

type CalendarDay = { year: number; month: number; day: number };

function calendarDay(time: Date, timeZone: string | undefined): CalendarDay {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
  }).formatToParts(time);
  const field = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return { year: field('year'), month: field('month'), day: field('day') };
}

/** Whole calendar days from `from` to `to` in the zone (0 = same day, 1 = tomorrow). */
function daysBetween(from: Date, to: Date, timeZone: string | undefined): number {
  const a = calendarDay(from, timeZone);
  const b = calendarDay(to, timeZone);
  return Math.round(
    (Date.UTC(b.year, b.month - 1, b.day) - Date.UTC(a.year, a.month - 1, a.day)) / 86_400_000,
  );
}

/** "02:30" in the zone, 24-hour: the same form the plans' presets use ('daily 02:30'). */
function clockTime(time: Date, timeZone: string | undefined, locale: string): string {
  return new Intl.DateTimeFormat(locale, {
    timeZone,
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).format(time);
}

/** When the next run falls, relative to now: "today 02:30", "tomorrow 02:30", "Friday 02:30", "12 Dec 02:30". */
export function relativeRunTime(run: Date, now: Date, timeZone?: string, locale = 'en-GB'): string {
  const days = daysBetween(now, run, timeZone);
  const time = clockTime(run, timeZone, locale);
  if (days <= 0) return `today ${time}`;
  if (days === 1) return `tomorrow ${time}`;
  if (days < 7) {
    const weekday = new Intl.DateTimeFormat(locale, { timeZone, weekday: 'long' }).format(run);
    return `${weekday} ${time}`;
  }
  const date = new Intl.DateTimeFormat(locale, {
    timeZone,
    day: 'numeric',
    month: 'short',
    year: calendarDay(run, timeZone).year === calendarDay(now, timeZone).year ? undefined : 'numeric',
  }).format(run);
  return `${date} ${time}`;
}

export function nextBackupText(input: ScheduleTextInput): string {
  if (input.schedulesPaused) return 'Scheduled backups paused';
  if (input.nextRun === null) return 'No backup scheduled';
  const run = new Date(input.nextRun);
  if (Number.isNaN(run.getTime())) return 'No backup scheduled';
  // A run whose time has just passed is starting now; saying "today" would suggest it is still ahead.
  if (run.getTime() <= input.now.getTime()) return 'Next backup: starting now';
  return `Next backup: ${relativeRunTime(run, input.now, input.timeZone, input.locale)}`;
}
