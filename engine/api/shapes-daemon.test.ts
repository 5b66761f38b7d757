// The shape property test's disks through the daemon: backup, restore and verify jobs over the engine's socket
// (the way the UI and the CLI with a daemon reach them) take every shape of disk and give back its bytes.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Job } from '../../protocol/model.ts';
import { StateStore } from '../config/state.ts';
import { defaultRunners } from '../jobs/runners.ts';
import { groupUnits } from '../repository/chunk-codec.ts';
import { type DiskShape, SHAPE_KINDS, ShapeGenerator } from '../repository/testing/disk-shapes.ts';
import { SocketClient } from './client.ts';
import { Engine } from './engine.ts';
import { UnixServer } from './unix-server.ts';

const UNIT = 64 << 10;

/** Every job update seen, so a job's end is found whether it came before or after its id was known. */
class JobEnds {
  readonly #ended = new Map<string, Job>();
  readonly #waiters = new Map<string, (job: Job) => void>();

  constructor(client: SocketClient) {
    client.on('job.updated', (job) => {
      if (!['succeeded', 'failed', 'cancelled'].includes(job.state)) return;
      this.#ended.set(job.id, job);
      this.#waiters.get(job.id)?.(job);
    });
  }

  end(id: string): Promise<Job> {
    const ended = this.#ended.get(id);
    if (ended) return Promise.resolve(ended);
    return new Promise((resolve) => this.#waiters.set(id, resolve));
  }
}

test('through the daemon, a disk of every shape backs up, restores byte for byte and verifies', {
  timeout: 10 * 60_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-shapes-daemon-'));
  process.env.DISKLINE_PASSWORD = 'shapes through the daemon';
  const state = await StateStore.open(join(dir, 'state'));
  const engine = new Engine({ state, runners: defaultRunners(state) });
  await engine.start();
  const server = new UnixServer(engine, join(dir, 'engine.sock'));
  await server.listen();
  const client = await SocketClient.connect(server.path);
  const jobs = new JobEnds(client);
  const succeeded = async (job: Job, what: string) => {
    const ended = await jobs.end(job.id);
    assert.equal(ended.state, 'succeeded', `${what}: ${ended.error ?? ''}`);
    return ended;
  };
  try {
    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    // Past a group, ending inside a unit: full groups, a partial one and a tail.
    const units = groupUnits(UNIT) + 3;
    for (const [i, kind] of SHAPE_KINDS.entries()) {
      const shape: DiskShape = {
        kind,
        seed: 900 + i,
        size: units * UNIT + 1234,
        unitSize: UNIT,
        maxRunUnits: 5,
      };
      const generator = new ShapeGenerator(shape);
      const source = await generator.writeImage(join(dir, `${kind}.img`));
      const backup = await succeeded(
        await client.call('backup.start', { source, repo }),
        `backup of ${kind}`,
      );
      const point = String(backup.result?.point);

      const target = join(dir, `${kind}-restored.img`);
      await writeFile(target, '');
      await truncate(target, shape.size);
      const preview = await client.call('restore.preview', { repo, point, to: target });
      assert.equal(preview.refusal, null);
      await succeeded(
        await client.call('restore.start', { repo, point, to: target, confirmToken: preview.confirmToken }),
        `restore of ${kind}`,
      );
      assert.ok((await readFile(target)).equals(generator.bytes()), `${kind}: the restored disk differs`);
      await rm(target);
      await rm(source);
    }
    const verify = await succeeded(await client.call('verify.start', { repo, readData: true }), 'verify');
    assert.equal(verify.result?.ok, true, JSON.stringify(verify.result));
    assert.equal((await client.call('points.list', { repo })).length, SHAPE_KINDS.length);
  } finally {
    await client.close();
    await server.close();
    await engine.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
