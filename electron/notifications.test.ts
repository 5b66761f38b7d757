import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Notifier } from './notifications.ts';
import { makeJob } from './testing/fixtures.ts';

test('a backup seen running and then succeeding is announced once, with its size', () => {
  const notifier = new Notifier();
  assert.equal(notifier.jobUpdated(makeJob({ state: 'running' })), null);
  assert.deepEqual(notifier.jobUpdated(makeJob({ state: 'succeeded', totalBytes: 2_000_000_000 })), {
    title: 'Backup finished',
    body: '/dev/sda (2.0 GB)',
    urgent: false,
  });
  assert.equal(notifier.jobUpdated(makeJob({ state: 'succeeded' })), null);
});

test('a job never seen running is not announced (reconnects replay old outcomes)', () => {
  assert.equal(new Notifier().jobUpdated(makeJob({ state: 'failed' })), null);
});

test('failures say what failed and why', () => {
  const notifier = new Notifier();
  notifier.jobUpdated(makeJob({ kind: 'verify', title: 'repository /srv/r', state: 'running' }));
  assert.deepEqual(
    notifier.jobUpdated(
      makeJob({ kind: 'verify', title: 'repository /srv/r', state: 'failed', error: '3 chunks damaged' }),
    ),
    { title: 'Verification failed', body: 'repository /srv/r failed: 3 chunks damaged', urgent: true },
  );
  notifier.jobUpdated(makeJob({ id: 'b', state: 'running' }));
  assert.deepEqual(notifier.jobUpdated(makeJob({ id: 'b', state: 'interrupted', error: null })), {
    title: 'Backup failed',
    body: '/dev/sda was interrupted: no detail given',
    urgent: true,
  });
});

test('cancelled jobs and mounts are not announced', () => {
  const notifier = new Notifier();
  notifier.jobUpdated(makeJob({ state: 'running' }));
  assert.equal(notifier.jobUpdated(makeJob({ state: 'cancelled' })), null);
  notifier.jobUpdated(makeJob({ id: 'm', kind: 'mount', state: 'running' }));
  assert.equal(notifier.jobUpdated(makeJob({ id: 'm', kind: 'mount', state: 'succeeded' })), null);
});

test('a failed plan run is announced unless its job failure just was', () => {
  const ran = { planId: 'p', name: 'Whole disk', time: '2026-11-25T02:30:00Z' };
  const notifier = new Notifier();
  assert.deepEqual(notifier.planRan({ ...ran, ok: false, message: 'source /dev/sdb is missing' }, 1000), {
    title: 'Scheduled backup failed',
    body: 'Whole disk: source /dev/sdb is missing',
    urgent: true,
  });
  assert.equal(notifier.planRan({ ...ran, ok: true, message: 'done' }, 2000), null);
  notifier.jobUpdated(makeJob({ state: 'running' }), 3000);
  notifier.jobUpdated(makeJob({ state: 'failed', error: 'disk full' }), 4000);
  assert.equal(notifier.planRan({ ...ran, ok: false, message: 'disk full' }, 5000), null);
  assert.notEqual(notifier.planRan({ ...ran, ok: false, message: 'disk full' }, 4000 + 61_000), null);
});
