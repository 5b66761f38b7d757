// Crash safety: a backup and a prune killed with SIGKILL at random moments, again and again. After each kill
// the repository verifies clean (every byte read and checked), every committed point reads back exactly, and
// the next backup resumes the interrupted one. Delays are random; a failure prints them to reproduce.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Repository } from './repository.ts';
import { backupImage, readWholePoint } from './testing/backup-image.ts';
import { changeUnits, patternedImage } from './testing/patterned-image.ts';
import { verifyRepository } from './verify.ts';

const UNIT = 64 * 1024;
const UNITS = 96;
const ITERATIONS = 10;
const PASSWORD = 'crash-test';
const child = fileURLToPath(new URL('./testing/crash-child.ts', import.meta.url));
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-crash-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh repository under the test folder: cheap key derivation, and small packs so kills land between them. */
function initRepository(name: string): Promise<Repository> {
  return Repository.init(join(dir, name), {
    password: PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 128 * 1024,
  });
}

/** Opens the repository at `repoPath`, runs `use` on it and closes it again. */
async function withOpened<T>(repoPath: string, use: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await Repository.open(repoPath, { password: PASSWORD });
  try {
    return await use(repo);
  } finally {
    await repo.close();
  }
}

/** Runs the child; kills it with SIGKILL `killAfterMs` after it is ready. Resolves true when it finished on its own. */
function runChild(args: string[], killAfterMs: number): Promise<{ finished: boolean; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, ...args], {
      env: { ...process.env, DISKLINE_PASSWORD: PASSWORD },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let timer: NodeJS.Timeout | null = null;
    proc.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (!timer && output.includes('ready')) timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    });
    proc.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (signal === 'SIGKILL') resolve({ finished: false, output });
      else if (code === 0) resolve({ finished: true, output });
      else reject(new Error(`child exited ${code}: ${output}`));
    });
  });
}

async function assertRepositorySound(
  repoPath: string,
  expected: Map<string, Buffer>,
  context: string,
): Promise<void> {
  await withOpened(repoPath, async (repo) => {
    const report = await verifyRepository(repo, { readData: true });
    assert.ok(
      report.ok,
      `${context}: verify found ${JSON.stringify(report.damagedPoints)} ${JSON.stringify(report.problems)}`,
    );
    const { points } = await repo.listPoints();
    for (const point of points.filter((p) => p.complete)) {
      const bytes = expected.get(point.id);
      assert.ok(bytes, `${context}: point ${point.id} was never committed by a finished run`);
      assert.ok(
        (await readWholePoint(repo, point.id)).equals(bytes),
        `${context}: point ${point.id} reads back exactly`,
      );
    }
  });
}

test('a backup killed at random moments leaves every committed point intact and resumes', {
  timeout: 170_000,
}, async () => {
  const repoPath = join(dir, 'backup-crash');
  const repo = await initRepository('backup-crash');
  const imagePath = join(dir, 'backup-crash.img');
  let image = patternedImage('crash', UNITS, UNIT);
  await writeFile(imagePath, image);
  const expected = new Map<string, Buffer>();
  expected.set((await backupImage(repo, imagePath)).id, Buffer.from(image));
  await repo.close();
  const delays: number[] = [];
  let kills = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    const delay = Math.floor(Math.random() * 900);
    delays.push(delay);
    const run = await runChild(['backup', repoPath, imagePath], delay);
    const context = `iteration ${i} (kill delays so far: ${delays.join(', ')})`;
    if (run.finished) {
      const id = /committed ([0-9a-f]+)/.exec(run.output)?.[1];
      assert.ok(id, run.output);
      expected.set(id, Buffer.from(image));
    } else {
      kills += 1;
      // Killed after committing but before saying so: the new complete point holds the image as it is now.
      await withOpened(repoPath, async (check) => {
        for (const point of (await check.listPoints()).points) {
          if (point.complete && !expected.has(point.id)) expected.set(point.id, Buffer.from(image));
        }
      });
    }
    await assertRepositorySound(repoPath, expected, context);
    // Change the disk only after a finished backup: an interrupted one is resumed on the same bytes.
    if (run.finished) {
      image = Buffer.from(image);
      changeUnits(image, UNIT, [i % UNITS, (i * 7 + 3) % UNITS, (i * 13 + 5) % UNITS, 40 + i], `crash-${i}`);
      await writeFile(imagePath, image);
    }
  }
  // A last backup without a kill completes whatever checkpoint is left.
  const final = await runChild(['backup', repoPath, imagePath], 60_000);
  assert.ok(final.finished);
  expected.set(/committed ([0-9a-f]+)/.exec(final.output)![1]!, Buffer.from(image));
  await assertRepositorySound(repoPath, expected, 'after the final backup');
  const { points } = await withOpened(repoPath, (check) => check.listPoints());
  assert.ok(
    points.every((p) => p.complete),
    'no incomplete point is left after a finished backup of the same source',
  );
  assert.ok(
    kills > 0 || delays.every((d) => d > 500),
    `at least one backup was killed (delays ${delays.join(', ')})`,
  );
});

test('a prune killed at random moments leaves a valid repository whose remaining points restore exactly', {
  timeout: 170_000,
}, async () => {
  const repoPath = join(dir, 'prune-crash');
  const repo = await initRepository('prune-crash');
  const expected = new Map<string, Buffer>();
  const addPoint = async (seed: string) => {
    const bytes = patternedImage(seed, 32, UNIT);
    // One source backed up again and again (retention applies per source).
    const path = join(dir, 'prune-crash-source.img');
    await writeFile(path, bytes);
    expected.set((await backupImage(repo, path)).id, bytes);
  };
  for (let i = 0; i < 4; i++) await addPoint(`prune-${i}`);
  const delays: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const delay = Math.floor(Math.random() * 400);
    delays.push(delay);
    const run = await runChild(['prune', repoPath, String(1 + (i % 3))], delay);
    await assertRepositorySound(
      repoPath,
      expected,
      `prune iteration ${i} (${run.finished ? 'finished' : 'killed'}; delays ${delays.join(', ')})`,
    );
    await addPoint(`prune-more-${i}`);
    await sleep(5);
  }
  await repo.close();
  // A prune run to the end removes what the killed ones left behind: only packs of kept points remain.
  const last = await runChild(['prune', repoPath, '2'], 60_000);
  assert.ok(last.finished, last.output);
  await assertRepositorySound(repoPath, expected, 'after the final prune');
  await withOpened(repoPath, async (check) => {
    const { points } = await check.listPoints();
    assert.equal(points.length, 2);
    assert.equal((await check.pruneRecords()).length, 0, 'no prune record is left');
  });
});
