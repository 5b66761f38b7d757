// The job manager's pace: progress events at most one per PROGRESS_INTERVAL_MS with a trailing one, and a rate
// measured on the clock it is given (driven here, so no figure depends on how busy the machine is).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import type { Job } from '../../protocol/model.ts';
import { ManualClock } from '../../protocol/testing/manual-clock.ts';
import { StateStore } from '../config/state.ts';
import { EventBus } from './events.ts';
import { type JobContext, JobManager, PROGRESS_INTERVAL_MS } from './manager.ts';

let dir: string;
let state: StateStore | null = null;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-jobs-'));
});
afterEach(async () => {
  // Job records are saved in the background: let the last save land before the directory goes.
  await state?.flush();
  state = null;
  await rm(dir, { recursive: true, force: true });
});

/** A manager on a manual clock, a job whose body the test steps through, and the job's events. */
async function harness() {
  const clock = new ManualClock();
  const events = new EventBus();
  const updates: Job[] = [];
  events.subscribe((event, data) => event === 'job.updated' && updates.push(data as Job));
  state = await StateStore.open(join(dir, 'state'));
  const manager = new JobManager(state, events, clock);
  let context!: JobContext;
  let finish!: () => void;
  const entered = new Promise<void>((resolve) => {
    manager.start({
      kind: 'verify',
      title: 'paced',
      repo: null,
      run: (given) => {
        context = given;
        resolve();
        return new Promise((done) => (finish = () => done({ ok: true })));
      },
    });
  });
  await entered;
  const running = () => updates.filter((update) => update.state === 'running');
  return { clock, manager, updates, running, context, finish: () => finish() };
}

test('progress is sent at most once per interval, and the last report before a pause is not lost', async () => {
  const { clock, running, context, finish, manager, updates } = await harness();
  assert.equal(running().length, 1, 'the start is sent at once');
  for (let done = 1; done <= 50; done++) context.progress({ doneBytes: done, totalBytes: 100 });
  assert.equal(running().length, 1, 'fifty reports at one instant send nothing more yet');
  await clock.advance(PROGRESS_INTERVAL_MS - 1);
  assert.equal(running().length, 1);
  await clock.advance(1);
  assert.equal(running().length, 2, 'one trailing event at the end of the interval');
  assert.equal(running().at(-1)!.doneBytes, 50, 'carrying the latest figures');
  // Ten seconds of a report every 10 ms: at most one event per 100 ms (plus the trailing one).
  for (let step = 0; step < 1000; step++) {
    context.progress({ doneBytes: 50 + step * 0.05, totalBytes: 100 });
    await clock.advance(10);
  }
  const sent = running().length - 2;
  assert.ok(sent >= 99 && sent <= 101, `${sent} events in 10 s`);
  finish();
  const ended = await manager.waitFor(updates[0]!.id);
  assert.equal(ended.state, 'succeeded');
  assert.equal(clock.pending, 0, 'no timer outlives the job');
});

test('the rate and the estimate follow the clock', async () => {
  const { clock, context, finish, manager, updates } = await harness();
  await clock.advance(1000);
  context.progress({ doneBytes: 1000, totalBytes: 11_000 });
  assert.equal(manager.get(updates[0]!.id)!.bytesPerSecond, 1000, 'the first second: 1000 B');
  assert.equal(manager.get(updates[0]!.id)!.etaSeconds, 10);
  await clock.advance(1000);
  context.progress({ doneBytes: 3000, totalBytes: 11_000 });
  assert.equal(
    manager.get(updates[0]!.id)!.bytesPerSecond,
    2000,
    'the rate of the last second, not the average',
  );
  assert.equal(manager.get(updates[0]!.id)!.etaSeconds, 4);
  finish();
  await manager.waitFor(updates[0]!.id);
});
