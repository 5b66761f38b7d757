import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import type { EventData } from '../../protocol/messages.ts';
import type { Plan } from '../../protocol/model.ts';
import { ManualClock } from '../../protocol/testing/manual-clock.ts';
import { Engine } from '../api/engine.ts';
import { ControlledWork, controlledRunners } from '../api/testing/daemon.ts';
import { StateStore } from '../config/state.ts';
import { cronPattern, nextRunAfter } from './presets.ts';

let dir: string;
let engine: Engine | null = null;
/** The schedules' time: the tests move it, so a run due in a second comes without a second passing. */
let clock: ManualClock;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-schedule-'));
  clock = new ManualClock();
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
  engine = new Engine({
    state: await StateStore.open(join(dir, 'state')),
    runners: controlledRunners(work),
    clock,
  });
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

/** The plan.ran events of an engine, and a way to wait for the next one. */
function planOutcomes(of: Engine) {
  const outcomes: EventData<'plan.ran'>[] = [];
  let waiters: (() => void)[] = [];
  of.events.subscribe((event, data) => {
    if (event !== 'plan.ran') return;
    outcomes.push(data as EventData<'plan.ran'>);
    for (const wake of waiters) wake();
    waiters = [];
  });
  const until = async (count: number) => {
    while (outcomes.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    return outcomes[count - 1]!;
  };
  return { outcomes, until };
}

test('a schedule with seconds fires when its second comes and raises plan.ran', async () => {
  const work = new ControlledWork();
  work.release();
  const started = await startEngine(work);
  const { until } = planOutcomes(started);
  const plan = await started.scheduler.save(draft('* * * * * *'));
  assert.equal(plan.nextRun, new Date(clock.now() + 1000).toISOString());
  await clock.advance(999);
  assert.equal(work.started, 0, 'not before its time');
  await clock.advance(1);
  const outcome = await until(1);
  assert.equal(outcome.planId, plan.id);
  assert.equal(outcome.ok, true);
  assert.equal(outcome.message, 'Backup succeeded.');
  assert.equal(outcome.time, new Date(clock.now()).toISOString());
  assert.equal(started.scheduler.list()[0]!.lastRun?.ok, true);
  assert.equal(started.scheduler.list()[0]!.nextRun, new Date(clock.now() + 1000).toISOString());
});

test('runs of one plan never overlap: a run due while the last still runs is skipped and said so', async () => {
  const work = new ControlledWork();
  const started = await startEngine(work);
  const { outcomes, until } = planOutcomes(started);
  await started.scheduler.save(draft('* * * * * *'));
  await clock.advance(1000);
  await work.untilSteps(1);
  await clock.advance(2000);
  await until(2);
  assert.equal(work.started, 1, 'one backup ran');
  assert.deepEqual(
    outcomes.map((outcome) => outcome.message),
    [
      'Skipped: the previous run of this plan had not finished.',
      'Skipped: the previous run of this plan had not finished.',
    ],
  );
  work.release();
  assert.equal((await until(3)).message, 'Backup succeeded.');
});

test('a run missed while the engine was stopped runs at the next start', async () => {
  const state = await StateStore.open(join(dir, 'state'));
  const missed: Plan = {
    ...draft('daily 02:30'),
    id: 'plan-missed',
    lastRun: null,
    nextRun: new Date(clock.now() - 3600_000).toISOString(),
  };
  state.plans.push(missed);
  await state.savePlans();
  const work = new ControlledWork();
  work.release();
  engine = new Engine({
    state: await StateStore.open(join(dir, 'state')),
    runners: controlledRunners(work),
    clock,
  });
  const { until } = planOutcomes(engine);
  await engine.start();
  const outcome = await until(1);
  assert.equal(outcome.planId, 'plan-missed');
  assert.equal(outcome.message, 'Backup succeeded. (run missed while the engine was stopped)');
  const after = engine.scheduler.list()[0]!;
  assert.equal(after.nextRun, nextRunAfter('daily 02:30', new Date(clock.now()))!.toISOString());
  assert.ok(Date.parse(after.nextRun!) > clock.now(), 'the next run moved to the future');
});

test('a run whose timer came late (the machine slept) is taken over by the watchdog', async () => {
  const work = new ControlledWork();
  work.release();
  const started = await startEngine(work);
  const { until } = planOutcomes(started);
  const plan = await started.scheduler.save(draft('daily 02:30'));
  // As after a suspend: the persisted next run has long passed, and its timer has not fired.
  started.state.plans.find((p) => p.id === plan.id)!.nextRun = new Date(clock.now() - 60_000).toISOString();
  await clock.advance(15_000);
  const outcome = await until(1);
  assert.equal(outcome.planId, plan.id);
  assert.equal(outcome.ok, true);
});

test('paused schedules do not fire and report no next run', async () => {
  const work = new ControlledWork();
  work.release();
  const started = await startEngine(work);
  await started.scheduler.setPaused(true);
  await started.scheduler.save(draft('* * * * * *'));
  assert.equal(started.scheduler.nextRun(), null);
  await clock.advance(60_000);
  assert.equal(work.started, 0);
});
