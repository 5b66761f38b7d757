import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, chown, mkdir, truncate, utimes, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MAX_MESSAGE_BYTES } from '../../protocol/messages.ts';
import type { Job } from '../../protocol/model.ts';
import type { EngineCallError, SocketClient } from './client.ts';
import { ControlledWork, controlledRunners, startTestDaemon, type TestDaemon } from './testing/daemon.ts';

const run = promisify(execFile);
const nodeBinary = process.execPath;

let daemon: TestDaemon;
let client: SocketClient;
let work: ControlledWork;
let image: string;

before(async () => {
  work = new ControlledWork();
  daemon = await startTestDaemon(controlledRunners(work));
  image = join(daemon.dir, 'disk.img');
  await writeFile(image, '');
  await truncate(image, 4 << 20);
  daemon.engine.state.config.images.push(image);
  // Repositories are directories the engine opens (the test runners never look inside).
  for (const repo of ['repo', 'queue-repo', 'plan-repo', 'reconnect-repo'])
    await mkdir(join(daemon.dir, repo));
  client = await daemon.connect();
});

after(async () => {
  work.release();
  await daemon.close();
});

/** Sends raw bytes on a fresh connection and collects the frames that come back until `count` arrived. */
async function rawExchange(socket: string, payload: Buffer | string, count: number): Promise<unknown[]> {
  const connection = createConnection(socket);
  const frames: unknown[] = [];
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    connection.on('data', (data) => {
      buffered += data.toString();
      let newline = buffered.indexOf('\n');
      while (newline !== -1) {
        const frame = JSON.parse(buffered.slice(0, newline));
        if (frame.type === 'response') frames.push(frame);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf('\n');
      }
      if (frames.length >= count) resolve();
    });
    connection.on('error', reject);
    connection.write(payload);
  });
  connection.destroy();
  return frames;
}

/** The job once it is in one of `states`: from the list if it is already, else from its 'job.updated' event. */
async function waitForState(id: string, states: Job['state'][]): Promise<Job> {
  let off = () => {};
  const reached = new Promise<Job>((resolve) => {
    off = client.on('job.updated', (job) => job.id === id && states.includes(job.state) && resolve(job));
  });
  try {
    const listed = (await client.call('jobs.list', {})).find((candidate) => candidate.id === id);
    if (listed && states.includes(listed.state)) return listed;
    // Only a guard against a hang: the event comes at once when the job gets there.
    const guard = AbortSignal.timeout(120_000);
    return await Promise.race([
      reached,
      new Promise<never>((_, reject) =>
        guard.addEventListener('abort', () =>
          reject(new Error(`job ${id} never reached ${states.join('/')}`)),
        ),
      ),
    ]);
  } finally {
    off();
  }
}

test('engine.status reports the version, privilege and schedules', async () => {
  const status = await client.call('engine.status', {});
  assert.equal(status.version, '0.1.0');
  assert.equal(status.privileged, process.getuid?.() === 0);
  assert.equal(status.schedulesPaused, false);
  assert.equal(status.nextRun, null);
});

test('drives.list includes registered image files with their size, and flags the system disk', async () => {
  const drives = await client.call('drives.list', {});
  const imageDrive = drives.find((drive) => drive.device === image);
  assert.ok(imageDrive, 'the registered image is listed');
  assert.equal(imageDrive.size, 4 << 20);
  assert.equal(imageDrive.isSystem, false);
  const rootDisk = drives.find((drive) => drive.mountpoints.includes('/'));
  if (rootDisk) assert.equal(rootDisk.isSystem, true);
});

test('points.list answers the points of a repository; repo.init answers the location', async () => {
  const points = await client.call('points.list', { repo: join(daemon.dir, 'repo') });
  assert.equal(points.length, 1);
  assert.equal(points[0]!.id, 'a1b2c3d4e5f6');
  assert.equal(points[0]!.verify, 'unverified');
  const init = await client.call('repo.init', { repo: join(daemon.dir, 'repo') });
  assert.equal(init.repo, join(daemon.dir, 'repo'));
});

test('an unknown method and invalid params are answered with their error codes', async () => {
  await assert.rejects(client.call('no.such' as 'jobs.list', {}), (error: EngineCallError) => {
    assert.equal(error.code, 'unknown-method');
    assert.equal(error.message, "Unknown method 'no.such'.");
    return true;
  });
  await assert.rejects(client.call('points.list', { repo: '' }), (error: EngineCallError) => {
    assert.equal(error.code, 'bad-request');
    assert.match(error.message, /^Invalid params for points.list: repo: /);
    return true;
  });
});

