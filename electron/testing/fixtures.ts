// Engine data for the shell's tests: jobs and plans as the engine sends them, with only the fields a test
// cares about spelled out.
import type { Job, Plan } from '../../protocol/model.ts';

export function makeJob(fields: Partial<Job> = {}): Job {
  return {
    id: 'job-1',
    kind: 'backup',
    state: 'running',
    title: '/dev/sda',
    startedAt: '2026-11-25T23:00:00Z',
    endedAt: null,
    doneBytes: 0,
    totalBytes: 0,
    bytesPerSecond: 0,
    etaSeconds: null,
    container: null,
    units: null,
    unitSize: null,
    error: null,
    failureKind: null,
    result: null,
    ...fields,
  };
}

export function makePlan(fields: Partial<Plan> = {}): Plan {
  return {
    id: 'plan-1',
    name: 'Whole disk',
    source: '/dev/sda',
    repo: '/srv/backups',
    schedule: 'daily 02:30',
    retention: { keepDaily: 7 },
    container: { kind: 'memory', capacityBytes: 64 << 20 },
    enabled: true,
    lastRun: null,
    nextRun: null,
    ...fields,
  };
}
