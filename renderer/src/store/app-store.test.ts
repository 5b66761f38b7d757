import { describe, expect, it } from 'vitest';
import { CellState } from '../../../protocol/messages.ts';
import { FakeEngine, makeJob, makePoint } from '../testing/fake-engine.ts';
import { createAppStore, messageOf } from './app-store.ts';
import { bindEngine } from './bind-engine.ts';

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

function base64(bytes: number[]): string {
  return btoa(String.fromCharCode(...bytes));
}

describe('points slice', () => {
  it('loads the current repository’s points oldest first', async () => {
    const engine = new FakeEngine().handle('points.list', () => [
      makePoint({ id: 'late', time: '2026-11-21T00:00:00Z' }),
      makePoint({ id: 'early', time: '2026-11-01T00:00:00Z' }),
    ]);
    const store = createAppStore(engine);
    store.getState().setCurrentRepo('/backups/r');
    await flush();
    expect(store.getState().points.map((p) => p.id)).toEqual(['early', 'late']);
    expect(engine.callsOf('points.list')).toEqual([{ repo: '/backups/r' }]);
  });

  it('says which repository could not be read and why', async () => {
    const engine = new FakeEngine().fail('points.list', 'failed', 'wrong passphrase');
    const store = createAppStore(engine);
    store.getState().setCurrentRepo('/backups/r');
    await flush();
    expect(store.getState().pointsError).toBe(
      'Could not read the restore points of /backups/r: wrong passphrase',
    );
  });

  it('zooms between hours and years without going past either end', () => {
    const store = createAppStore(new FakeEngine());
    store.getState().setZoom('hours');
    store.getState().zoomBy(-1);
    expect(store.getState().zoom).toBe('hours');
    store.getState().zoomBy(10);
    expect(store.getState().zoom).toBe('years');
  });
});

describe('jobs slice', () => {
  it('lists new jobs first and keeps throughput samples only while running', () => {
    const store = createAppStore(new FakeEngine());
    store.getState().applyJob(makeJob({ id: 'a', bytesPerSecond: 10 }));
    store.getState().applyJob(makeJob({ id: 'b', state: 'queued' }));
    store.getState().applyJob(makeJob({ id: 'a', bytesPerSecond: 20 }));
    expect(store.getState().jobOrder).toEqual(['b', 'a']);
    expect(store.getState().throughput.a?.map((s) => s.bytesPerSecond)).toEqual([10, 20]);
    expect(store.getState().throughput.b).toBeUndefined();
  });

  it('reloads the timeline when a backup finishes', async () => {
    let listed = 0;
    const engine = new FakeEngine().handle('points.list', () => {
      listed++;
      return [];
    });
    const store = createAppStore(engine);
    store.setState({ currentRepo: '/backups/r' });
    store.getState().applyJob(makeJob({ id: 'a' }));
    store.getState().applyJob(makeJob({ id: 'a', state: 'succeeded' }));
    await flush();
    expect(listed).toBe(1);
  });

  it('follows a job that starts while nothing running is followed, and says how each job ended', () => {
    const store = createAppStore(new FakeEngine().handle('points.list', () => []));
    store.getState().applyJob(makeJob({ id: 'scheduled', title: 'Plan Nightly: back up /dev/sda' }));
    expect(store.getState().liveJobId).toBe('scheduled');
    store.getState().applyJob(makeJob({ id: 'second', kind: 'verify' }));
    expect(store.getState().liveJobId).toBe('scheduled');
    store.getState().applyJob(
      makeJob({
        id: 'scheduled',
        title: 'Plan Nightly: back up /dev/sda',
        state: 'failed',
        error: 'Source missing.',
      }),
    );
    expect(store.getState().notices.at(-1)).toMatchObject({
      tone: 'error',
      text: 'Plan Nightly: back up /dev/sda failed: Source missing.',
    });
  });

  it('follows a started backup in the Live view', async () => {
    const engine = new FakeEngine().handle('backup.start', (params) =>
      makeJob({ id: 'new', title: params.source }),
    );
    const store = createAppStore(engine);
    await store.getState().startBackup('/dev/sdb', '/backups/r');
    expect(store.getState().liveJobId).toBe('new');
    expect(store.getState().view).toBe('live');
  });

  it('records a failed start where it happened and clears it on the next success', async () => {
    const engine = new FakeEngine().fail('backup.start', 'busy', '/dev/sdb is in use by a running job');
    const store = createAppStore(engine);
    expect(await store.getState().startBackup('/dev/sdb', '/backups/r')).toBeNull();
    expect(store.getState().errors.backup).toBe('/dev/sdb is in use by a running job');
    engine.handle('backup.start', () => makeJob());
    await store.getState().startBackup('/dev/sdb', '/backups/r');
    expect(store.getState().errors.backup).toBeUndefined();
  });
});

