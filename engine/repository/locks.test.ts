// The writer lock's lease and backup registrations, judged by the storage's clock: a long step keeps its lock, a
// step whose lock was taken stops, and a registration a prune expired never comes back.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  LockedError,
  LockLostError,
  REGISTRATION_EXPIRES_MS,
  RegistrationLostError,
  refreshBackup,
  registerBackup,
  registrationName,
  runningBackups,
  WRITER_LOCK,
  withWriterLock,
} from './locks.ts';
import { Repository } from './repository.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-locks-'));
after(() => rm(dir, { recursive: true, force: true }));

const MINUTE = 60_000;

async function repository(name: string) {
  return Repository.init(join(dir, name), {
    password: 'locks test passphrase',
    scrypt: { N: 1024, r: 8, p: 1 },
  });
}

/** Makes a stored name look last written `ms` ago, by the storage's clock (a local repository: file times). */
async function ageBy(repoPath: string, name: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms);
  await utimes(join(repoPath, name), then, then);
}

async function lockHolder(repoPath: string): Promise<{ token?: string; purpose: string }> {
  return JSON.parse(await readFile(join(repoPath, WRITER_LOCK), 'utf8'));
}

test('a registration not refreshed for the expiry by the storage clock is removed; a fresh one stays', async () => {
  const repo = await repository('expiry');
  try {
    await registerBackup(repo.backend, 'aaaa', '/dev/old');
    await registerBackup(repo.backend, 'bbbb', '/dev/new');
    await ageBy(repo.path, registrationName('aaaa'), REGISTRATION_EXPIRES_MS + MINUTE);
    await ageBy(repo.path, registrationName('bbbb'), REGISTRATION_EXPIRES_MS - 5 * MINUTE);
    assert.deepEqual(
      (await runningBackups(repo.backend)).map((r) => r.pointId),
      ['bbbb'],
    );
    assert.equal(await repo.backend.size(registrationName('aaaa')), null);
    // The clock probe leaves nothing behind.
    assert.deepEqual((await repo.backend.list('locks/')).sort(), [registrationName('bbbb')]);
  } finally {
    await repo.close();
  }
});

test('a refresh never brings back a registration a prune removed, nor races one past half the expiry', async () => {
  const repo = await repository('refresh');
  try {
    const registeredAt = await registerBackup(repo.backend, 'cccc', '/dev/x');
    await refreshBackup(repo.backend, 'cccc', '/dev/x', registeredAt, 2 * MINUTE);
    await assert.rejects(
      refreshBackup(repo.backend, 'cccc', '/dev/x', registeredAt, REGISTRATION_EXPIRES_MS / 2),
      (error) => error instanceof RegistrationLostError && /not renewed for 15 minutes/.test(error.message),
    );
    // What a prune does with an expired registration.
    await repo.backend.delete(registrationName('cccc'));
    await assert.rejects(
      refreshBackup(repo.backend, 'cccc', '/dev/x', registeredAt, 2 * MINUTE),
      (error) => error instanceof RegistrationLostError && /a prune found it expired/.test(error.message),
    );
    assert.equal(await repo.backend.size(registrationName('cccc')), null, 'not brought back');
  } finally {
    await repo.close();
  }
});

test('a long step renews its writer lock, so a lock older than the stale age by its first write is not taken', async () => {
  const repo = await repository('renew');
  try {
    let clock = Date.now();
    await withWriterLock(
      repo.backend,
      'long step',
      async (lease) => {
        const holder = await lockHolder(repo.path);
        // Eleven minutes into the step by every clock that judges the lock, three since the last renewal.
        const old = { ...holder, time: new Date(Date.now() - 11 * MINUTE).toISOString() };
        await writeFile(join(repo.path, WRITER_LOCK), JSON.stringify(old));
        await ageBy(repo.path, WRITER_LOCK, 11 * MINUTE);
        clock += 3 * MINUTE;
        await lease.keep();
        assert.equal((await lockHolder(repo.path)).token, holder.token, 'the same holder');
        await assert.rejects(
          withWriterLock(repo.backend, 'another', async () => {}, 50),
          LockedError,
          'a renewed lock is not stale',
        );
      },
      60_000,
      () => clock,
    );
    assert.equal(await repo.backend.size(WRITER_LOCK), null, 'released');
  } finally {
    await repo.close();
  }
});

test('a step whose lock was judged stale and taken stops at its next renewal and leaves the new holder its lock', async () => {
  const repo = await repository('taken');
  try {
    let clock = Date.now();
    let releaseThief!: () => void;
    const thiefHolds = new Promise<void>((resolve) => {
      releaseThief = resolve;
    });
    let thief: Promise<void> | undefined;
    await assert.rejects(
      withWriterLock(
        repo.backend,
        'slow step',
        async (lease) => {
          // The holder stalls past the stale age: its lock reads as written eleven minutes ago.
          const stale = {
            ...(await lockHolder(repo.path)),
            time: new Date(Date.now() - 11 * MINUTE).toISOString(),
          };
          await writeFile(join(repo.path, WRITER_LOCK), JSON.stringify(stale));
          await ageBy(repo.path, WRITER_LOCK, 11 * MINUTE);
          let taken!: () => void;
          const tookIt = new Promise<void>((resolve) => {
            taken = resolve;
          });
          thief = withWriterLock(repo.backend, 'thief', async () => {
            taken();
            await thiefHolds;
          });
          await tookIt;
          clock += 3 * MINUTE;
          await lease.keep();
        },
        60_000,
        () => clock,
      ),
      LockLostError,
    );
    assert.equal((await lockHolder(repo.path)).purpose, 'thief', "the thief's lock stays");
    releaseThief();
    await thief;
    // Past half the stale age without renewal, a step stops without reading the lock at all.
    await assert.rejects(
      withWriterLock(
        repo.backend,
        'paused step',
        async (lease) => {
          clock += 5 * MINUTE;
          await lease.keep();
        },
        60_000,
        () => clock,
      ),
      LockLostError,
    );
    assert.equal(await repo.backend.size(WRITER_LOCK), null, 'its own lock is released');
  } finally {
    await repo.close();
  }
});
