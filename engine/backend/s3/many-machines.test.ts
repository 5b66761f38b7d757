// Many machines, one repository in one bucket: two processes backing up different sources at once, round after
// round, with a prune started beside them each round. Every complete point left must restore byte for byte,
// verify --read-data must pass, and the chunks both sources share must be stored once.
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeIndexEntries, INDEX_MAGIC, idKey } from '../../repository/chunk-index.ts';
import { Repository } from '../../repository/repository.ts';
import { chunkOf } from '../../repository/segment.ts';
import { runCli, TEST_PASSWORD } from '../../repository/testing/run-cli.ts';
import { type S3Store, s3StoreUnavailableReason, startS3Store } from '../../testing/s3-store.ts';

const UNIT = 64 * 1024;
const UNITS = 128;
const SHARED_UNITS = 32;
const ROUNDS = 20;

/** 64 KiB of pseudo-random bytes named by a seed: the same seed gives the same unit on every machine. */
function unitBytes(seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(UNIT));
}

/** A machine's disk: shared units first (the same on both), then its own, each at a version. */
class MachineDisk {
  readonly versions = new Array<number>(UNITS).fill(0);
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }

  /** Round r rewrites 16 of its own units: most with new data, every fourth with data it held 3 rounds ago. */
  change(round: number): void {
    for (let j = 0; j < 16; j++) {
      const unit = SHARED_UNITS + (((round * 16 + j) * 7) % (UNITS - SHARED_UNITS));
      this.versions[unit] = j % 4 === 0 ? Math.max(0, round - 3) : round;
    }
  }

  bytes(): Buffer {
    return Buffer.concat(
      this.versions.map((version, unit) =>
        unitBytes(unit < SHARED_UNITS ? `shared-${unit}` : `${this.name}-${unit}-${version}`),
      ),
    );
  }
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

const unavailable = s3StoreUnavailableReason();
describe('two machines back up into one bucket with a prune beside them', {
  skip: unavailable ?? false,
}, () => {
  let store: S3Store;
  let dir: string;
  let env: Record<string, string>;
  before(async () => {
    store = await startS3Store();
    dir = await mkdtemp(join(tmpdir(), 'diskline-many-machines-'));
    env = {
      AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
    };
  });
  after(async () => {
    await store?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test(`${ROUNDS} rounds: every complete point restores exactly, verify passes, shared chunks are stored once`, {
    timeout: 30 * 60_000,
  }, async () => {
    const repo = store.location('shared-machines', 'office');
    /** Each machine keeps its own engine state (and cache); the prune runs from a third. */
    const ok = async (args: string[], machine = 'admin') => {
      const run = await runCli(args, { ...env, DISKLINE_STATE_DIR: join(dir, `state-${machine}`) });
      assert.equal(run.status, 0, `diskline ${args.join(' ')}: ${run.stderr}${run.stdout}`);
      return run;
    };
    await ok(['init', '--repo', repo]);
    const machines = [new MachineDisk('alpha'), new MachineDisk('beta')];
    const sources = machines.map((m) => join(dir, `${m.name}.img`));
    /** Point id → the sha256 of its source's bytes at the backup. */
    const expected = new Map<string, string>();
    const backUp = async (index: number) => {
      const bytes = machines[index]!.bytes();
      await writeFile(sources[index]!, bytes);
      const run = await ok(['backup', sources[index]!, '--repo', repo, '--json'], machines[index]!.name);
      expected.set(JSON.parse(run.stdout).point.id as string, sha256(bytes));
    };
    // Round 0, one after the other: the second machine finds the shared units stored by the first.
    await backUp(0);
    await backUp(1);
    let overlapped = 0;
    let rescued = 0;
    for (let round = 1; round < ROUNDS; round++) {
      for (const machine of machines) machine.change(round);
      const [, , prune] = await Promise.all([
        backUp(0),
        backUp(1),
        ok(['prune', '--repo', repo, '--keep-last', '2', '--json']),
      ]);
      const report = JSON.parse(prune.stdout);
      if (report.waitingRecords > 0) overlapped += 1;
      rescued += report.rescuedPacks ?? 0;
    }
    process.stdout.write(
      `# ${overlapped} of ${ROUNDS - 1} prunes left a record for a running backup; ${rescued} pack(s) rescued\n`,
    );
    assert.ok(overlapped > 0, 'at least one prune ran while a backup it had to wait for was running');
    // Every complete point left restores exactly (checkpoints of the rounds are superseded and listed apart).
    const points = JSON.parse((await ok(['points', '--repo', repo, '--json'])).stdout) as {
      id: string;
      complete: boolean;
    }[];
    const complete = points.filter((p) => p.complete);
    assert.ok(complete.length >= 4, `at least the last two of each machine are kept: ${complete.length}`);
    for (const point of complete) {
      const to = join(dir, `restored-${point.id}.img`);
      await ok(['restore', point.id, '--repo', repo, '--to', to]);
      assert.equal(sha256(await readFile(to)), expected.get(point.id), `point ${point.id} restores exactly`);
      await rm(to);
    }
    await ok(['verify', '--repo', repo, '--read-data']);

    // The shared units were stored once: one pack holds each of their chunks, whatever the rounds did.
    for (const [name, value] of Object.entries(env)) process.env[name] = value;
    const opened = await Repository.open(repo, { password: TEST_PASSWORD });
    try {
      const map = await opened.openMap(complete[0]!.id);
      const shared = new Set<string>();
      for (let unit = 0; unit < SHARED_UNITS; unit++) {
        const segment = await map.segment(Math.floor(unit / map.unitsPerSegment));
        shared.add(idKey(chunkOf(segment, unit % map.unitsPerSegment)!));
      }
      const holders = new Map<string, Set<string>>();
      for (const name of await opened.indexFiles()) {
        const plaintext = await opened.readSealed(name, INDEX_MAGIC, name);
        for (const [key, entry] of decodeIndexEntries(plaintext)) {
          if (!shared.has(key)) continue;
          holders.set(key, (holders.get(key) ?? new Set()).add(`${entry.pack}@${entry.blobOffset}`));
        }
      }
      assert.equal(holders.size, SHARED_UNITS, 'every shared chunk is indexed');
      for (const places of holders.values()) assert.equal(places.size, 1, 'a shared chunk is stored once');
    } finally {
      await opened.close();
    }
  });
});