test('backup.start of a missing source is not-found; a backup job reports progress at most 10 times a second', async () => {
  await assert.rejects(
    client.call('backup.start', { source: join(daemon.dir, 'absent.img'), repo: join(daemon.dir, 'repo') }),
    (error: EngineCallError) => error.code === 'not-found' && error.message.includes('absent.img'),
  );
  work.released = false;
  const updates: Job[] = [];
  const progressed = (id: string) =>
    updates.filter((update) => update.id === id && update.state === 'running' && update.doneBytes > 0);
  let jobId = '';
  let offThree = () => {};
  const threeUpdates = new Promise<void>((resolve) => {
    offThree = client.on('job.updated', () => progressed(jobId).length >= 3 && resolve());
  });
  const off = client.on('job.updated', (job) => updates.push(job));
  const job = await client.call('backup.start', { source: image, repo: join(daemon.dir, 'repo') });
  jobId = job.id;
  assert.equal(job.kind, 'backup');
  // Progress arrives as events (their pace, at most one per 100 ms, is the job manager's test).
  await threeUpdates;
  offThree();
  assert.ok(progressed(job.id).at(-1)!.doneBytes > 0);
  await client.call('jobs.cancel', { id: job.id });
  const ended = await waitForState(job.id, ['cancelled']);
  assert.match(ended.error ?? '', /^Cancelled at /);
  off();
  await assert.rejects(
    client.call('jobs.cancel', { id: job.id }),
    (error: EngineCallError) => error.code === 'refused' && /already ended \(cancelled\)/.test(error.message),
  );
  await assert.rejects(
    client.call('jobs.cancel', { id: 'nope' }),
    (error: EngineCallError) => error.code === 'not-found',
  );
});

test('writers of one repository queue: the second backup waits until the first ends', async () => {
  work.released = false;
  const repo = join(daemon.dir, 'queue-repo');
  const first = await client.call('backup.start', { source: image, repo });
  const second = await client.call('backup.start', { source: image, repo });
  assert.equal(second.state, 'queued');
  // While the first is at work, the second stays queued.
  await work.untilSteps(work.steps + 3);
  assert.equal((await waitForState(first.id, ['running'])).state, 'running');
  assert.equal((await waitForState(second.id, ['queued'])).startedAt, null);
  work.release();
  await waitForState(first.id, ['succeeded']);
  await waitForState(second.id, ['succeeded']);
});

test('restore.preview binds its token to the target: a changed image or a wrong token is refused', async () => {
  work.release();
  const repo = join(daemon.dir, 'repo');
  const target = join(daemon.dir, 'target.img');
  await writeFile(target, Buffer.alloc(2 << 20, 1));
  const preview = await client.call('restore.preview', { repo, point: 'a1b2c3', to: target });
  assert.equal(preview.target, target);
  assert.equal(preview.targetKind, 'image');
  assert.equal(preview.targetSize, 2 << 20);
  assert.equal(preview.refusal, null);
  assert.equal(preview.typedConfirmation, null);
  assert.deepEqual(preview.overwrites, [`the image file ${target}: all ${2 << 20} bytes`]);
  await assert.rejects(
    client.call('restore.start', { repo, point: 'a1b2c3', to: target, confirmToken: 'x'.repeat(43) }),
    (error: EngineCallError) => error.code === 'refused' && /does not match/.test(error.message),
  );
  // Another file at the same path (new inode and mtime) is another target.
  await utimes(target, new Date(), new Date(Date.now() + 5000));
  await assert.rejects(
    client.call('restore.start', { repo, point: 'a1b2c3', to: target, confirmToken: preview.confirmToken }),
    (error: EngineCallError) => error.code === 'refused',
  );
  const fresh = await client.call('restore.preview', { repo, point: 'a1b2c3', to: target });
  const job = await client.call('restore.start', {
    repo,
    point: 'a1b2c3',
    to: target,
    confirmToken: fresh.confirmToken,
  });
  assert.equal(job.kind, 'restore');
  await waitForState(job.id, ['succeeded']);
  await assert.rejects(
    client.call('restore.preview', { repo, point: 'ffff', to: target }),
    (error: EngineCallError) => error.code === 'not-found' && /No restore point 'ffff'/.test(error.message),
  );
});

