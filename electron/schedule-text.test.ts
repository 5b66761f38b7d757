import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextBackupText } from './schedule-text.ts';

const now = new Date('2026-11-25T23:10:00Z'); // a Wednesday
const at = (nextRun: string | null, extra: Partial<Parameters<typeof nextBackupText>[0]> = {}) =>
  nextBackupText({ nextRun, schedulesPaused: false, now, timeZone: 'UTC', ...extra });

test('a run later today is worded "today" with a 24-hour time', () => {
  assert.equal(at('2026-11-25T23:30:00Z'), 'Next backup: today 23:30');
});

test('a run after midnight is worded "tomorrow"', () => {
  assert.equal(at('2026-11-26T02:30:00Z'), 'Next backup: tomorrow 02:30');
});

test('a run within the coming week names its weekday', () => {
  assert.equal(at('2026-11-30T03:00:00Z'), 'Next backup: Monday 03:00');
});

test('a run a week or more ahead gives its date, with the year only when it differs', () => {
  assert.equal(at('2026-12-12T02:30:00Z'), 'Next backup: 12 Dec 02:30');
  assert.equal(at('2027-01-04T02:30:00Z'), 'Next backup: 4 Jan 2027 02:30');
});

test('days are counted in the given time zone, not in UTC', () => {
  // 23:10 UTC is already 08:10 the next day in Tokyo; 02:30 UTC on the 26th is 11:30 that same Tokyo day.
  assert.equal(at('2026-11-26T02:30:00Z', { timeZone: 'Asia/Tokyo' }), 'Next backup: today 11:30');
});

test('paused schedules and no schedule say so instead of a time', () => {
  assert.equal(at('2026-11-26T02:30:00Z', { schedulesPaused: true }), 'Scheduled backups paused');
  assert.equal(at(null), 'No backup scheduled');
  assert.equal(at('not a time'), 'No backup scheduled');
});

test('a run whose time has come is starting now', () => {
  assert.equal(at('2026-11-25T23:10:00Z'), 'Next backup: starting now');
});
