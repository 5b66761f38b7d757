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

    const maps: EventData<'blockmap'>[] = [];
    const updates: Job[] = [];
    client.on('blockmap', (event) => maps.push(event));
    client.on('job.updated', (job) => updates.push(job));
    const ended = new Promise<Job>((resolve) =>
      client.on('job.updated', (job) => ['succeeded', 'failed'].includes(job.state) && resolve(job)),
    );
    const job = await client.call('backup.start', { source: join(dir, 'disk.img'), repo });
    await client.call('blockmap.subscribe', { jobId: job.id, cells: 100 });
    const final = await ended;
    assert.equal(final.state, 'succeeded', final.error ?? '');
    // Let the subscription's last look arrive.
    await new Promise((resolve) => setTimeout(resolve, 250));

    assert.ok(maps.length >= 2, `a full map and changes arrive (${maps.length})`);
    const [first, ...rest] = maps;
    assert.equal(first!.full, true);
    assert.equal(first!.jobId, job.id);
    assert.ok(first!.cellCount <= 100 && first!.cellCount >= 50);
    const cells = Buffer.from(first!.cells!, 'base64');
    assert.equal(cells.length, first!.cellCount);
    for (const change of rest) {
      assert.equal(change.full, false);
      for (let i = 0; i < change.changes!.length; i += 2)
        cells[change.changes![i]!] = change.changes![i + 1]!;
    }
    assert.ok(
      cells.every((cell) => cell === CellState.copied),
      `every cell ends copied: ${[...cells].join('')}`,
    );

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
