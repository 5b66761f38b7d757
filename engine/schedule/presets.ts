// The schedule strings a plan may carry: a cron expression (5 fields, or 6 with seconds first) or a preset
// ('@hourly', '@daily', '@weekly', 'daily HH:MM', 'weekly mon HH:MM'), turned into one croner pattern.
import { Cron } from 'croner';

const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export class ScheduleError extends Error {}

function clock(text: string, schedule: string): { hour: number; minute: number } {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text);
  const hour = Number(match?.[1]);
  const minute = Number(match?.[2]);
  if (!match || hour > 23 || minute > 59) {
    throw new ScheduleError(
      `Schedule '${schedule}': '${text}' is not a time of day (HH:MM, 00:00 to 23:59).`,
    );
  }
  return { hour, minute };
}

/** The croner pattern for a schedule string; throws ScheduleError saying what is wrong. */
export function cronPattern(schedule: string): string {
  const text = schedule.trim().replace(/\s+/g, ' ');
  const words = text.toLowerCase().split(' ');
  if (words[0] === 'daily' && words.length === 2) {
    const { hour, minute } = clock(words[1]!, schedule);
    return `0 ${minute} ${hour} * * *`;
  }
  if (words[0] === 'weekly' && words.length === 3) {
    const day = WEEKDAYS.indexOf(words[1]!.slice(0, 3));
    if (day === -1 || !WEEKDAYS[day]!.startsWith(words[1]!.slice(0, 3)) || words[1]!.length < 3) {
      throw new ScheduleError(
        `Schedule '${schedule}': '${words[1]}' is not a day of the week (mon, tue, …).`,
      );
    }
    const { hour, minute } = clock(words[2]!, schedule);
    return `0 ${minute} ${hour} * * ${day}`;
  }
  if (words[0] === 'daily' || words[0] === 'weekly') {
    throw new ScheduleError(`Schedule '${schedule}': write 'daily HH:MM' or 'weekly mon HH:MM'.`);
  }
  try {
    new Cron(text, { paused: true });
  } catch (error) {
    throw new ScheduleError(
      `Schedule '${schedule}' is neither a preset ('@hourly', 'daily 02:30', 'weekly mon 03:00') nor a cron expression: ${(error as Error).message}`,
    );
  }
  return text;
}

/** The next time a schedule fires after `from`, or null if it never will. */
export function nextRunAfter(schedule: string, from: Date): Date | null {
  return new Cron(cronPattern(schedule), { paused: true }).nextRun(from);
}
