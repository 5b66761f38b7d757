import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CellState, type EventData } from '../../protocol/messages.ts';
import type { Job } from '../../protocol/model.ts';
import { StateStore } from '../config/state.ts';
import { defaultRunners } from '../jobs/runners.ts';
import { SocketClient } from './client.ts';
import { Engine } from './engine.ts';
import { UnixServer } from './unix-server.ts';

const IMAGE_BYTES = 32 << 20;

test('a real backup over the socket streams job progress and a block map that ends all copied', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-blockmap-'));
  process.env.DISKLINE_PASSWORD = 'block map passphrase';
  const state = await StateStore.open(join(dir, 'state'));
  const engine = new Engine({ state, runners: defaultRunners(state) });
  await engine.start();
  const server = new UnixServer(engine, join(dir, 'engine.sock'));
  await server.listen();
  const client = await SocketClient.connect(server.path);
  try {
    // Incompressible data with a zero tail: a few seconds of copying, and free-looking space at the end.
    const image = await open(join(dir, 'disk.img'), 'w');
    await image.write(randomBytes(IMAGE_BYTES - (8 << 20)), 0, IMAGE_BYTES - (8 << 20), 0);
    await image.truncate(IMAGE_BYTES);
    await image.close();
    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });

    // The map as the client sees it: the full map, then each change applied as it arrives.
    const maps: EventData<'blockmap'>[] = [];
    let cells: Buffer | null = null;
    let allCopied = () => {};
    const copied = new Promise<void>((resolve) => (allCopied = resolve));
    client.on('blockmap', (event) => {
      maps.push(event);
      if (event.full) cells = Buffer.from(event.cells!, 'base64');
      else
        for (let i = 0; i < event.changes!.length; i += 2)
          cells![event.changes![i]!] = event.changes![i + 1]!;
      if (cells!.every((cell) => cell === CellState.copied)) allCopied();
    });
    const updates: Job[] = [];
    client.on('job.updated', (job) => updates.push(job));
    const ended = new Promise<Job>((resolve) =>
      client.on('job.updated', (job) => ['succeeded', 'failed'].includes(job.state) && resolve(job)),
    );
    const job = await client.call('backup.start', { source: join(dir, 'disk.img'), repo });
    await client.call('blockmap.subscribe', { jobId: job.id, cells: 100 });
    const final = await ended;
    assert.equal(final.state, 'succeeded', final.error ?? '');
    // The subscription's last look, after the end, brings the map to all copied (a hang here is the failure).
    await copied;

    const [first, ...rest] = maps;
    assert.equal(first!.full, true);
    assert.equal(first!.jobId, job.id);
    assert.ok(first!.cellCount <= 100 && first!.cellCount >= 50);
    assert.equal(Buffer.from(first!.cells!, 'base64').length, first!.cellCount);
    assert.ok(rest.every((change) => !change.full && change.jobId === job.id));
    assert.equal(cells!.length, first!.cellCount);

    const running = updates.filter((update) => update.state === 'running' && update.units);
    assert.ok(running.length > 0, 'progress carries unit counts');
    const last = running.at(-1)!;
    assert.equal(last.unitSize, 64 * 1024);
    assert.ok(last.container && last.container.capacityBytes > 0, 'progress carries the container state');
    assert.equal(final.result?.usedBytes, IMAGE_BYTES);
  } finally {
    await client.close();
    await server.close();
    await engine.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