describe('block map slice', () => {
  it('decodes a full map, then applies changed cells in place with a new revision', () => {
    const store = createAppStore(new FakeEngine());
    store.getState().applyBlockMap({
      jobId: 'j',
      cellCount: 4,
      unitsPerCell: 2,
      full: true,
      cells: base64([CellState.free, CellState.pending, CellState.pending, CellState.copied]),
    });
    const first = store.getState().blockMaps.j!;
    expect([...first.cells]).toEqual([0, 1, 1, 2]);
    store.getState().applyBlockMap({
      jobId: 'j',
      cellCount: 4,
      unitsPerCell: 2,
      full: false,
      changes: [1, CellState.preserved, 2, CellState.writing, 9, 2, 0, 77],
    });
    const second = store.getState().blockMaps.j!;
    expect([...second.cells]).toEqual([0, 3, 4, 2]);
    expect(second.cells).toBe(first.cells);
    expect(second.revision).toBe(first.revision + 1);
  });
});

describe('block-map subscriptions', () => {
  it('asks once per job and connection, and again after the store forgets them on reconnection', async () => {
    const engine = new FakeEngine().handle('blockmap.subscribe', () => ({}));
    const store = createAppStore(engine);
    await store.getState().subscribeBlockMap('j', 100);
    await store.getState().subscribeBlockMap('j', 100);
    expect(engine.callsOf('blockmap.subscribe')).toHaveLength(1);
    store.getState().forgetBlockMapSubscriptions();
    await store.getState().subscribeBlockMap('j', 100);
    expect(engine.callsOf('blockmap.subscribe')).toHaveLength(2);
  });
});

describe('error messages', () => {
  it('drop the wrapping Electron adds to errors crossing IPC', () => {
    expect(
      messageOf(
        new Error("Error invoking remote method 'diskline:call': Error: No restore point 'x' in /r."),
      ),
    ).toBe("No restore point 'x' in /r.");
    expect(messageOf('plain')).toBe('plain');
  });
});

describe('restore slice', () => {
  const preview = {
    target: '/dev/sdb',
    targetKind: 'device' as const,
    targetSize: 64 * 1024 ** 3,
    targetDescription: 'USB disk',
    overwrites: ['Partition 1 (ext4)'],
    typedConfirmation: 'sdb',
    confirmToken: 'tok-1',
    refusal: null,
  };

  it('starts the restore with the preview’s token and follows it', async () => {
    const engine = new FakeEngine()
      .handle('restore.preview', () => preview)
      .handle('restore.start', () => makeJob({ id: 'r', kind: 'restore' }));
    const store = createAppStore(engine);
    store.setState({ currentRepo: '/backups/r' });
    await store.getState().openRestore('point-a', '/dev/sdb');
    expect(store.getState().restore?.preview?.confirmToken).toBe('tok-1');
    expect(await store.getState().confirmRestore(true)).toBe(true);
    expect(engine.callsOf('restore.start')).toEqual([
      { repo: '/backups/r', point: 'point-a', to: '/dev/sdb', confirmToken: 'tok-1', instant: true },
    ]);
    expect(store.getState().restore).toBeNull();
    expect(store.getState().liveJobId).toBe('r');
  });

  it('never starts a restore the engine refused', async () => {
    const engine = new FakeEngine().handle('restore.preview', () => ({
      ...preview,
      refusal: '/dev/sdb is mounted at /media/usb; unmount it first.',
    }));
    const store = createAppStore(engine);
    store.setState({ currentRepo: '/backups/r' });
    await store.getState().openRestore('point-a', '/dev/sdb');
    expect(await store.getState().confirmRestore(false)).toBe(false);
    expect(engine.callsOf('restore.start')).toEqual([]);
  });
});

describe('binding the engine to the store', () => {
  it('loads everything on connection, takes the engine’s default repository, and applies events', async () => {
    const engine = new FakeEngine()
      .handle('engine.status', () => ({
        version: '1.0.0',
        privileged: true,
        schedulesPaused: false,
        nextRun: null,
        defaultRepo: '/backups/default',
      }))
      .handle('drives.list', () => [])
      .handle('plans.list', () => [])
      .handle('jobs.list', () => [])
      .handle('points.list', () => [makePoint()]);
    const store = createAppStore(engine);
    let announce: (s: {
      status: 'connected';
      retryInMs: null;
      reason: null;
      transport: 'websocket';
    }) => void = () => {};
    bindEngine(store, {
      client: engine,
      onState(listener) {
        announce = listener;
        return () => {};
      },
      close() {},
    });
    announce({ status: 'connected', retryInMs: null, reason: null, transport: 'websocket' });
    await flush();
    await flush();
    expect(store.getState().currentRepo).toBe('/backups/default');
    expect(store.getState().points).toHaveLength(1);
    engine.emit('job.updated', makeJob({ id: 'evt', doneBytes: 5 }));
    expect(store.getState().jobs.evt?.doneBytes).toBe(5);
    engine.emit('plan.ran', { planId: 'p', name: 'Nightly', ok: false, message: 'source missing', time: '' });
    expect(store.getState().notices.at(-1)).toMatchObject({ tone: 'error', text: 'Nightly: source missing' });
  });
});