test('restore.preview refuses a block device smaller than the point', async (t) => {
  const small = join(daemon.dir, 'small.img');
  await writeFile(small, Buffer.alloc(512 << 10));
  let loop: string;
  try {
    loop = (await run('losetup', ['--find', '--show', small])).stdout.trim();
  } catch (error) {
    t.skip(`needs a loop device (root): ${(error as Error).message.split('\n')[0]}`);
    return;
  }
  try {
    const preview = await client.call('restore.preview', {
      repo: join(daemon.dir, 'repo'),
      point: 'a1b2c3',
      to: loop,
    });
    assert.equal(preview.targetKind, 'device');
    assert.equal(preview.targetSize, 512 << 10);
    assert.equal(preview.typedConfirmation, loop.replace('/dev/', ''));
    assert.equal(
      preview.refusal,
      `${loop} is ${512 << 10} bytes, smaller than restore point a1b2c3d4e5f6 (${1 << 20} bytes); choose a disk at least that big.`,
    );
    await assert.rejects(
      client.call('restore.start', {
        repo: join(daemon.dir, 'repo'),
        point: 'a1b2c3',
        to: loop,
        confirmToken: preview.confirmToken,
      }),
      (error: EngineCallError) => error.code === 'refused' && error.message === preview.refusal,
    );
  } finally {
    await run('losetup', ['-d', loop]);
  }
});

test('plans: save, list, run now (no overlap), pause, delete', async () => {
  work.released = false;
  const events: string[] = [];
  const off = client.on('plans.changed', () => events.push('plans.changed'));
  const plan = await client.call('plans.save', {
    id: '',
    name: 'Nightly',
    source: image,
    repo: join(daemon.dir, 'plan-repo'),
    schedule: 'daily 02:30',
    retention: { keepLast: 3 },
    container: { kind: 'memory', capacityBytes: 1 << 20 },
    enabled: true,
  });
  assert.ok(plan.id);
  assert.match(plan.nextRun ?? '', /T\d\d:30:00/);
  await assert.rejects(
    client.call('plans.save', { ...plan, schedule: 'daily 25:00' }),
    (error: EngineCallError) =>
      error.code === 'bad-request' && /'25:00' is not a time of day/.test(error.message),
  );
  assert.deepEqual(
    (await client.call('plans.list', {})).map((listed) => listed.name),
    ['Nightly'],
  );
  const ran = new Promise<{ ok: boolean; message: string }>((resolve) => client.on('plan.ran', resolve));
  const job = await client.call('plans.runNow', { id: plan.id });
  assert.equal(job.kind, 'backup');
  await assert.rejects(
    client.call('plans.runNow', { id: plan.id }),
    (error: EngineCallError) => error.code === 'busy' && /already running/.test(error.message),
  );
  work.release();
  const outcome = await ran;
  assert.deepEqual(outcome.ok, true);
  assert.equal(outcome.message, 'Backup succeeded; retention applied.');
  const jobs = await client.call('jobs.list', {});
  assert.ok(jobs.some((listed) => listed.kind === 'prune' && listed.state === 'succeeded'));
  assert.equal((await client.call('plans.list', {}))[0]!.lastRun?.ok, true);
  assert.deepEqual(await client.call('schedules.setPaused', { paused: true }), { paused: true });
  assert.equal((await client.call('engine.status', {})).schedulesPaused, true);
  assert.equal((await client.call('plans.list', {}))[0]!.nextRun, null);
  await client.call('schedules.setPaused', { paused: false });
  await client.call('plans.delete', { id: plan.id });
  assert.deepEqual(await client.call('plans.list', {}), []);
  await assert.rejects(
    client.call('plans.delete', { id: plan.id }),
    (error: EngineCallError) => error.code === 'not-found',
  );
  assert.ok(events.length >= 3);
  off();
});

test('drill, verify, prune, volumes, mount and blockmap.subscribe answer through the socket', async () => {
  const repo = join(daemon.dir, 'repo');
  const drill = await client.call('drill.start', { repo, point: 'a1b2c3' });
  assert.equal((await waitForState(drill.id, ['succeeded'])).result?.detail, 'fsck -n: clean');
  const verify = await client.call('verify.start', { repo, readData: true });
  await waitForState(verify.id, ['succeeded']);
  work.release();
  const prune = await client.call('prune.start', { repo, retention: { keepLast: 1 }, dryRun: true });
  assert.equal(prune.kind, 'prune');
  await waitForState(prune.id, ['succeeded']);
  await assert.rejects(
    client.call('volumes.detach', { source: image }),
    (error: EngineCallError) => error.code === 'not-found' && error.message === `${image} is not attached.`,
  );
  await assert.rejects(
    client.call('volumes.attach', { source: image }),
    (error: EngineCallError) => error.code === 'failed' && /not part of this test engine/.test(error.message),
  );
  assert.deepEqual(await client.call('mount.start', { repo, point: 'a1b2c3' }), {
    path: '/mnt/a1b2c3d4e5f6',
  });
  assert.deepEqual(await client.call('mount.stop', { path: '/mnt/a1b2c3d4e5f6' }), {});
  await assert.rejects(
    client.call('blockmap.subscribe', { jobId: verify.id, cells: 100 }),
    (error: EngineCallError) =>
      error.code === 'bad-request' && /only backups have a block map/.test(error.message),
  );
  await assert.rejects(
    client.call('blockmap.subscribe', { jobId: 'none', cells: 100 }),
    (error: EngineCallError) => error.code === 'not-found',
  );
});

