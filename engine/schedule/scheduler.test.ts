import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventData } from '../../protocol/messages.ts';
import type { Plan } from '../../protocol/model.ts';
import { Engine } from '../api/engine.ts';
import { ControlledWork, controlledRunners } from '../api/test-daemon.ts';
import { StateStore } from '../config/state.ts';
import { cronPattern, nextRunAfter } from './presets.ts';

let dir: string;
let engine: Engine | null = null;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-schedule-'));
  await writeFile(join(dir, 'disk.img'), Buffer.alloc(4096));
  await mkdir(join(dir, 'repo'));
});

afterEach(async () => {
  await engine?.stop();
  engine = null;
  await rm(dir, { recursive: true, force: true });
});

function draft(schedule: string): Omit<Plan, 'lastRun' | 'nextRun'> {
  return {
    id: '',
    name: 'Every second',
    source: join(dir, 'disk.img'),
    repo: join(dir, 'repo'),
    schedule,
    retention: {},
    container: { kind: 'memory', capacityBytes: 1 << 20 },
    enabled: true,
  };
}

async function startEngine(work: ControlledWork): Promise<Engine> {
  engine = new Engine({ state: await StateStore.open(join(dir, 'state')), runners: controlledRunners(work) });
  await engine.start();
  return engine;
}

test('presets and cron expressions become croner patterns; bad ones say what is wrong', () => {
  assert.equal(cronPattern('daily 02:30'), '0 30 2 * * *');
  assert.equal(cronPattern('weekly mon 03:00'), '0 0 3 * * 1');
  assert.equal(cronPattern('Weekly Sunday 23:59'), '0 59 23 * * 0');
  assert.equal(cronPattern('@hourly'), '@hourly');
  assert.equal(cronPattern('*/5 * * * * *'), '*/5 * * * * *');
  assert.throws(() => cronPattern('daily 24:00'), /'24:00' is not a time of day/);
  assert.throws(() => cronPattern('weekly moonday 03:00'), /'moonday' is not a day of the week/);
  assert.throws(() => cronPattern('daily'), /write 'daily HH:MM' or 'weekly mon HH:MM'/);
  assert.throws(() => cronPattern('every tuesday'), /is neither a preset/);
  const from = new Date('2026-03-02T10:00:00');
  assert.equal(nextRunAfter('daily 02:30', from)?.getTime(), new Date('2026-03-03T02:30:00').getTime());
  assert.equal(nextRunAfter('weekly mon 03:00', from)?.getTime(), new Date('2026-03-09T03:00:00').getTime());
});

test('a schedule with seconds fires within seconds and raises plan.ran', async () => {
  const work = new ControlledWork();
  work.release();
  const started = await startEngine(work);
  const ran = new Promise<EventData<'plan.ran'>>((resolve) =>
    started.events.subscribe((event, data) => event === 'plan.ran' && resolve(data as EventData<'plan.ran'>)),
  );
  const plan = await started.scheduler.save(draft('* * * * * *'));
  assert.ok(plan.nextRun && Date.parse(plan.nextRun) - Date.now() <= 1000);
  const outcome = await Promise.race([ran, sleep(4000).then(() => null)]);
  assert.ok(outcome, 'plan.ran within 4 s');
  assert.equal(outcome.planId, plan.id);
  assert.equal(outcome.ok, true);
  assert.equal(outcome.message, 'Backup succeeded.');
  assert.equal(started.scheduler.list()[0]!.lastRun?.ok, true);
});

test('runs of one plan never overlap: a run due while the last still runs is skipped and said so', async () => {
  const work = new ControlledWork();
  const started = await startEngine(work);
  const outcomes: EventData<'plan.ran'>[] = [];
  started.events.subscribe(
    (event, data) => event === 'plan.ran' && outcomes.push(data as EventData<'plan.ran'>),
  );
  await started.scheduler.save(draft('* * * * * *'));
  await sleep(2600);
  assert.equal(work.started, 1, 'one backup ran');
  assert.ok(outcomes.length >= 1);
  assert.ok(
    outcomes.every(
      (outcome) => outcome.message === 'Skipped: the previous run of this plan had not finished.',
    ),
  );
  work.release();
});

test('a run missed while the engine was stopped runs at the next start', async () => {
  const state = await StateStore.open(join(dir, 'state'));
  const missed: Plan = {
    ...draft('daily 02:30'),
    id: 'plan-missed',
    lastRun: null,
    nextRun: new Date(Date.now() - 3600_000).toISOString(),
  };
  state.plans.push(missed);
  await state.savePlans();
  const work = new ControlledWork();
  work.release();
  engine = new Engine({ state: await StateStore.open(join(dir, 'state')), runners: controlledRunners(work) });
  const ran = new Promise<EventData<'plan.ran'>>((resolve) =>
    engine!.events.subscribe((event, data) => event === 'plan.ran' && resolve(data as EventData<'plan.ran'>)),
  );
  await engine.start();
  const outcome = await Promise.race([ran, sleep(3000).then(() => null)]);
  assert.ok(outcome, 'the missed run ran at start');
  assert.equal(outcome.planId, 'plan-missed');
  assert.equal(outcome.message, 'Backup succeeded. (run missed while the engine was stopped)');
  const after = engine.scheduler.list()[0]!;
  assert.ok(after.nextRun && Date.parse(after.nextRun) > Date.now(), 'the next run moved to the future');
});

test('paused schedules do not fire and report no next run', async () => {
  const work = new ControlledWork();
  work.release();
  const started = await startEngine(work);
  await started.scheduler.setPaused(true);
  await started.scheduler.save(draft('* * * * * *'));
  assert.equal(started.scheduler.nextRun(), null);
  await sleep(1500);
  assert.equal(work.started, 0);
});
