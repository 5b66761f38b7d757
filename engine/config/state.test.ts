import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeFileAtomic } from './atomic-file.ts';
import { claimStateDir, StateInUseError } from './owner-lock.ts';
import { StateStore } from './state.ts';

test('state written by one store is read back by the next, with no temp files left', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-state-'));
  try {
    const first = await StateStore.open(dir);
    first.config.repositories.home = '/srv/backups';
    first.config.allowedUids.push(1000);
    await first.saveConfig();
    const second = await StateStore.open(dir);
    assert.deepEqual(second.config.repositories, { home: '/srv/backups' });
    assert.deepEqual(second.config.allowedUids, [1000]);
    assert.equal(second.config.schedulesPaused, false);
    assert.deepEqual(await readdir(dir), ['config.json']);
    assert.equal((await stat(join(dir, 'config.json'))).mode & 0o777, 0o600);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an atomic write replaces the whole file; concurrent writes leave one complete version', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-state-'));
  try {
    const path = join(dir, 'f.json');
    await writeFile(path, 'old');
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => writeFileAtomic(path, `version ${i} `.repeat(1000))),
    );
    const content = await readFile(path, 'utf8');
    assert.match(content, /^(version \d+ )+$/);
    assert.equal(new Set(content.trim().split(/ (?=version)/)).size, 1);
    assert.deepEqual(await readdir(dir), ['f.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a damaged state file is reported with its path and what to do', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-state-'));
  try {
    await writeFile(join(dir, 'plans.json'), '{ not json');
    await assert.rejects(
      StateStore.open(dir),
      (error: Error) =>
        error.message.startsWith(`State file ${join(dir, 'plans.json')} is not valid JSON`) &&
        error.message.endsWith('fix or remove it and start again.'),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('one engine per state directory: a live owner is refused, a dead one is taken over', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-state-'));
  try {
    await writeFile(join(dir, 'engine.pid'), `${process.ppid}\n`);
    await assert.rejects(
      claimStateDir(dir),
      (error: Error) =>
        error instanceof StateInUseError &&
        error.message.startsWith(
          `Another Diskline engine (pid ${process.ppid}) already uses the state in ${dir};`,
        ),
    );
    const gone = spawnSync('true').pid!;
    await writeFile(join(dir, 'engine.pid'), `${gone}\n`);
    const release = await claimStateDir(dir);
    assert.equal(await readFile(join(dir, 'engine.pid'), 'utf8'), `${process.pid}\n`);
    await release();
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