test('malformed frames get error responses and the connection keeps answering', async () => {
  const frames = await rawExchange(
    daemon.socket,
    'not json\n{"type":"request"}\n[1,2]\n{"type":"request","id":7,"method":"engine.status"}\n',
    4,
  );
  assert.deepEqual(
    frames.map((frame) => {
      const { id, ok, error } = frame as { id: number; ok: boolean; error?: { code: string } };
      return [id, ok, error?.code];
    }),
    [
      [-1, false, 'bad-request'],
      [-1, false, 'bad-request'],
      [-1, false, 'bad-request'],
      [7, true, undefined],
    ],
  );
});

test('a frame over MAX_MESSAGE_BYTES is refused before parsing, and the next frame is answered', async () => {
  const huge = Buffer.alloc(MAX_MESSAGE_BYTES + 10, 'a'.charCodeAt(0));
  const next = Buffer.from('\n{"type":"request","id":8,"method":"jobs.list","params":{}}\n');
  const frames = (await rawExchange(daemon.socket, Buffer.concat([huge, next]), 2)) as {
    id: number;
    ok: boolean;
    error?: { message: string };
  }[];
  assert.equal(frames[0]!.ok, false);
  assert.equal(
    frames[0]!.error!.message,
    `Message of ${MAX_MESSAGE_BYTES + 10} bytes refused: the limit is ${MAX_MESSAGE_BYTES} bytes.`,
  );
  assert.equal(frames[1]!.id, 8);
  assert.equal(frames[1]!.ok, true);
});

test('fuzz: thousands of random and mutated frames never stop the daemon from answering', async () => {
  const valid = [
    '{"type":"request","id":1,"method":"engine.status","params":{}}',
    '{"type":"request","id":2,"method":"points.list","params":{"repo":"/x"}}',
    '{"type":"request","id":3,"method":"jobs.cancel","params":{"id":"x"}}',
    '{"type":"request","id":4,"method":"plans.save","params":{"id":"","name":"p"}}',
    '{"type":"request","id":5,"method":"blockmap.subscribe","params":{"jobId":"j","cells":3}}',
  ];
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const frames: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const base = valid[Math.floor(random() * valid.length)]!;
    const chars = base.split('');
    const mutations = 1 + Math.floor(random() * 4);
    for (let m = 0; m < mutations; m++) {
      const at = Math.floor(random() * chars.length);
      const kind = random();
      if (kind < 0.4) chars[at] = String.fromCharCode(Math.floor(random() * 128));
      else if (kind < 0.7) chars.splice(at, 1);
      else chars.splice(at, 0, ['{', '}', '"', ':', ',', '\\', '\u0000', '9'][Math.floor(random() * 8)]!);
    }
    frames.push(random() < 0.1 ? Buffer.from(chars.join('')).toString('base64') : chars.join(''));
  }
  const payload = `${frames.map((frame) => frame.replaceAll('\n', ' ')).join('\n')}\n`;
  const connection = createConnection(daemon.socket);
  connection.on('data', () => {});
  connection.on('error', () => {});
  // Write in odd-sized pieces so frames straddle reads.
  const bytes = Buffer.from(payload);
  for (let offset = 0; offset < bytes.length; offset += 997)
    connection.write(bytes.subarray(offset, offset + 997));
  // Ending our side: the daemon closes once it has read (and answered or dropped) every byte.
  connection.end();
  await once(connection, 'close');
  const status = await client.call('engine.status', {});
  assert.equal(status.version, '0.1.0');
  const answered = await rawExchange(
    daemon.socket,
    '{"type":"request","id":99,"method":"jobs.list","params":{}}\n',
    1,
  );
  assert.equal((answered[0] as { id: number }).id, 99);
});

test('an unprivileged user is refused: by the socket mode, and by peer credentials when the mode admits it', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to run a client as nobody');
    return;
  }
  const probe = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'true']);
  if (probe.status !== 0) {
    t.skip('setpriv cannot switch to nobody here');
    return;
  }
  const script = `
    const socket = require('node:net').createConnection(process.argv[1]);
    socket.on('error', (e) => { console.log('ERROR ' + e.code); });
    const request = process.argv[2] || '{"type":"request","id":1,"method":"engine.status","params":{}}';
    socket.on('connect', () => socket.write(request + String.fromCharCode(10)));
    socket.on('data', (d) => { console.log(String(d).trim()); socket.destroy(); });
  `;
  // Asynchronous: the daemon answers from this very process.
  const asNobody = () =>
    run(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', nodeBinary, '-e', script, daemon.socket],
      {
        timeout: 10_000,
      },
    );
  await chmod(daemon.dir, 0o755);
  const byMode = await asNobody();
  assert.equal(byMode.stdout.trim(), 'ERROR EACCES');
  await chmod(daemon.socket, 0o666);
  const byCredentials = await asNobody();
  const answer = JSON.parse(byCredentials.stdout.trim());
  assert.equal(answer.ok, false);
  assert.equal(answer.error.code, 'forbidden');
  assert.match(answer.error.message, /^The Diskline engine refuses uid 65534: only root/);
  // Allowed on the socket is not root: such a user may not give hooks, which run as root.
  const nobodyUid = Number((await run('id', ['-u', 'nobody'])).stdout.trim());
  daemon.engine.state.config.allowedUids.push(nobodyUid);
  // The user's own repository, in a home of its own.
  const home = join(daemon.dir, 'nobody-home');
  const ownRepo = join(home, 'repo');
  await mkdir(ownRepo, { recursive: true });
  await chown(home, nobodyUid, 65534);
  await chown(ownRepo, nobodyUid, 65534);
  const callAsNobody = async (method: string, params: unknown) => {
    const request = JSON.stringify({ type: 'request', id: 1, method, params });
    const answer = await run(
      'setpriv',
      [
        '--reuid=nobody',
        '--regid=nogroup',
        '--clear-groups',
        nodeBinary,
        '-e',
        script,
        daemon.socket,
        request,
      ],
      { timeout: 10_000 },
    );
    return JSON.parse(answer.stdout.trim()) as { ok: boolean; error: { code: string; message: string } };
  };
  const hooked = await callAsNobody('backup.start', {
    source: image,
    repo: ownRepo,
    preHook: 'touch /tmp/owned',
  });
  assert.equal(hooked.error.code, 'forbidden');
  assert.match(hooked.error.message, /^Backup hooks run as root, so only root may give them/);
  const mountedOnEtc = await callAsNobody('mount.start', { repo: ownRepo, point: 'a1b2c3', dir: '/etc' });
  assert.equal(mountedOnEtc.error.code, 'forbidden');
  assert.equal(
    mountedOnEtc.error.message,
    `/etc is not a directory of yours (uid ${nobodyUid}); name one you own for a restore point to be mounted on.`,
  );
  const overPasswd = await callAsNobody('restore.start', {
    repo: ownRepo,
    point: 'a1b2c3',
    to: '/etc/passwd',
    confirmToken: 'x',
  });
  assert.equal(overPasswd.error.code, 'forbidden');
  assert.equal(
    overPasswd.error.message,
    `/etc/passwd is not a file of yours (uid ${nobodyUid}); you cannot use it as a restore target.`,
  );
  const readShadow = await callAsNobody('backup.start', { source: '/etc/shadow', repo: ownRepo });
  assert.equal(readShadow.error.code, 'forbidden');
  const shadowPlan = await callAsNobody('plans.save', {
    id: '',
    name: 'sneaky',
    source: '/etc/shadow',
    repo: ownRepo,
    schedule: '@hourly',
    retention: {},
    container: { kind: 'memory', capacityBytes: 1 << 20 },
    enabled: true,
  });
  assert.equal(shadowPlan.error.code, 'forbidden', 'a plan cannot smuggle in what a direct call may not do');
  daemon.engine.state.config.allowedUids.pop();
  await chmod(daemon.socket, 0o660);
  await chmod(daemon.dir, 0o700);
  assert.equal((await client.call('engine.status', {})).version, '0.1.0');
});

test('a job outlives the client that started it: another connection sees it run and can cancel it', async () => {
  work.released = false;
  const first = await daemon.connect();
  const job = await first.call('backup.start', { source: image, repo: join(daemon.dir, 'reconnect-repo') });
  await first.close();
  await work.untilSteps(work.steps + 2);
  const second = await daemon.connect();
  const seen = (await second.call('jobs.list', {})).find((candidate) => candidate.id === job.id);
  assert.equal(seen?.state, 'running');
  assert.ok((seen?.doneBytes ?? 0) > 0, 'it kept running while no one was connected');
  await second.call('jobs.cancel', { id: job.id });
  await waitForState(job.id, ['cancelled']);
});
