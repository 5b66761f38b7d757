// The attack suite: a hostile local user allowed on the daemon's socket (a child process running as an
// unprivileged uid that owns only a temp home) tries every trick against a root engine with real repositories,
// real mounts and real races: links and swaps of targets, sources, parent directories and plan sources, a
// setuid binary and a device node in a mounted image, and every API method on root's objects. Root-owned decoys
// are hashed before and after: nothing outside the user's own files may be read, written, created, deleted or
// mounted over. Meanwhile another caller pings the daemon and must be answered throughout.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { methods } from '../../protocol/messages.ts';
import type { Job } from '../../protocol/model.ts';
import { StateStore } from '../config/state.ts';
import { defaultRunners } from '../jobs/runners.ts';
import { nativeHelperAvailable } from '../native/index.ts';
import { tapUnavailableReason } from '../tap/system-state.ts';
import { attachLoop, type LoopDevice } from '../testing/loop.ts';
import { missingToolReason, runTool } from '../testing/tools.ts';
import { SocketClient } from './client.ts';
import { Engine } from './engine.ts';
import { UnixServer } from './unix-server.ts';

/** The hostile user: a uid and gid nothing else on the machine uses. */
const ATTACKER = 64123;
const agentScript = fileURLToPath(new URL('../testing/hostile-caller.ts', import.meta.url));
/** Rounds of each continuous race (DISKLINE_ATTACK_ROUNDS raises them for a soak run). */
const RACE_ROUNDS = Number(process.env.DISKLINE_ATTACK_ROUNDS ?? 150);
/** Generous guard against a hung test, never a measure of speed. */
const GUARD_MS = 120_000;
/** An object-store repository (never contacted: the call is refused before that). */
const OBJECT_STORE = 's3:http://127.0.0.1:9/root-bucket/repo';

function skipReason(): string | null {
  if (process.getuid?.() !== 0)
    return 'the attack suite needs root (a root engine, a child with another uid)';
  if (!nativeHelperAvailable()) return 'the native helper is not built (npm run build)';
  if (
    spawnSync('setpriv', ['--reuid', String(ATTACKER), '--regid', String(ATTACKER), '--clear-groups', 'true'])
      .status !== 0
  )
    return 'setpriv cannot switch to another uid here';
  return tapUnavailableReason() ?? missingToolReason('mkfs.ext4', 'losetup', 'mknod');
}
const skip = skipReason();

/** The attacker's side: commands go to the agent on stdin, answers come back by id. */
class HostileCaller {
  #child: ChildProcess;
  #nextId = 1;
  #waiting = new Map<number, (line: { ok: boolean; answer?: unknown; error?: string }) => void>();
  stderr = '';

  /** `groups`: supplementary groups of the caller (none by default). */
  constructor(socket: string, home: string, groups: number[] = []) {
    this.#child = spawn(
      'setpriv',
      [
        '--reuid',
        String(ATTACKER),
        '--regid',
        String(ATTACKER),
        ...(groups.length ? ['--groups', groups.join(',')] : ['--clear-groups']),
        process.execPath,
        agentScript,
        'agent',
        socket,
      ],
      { cwd: home, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.#child.stderr?.on('data', (data) => {
      this.stderr += data;
    });
    this.#child.once('exit', () => {
      for (const waiting of this.#waiting.values())
        waiting({ ok: false, error: `the hostile caller exited: ${this.stderr}` });
      this.#waiting.clear();
    });
    createInterface({ input: this.#child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const message = JSON.parse(line);
      this.#waiting.get(message.id)?.(message);
      this.#waiting.delete(message.id);
    });
  }

  async send<T = unknown>(command: Record<string, unknown>): Promise<T> {
    const id = this.#nextId++;
    const answer = await new Promise<{ ok: boolean; answer?: unknown; error?: string }>((resolve) => {
      this.#waiting.set(id, resolve);
      this.#child.stdin?.write(`${JSON.stringify({ ...command, id })}\n`);
    });
    if (!answer.ok) throw new Error(`the hostile caller failed at ${command.op}: ${answer.error}`);
    return answer.answer as T;
  }

  call(
    method: string,
    params: unknown,
  ): Promise<{ ok: boolean; result?: unknown; error?: { code: string; message: string } }> {
    return this.send({ op: 'call', method, params });
  }

  fs(action: string, ...args: string[]): Promise<unknown> {
    return this.send({ op: 'fs', action, args });
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.stdin?.end();
    await exited;
  }
}

/** A process of the attacker that flips `path` between its own file (or directory) and a link, until stopped. */
function startFlipper(
  path: string,
  linkTarget: string,
  kind: 'file' | 'dir',
  cwd: string,
): { stop(): Promise<void> } {
  const child = spawn(
    'setpriv',
    [
      '--reuid',
      String(ATTACKER),
      '--regid',
      String(ATTACKER),
      '--clear-groups',
      process.execPath,
      agentScript,
      'flip',
      path,
      linkTarget,
      kind,
    ],
    { cwd, stdio: 'ignore' },
  );
  return {
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Every entry under `dir` (not following links): type, owner, mode, and a hash of a file's bytes. */
async function fingerprint(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (path: string, relative: string) => {
    const info = await lstat(path);
    let what = `${info.mode.toString(8)} ${info.uid}:${info.gid}`;
    if (info.isFile())
      what += ` ${createHash('sha256')
        .update(await readFile(path))
        .digest('hex')}`;
    else if (info.isSymbolicLink()) what += ` -> ${await readlink(path)}`;
    found.set(relative || '.', what);
    if (info.isDirectory()) {
      for (const name of (await readdir(path)).sort()) await walk(join(path, name), join(relative, name));
    }
  };
  await walk(dir, '');
  return found;
}

/** Mount points at or under `dir`, from the kernel's table. */
async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  return table
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}

let base: string;
let rootDir: string;
let home: string;
let engine: Engine;
let server: UnixServer;
let root: SocketClient;
let attacker: HostileCaller;
let decoysBefore: Map<string, string>;
let decoyLoop: LoopDevice | null = null;
/** A ping slower than this means the engine was held, not that the machine was busy. */
const STALLED_MS = 15_000;

/** The pinger: another caller's round trips while the attacks run. */
let pinging = true;
let pinger: Promise<number[]> = Promise.resolve([]);

const rootObjects = {
  repo: '',
  point: '',
  fsPoint: '',
  mount: '',
  volume: '',
  job: '',
  plan: '',
};
const own = { repo: '', small: '', smallPoint: '', fsImage: '', fsPoint: '' };

/** Resolves when root's job has ended: from its events (or the list, if it ended before we looked). */
async function rootJobDone(job: Job): Promise<Job> {
  const ended = (candidate: Job) =>
    candidate.id === job.id && !['queued', 'running'].includes(candidate.state);
  let stop = () => {};
  const fromEvents = new Promise<Job>((resolve) => {
    stop = root.on('job.updated', (update) => {
      if (ended(update)) resolve(update);
    });
  });
  const listed = (await root.call('jobs.list', {})).find(ended);
  const result = listed ?? (await fromEvents);
  stop();
  return result;
}

async function attackerJobDone(id: string): Promise<{ state: string }> {
  return attacker.send({ op: 'jobEnd', job: id });
}

/** An ext4 image holding a setuid-root copy of `id` and a device node for root's decoy disk. */
async function makeHostileImage(path: string, decoyDisk: string): Promise<void> {
  await writeFile(path, Buffer.alloc(0));
  await runTool('truncate', ['-s', '16M', path]);
  await runTool('mkfs.ext4', ['-q', '-F', path]);
  const mnt = await mkdtemp(join(base, 'build-'));
  const loop = await attachLoop(path);
  try {
    await runTool('mount', [loop.device, mnt]);
    try {
      await runTool('cp', ['/usr/bin/id', join(mnt, 'suid-id')]);
      await chmod(join(mnt, 'suid-id'), 0o4755);
      const info = await lstat(decoyDisk);
      const rdev = info.rdev;
      await runTool('mknod', [
        join(mnt, 'rootdisk'),
        'b',
        String(Math.floor(rdev / 256) & 0xfff),
        String(rdev & 0xff),
      ]);
      await chmod(join(mnt, 'rootdisk'), 0o666);
    } finally {
      await runTool('umount', [mnt]);
    }
  } finally {
    await loop.detach();
    await rm(mnt, { recursive: true, force: true });
  }
}

before(async () => {
  if (skip) return;
  await setUp().catch((error: Error) => {
    process.stderr.write(`# the attack suite could not set up: ${error.stack}\n`);
    throw error;
  });
});

async function setUp(): Promise<void> {
  base = await mkdtemp(join(tmpdir(), 'diskline-attacks-'));
  await chmod(base, 0o755);
  // Root's things: decoys the user must never touch, a repository with points, a plan, a mount and a volume.
  rootDir = join(base, 'root');
  await mkdir(rootDir, { mode: 0o700 });
  await writeFile(join(rootDir, 'secret.img'), randomBytes(3 << 20), { mode: 0o600 });
  await writeFile(join(rootDir, 'shadow'), 'root:$6$decoy:19000:0:99999:7:::\n', { mode: 0o600 });
  await writeFile(join(rootDir, 'volume.img'), Buffer.alloc(4 << 20));
  await mkdir(join(rootDir, 'mnt'));
  decoyLoop = await attachLoop(join(rootDir, 'secret.img'), { readOnly: true });
  await makeHostileImage(join(rootDir, 'fs.img'), decoyLoop.device);

  const state = await StateStore.open(join(base, 'state'));
  state.config.allowedUids.push(ATTACKER);
  rootObjects.repo = join(rootDir, 'repo');
  state.config.repositories.rootrepo = rootObjects.repo;
  // The boot setup protect would change: a scratch root, checked untouched after the attacks.
  engine = new Engine({
    state,
    runners: defaultRunners(state),
    protectionSystem: { root: join(base, 'system-root'), updateInitramfs: null },
  });
  await engine.start({ schedules: false, recover: false, reattach: false });
  server = new UnixServer(engine, join(base, 'engine.sock'));
  await server.listen({ mode: 0o666 });
  root = await SocketClient.connect(server.path);

  await root.call('repo.init', { repo: rootObjects.repo, encrypted: false });
  const rootBackup = await rootJobDone(
    await root.call('backup.start', { source: join(rootDir, 'secret.img'), repo: rootObjects.repo }),
  );
  assert.equal(rootBackup.state, 'succeeded', rootBackup.error ?? '');
  rootObjects.job = rootBackup.id;
  rootObjects.point = String(rootBackup.result?.point);
  const fsBackup = await rootJobDone(
    await root.call('backup.start', { source: join(rootDir, 'fs.img'), repo: rootObjects.repo }),
  );
  rootObjects.fsPoint = String(fsBackup.result?.point);
  rootObjects.mount = (
    await root.call('mount.start', {
      repo: rootObjects.repo,
      point: rootObjects.fsPoint,
      dir: join(rootDir, 'mnt'),
    })
  ).path;
  rootObjects.volume = (await root.call('volumes.attach', { source: join(rootDir, 'volume.img') })).source;
  rootObjects.plan = (
    await root.call('plans.save', {
      id: '',
      name: 'root nightly',
      source: join(rootDir, 'secret.img'),
      repo: rootObjects.repo,
      schedule: null,
      retention: {},
      container: { kind: 'memory', capacityBytes: 1 << 20 },
      enabled: true,
    })
  ).id;

  // The user's home: only it is theirs.
  home = join(base, 'home');
  await mkdir(home, { mode: 0o700 });
  await chown(home, ATTACKER, ATTACKER);
  own.small = join(home, 'small.img');
  await writeFile(own.small, randomBytes(1 << 20));
  own.fsImage = join(home, 'fs.img');
  await writeFile(own.fsImage, await readFile(join(rootDir, 'fs.img')));
  for (const file of [own.small, own.fsImage]) await chown(file, ATTACKER, ATTACKER);

  decoysBefore = await fingerprint(rootDir);

  // Another caller: pings the daemon back to back for as long as the attacks run.
  const pingClient = await SocketClient.connect(server.path);
  pinger = (async () => {
    const roundTrips: number[] = [];
    while (pinging) {
      const sent = performance.now();
      await pingClient.call('engine.status', {});
      roundTrips.push(performance.now() - sent);
      // Let the event loop breathe between pings so the pinger measures, not loads, the daemon.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await pingClient.close();
    return roundTrips;
  })();

  attacker = new HostileCaller(server.path, home);
  own.repo = join(home, 'repo');
  const init = await attacker.call('repo.init', { repo: own.repo, encrypted: false });
  assert.ok(init.ok, JSON.stringify(init.error));
  for (const [source, key] of [
    [own.small, 'smallPoint'],
    [own.fsImage, 'fsPoint'],
  ] as const) {
    const started = await attacker.call('backup.start', { source, repo: own.repo });
    assert.ok(started.ok, JSON.stringify(started.error));
    const job = started.result as Job;
    assert.equal((await attackerJobDone(job.id)).state, 'succeeded');
    const points = (await attacker.call('points.list', { repo: own.repo })).result as {
      id: string;
      sourceSize: number;
    }[];
    own[key] =
      points.find((point) => point.sourceSize === (key === 'smallPoint' ? 1 << 20 : 16 << 20))?.id ?? '';
  }
  assert.ok(own.smallPoint && own.fsPoint, 'the user backed up its own images');
}

after(async () => {
  if (skip) return;
  pinging = false;
  await pinger.catch(() => []);
  await attacker?.stop();
  await root?.close();
  await server?.close();
  await engine?.stop();
  await decoyLoop?.detach();
  await rm(base, { recursive: true, force: true });
});

/** For each method: a call on root's objects that must be refused, or a check that it shows nothing of root's. */
type Attempt = { params: () => unknown; shows?: (result: unknown) => void };
const attempts: Record<string, Attempt[]> = {
  'engine.status': [
    {
      params: () => ({}),
      shows: (result) => {
        const status = result as { repositories: unknown[]; defaultRepo: unknown };
        assert.deepEqual(status.repositories, [], "root's named repositories are not shown");
      },
    },
  ],
  'drives.list': [{ params: () => ({}), shows: () => {} }],
  'points.list': [
    { params: () => ({ repo: rootObjects.repo }) },
    { params: () => ({ repo: 'rootrepo' }) },
    { params: () => ({ repo: OBJECT_STORE }) },
  ],
  'repo.init': [
    { params: () => ({ repo: join(rootDir, 'new-repo'), encrypted: false }) },
    { params: () => ({ repo: OBJECT_STORE, encrypted: false }) },
  ],
  'backup.start': [
    { params: () => ({ source: own.small, repo: OBJECT_STORE }) },
    { params: () => ({ source: join(rootDir, 'secret.img'), repo: own.repo }) },
    { params: () => ({ source: own.small, repo: rootObjects.repo }) },
    { params: () => ({ source: decoyLoop?.device, repo: own.repo }) },
    {
      params: () => ({
        source: own.small,
        repo: own.repo,
        container: { kind: 'file', path: join(rootDir, 'container'), capacityBytes: 1 << 20 },
      }),
    },
  ],
  'restore.preview': [
    { params: () => ({ repo: rootObjects.repo, point: rootObjects.point, to: join(home, 'stolen.img') }) },
    { params: () => ({ repo: own.repo, point: own.smallPoint, to: join(rootDir, 'shadow') }) },
    { params: () => ({ repo: own.repo, point: own.smallPoint, to: decoyLoop?.device }) },
  ],
  'restore.start': [
    {
      params: () => ({
        repo: rootObjects.repo,
        point: rootObjects.point,
        to: join(home, 'stolen.img'),
        confirmToken: 'x',
      }),
    },
    {
      params: () => ({
        repo: own.repo,
        point: own.smallPoint,
        to: join(rootDir, 'created.img'),
        confirmToken: 'x',
      }),
    },
  ],
  'verify.start': [
    { params: () => ({ repo: rootObjects.repo }) },
    // An object store is reached with the engine's credentials: naming one is root's.
    { params: () => ({ repo: OBJECT_STORE }) },
  ],
  'prune.start': [
    { params: () => ({ repo: rootObjects.repo, retention: { keepLast: 0 } }) },
    { params: () => ({ repo: OBJECT_STORE, retention: { keepLast: 0 } }) },
  ],
  'copy.start': [
    { params: () => ({ from: rootObjects.repo, to: own.repo, points: [rootObjects.point] }) },
    { params: () => ({ from: own.repo, to: rootObjects.repo, points: [own.smallPoint] }) },
    { params: () => ({ from: own.repo, to: OBJECT_STORE, points: [own.smallPoint] }) },
  ],
  'repo.checkS3': [{ params: () => ({ location: OBJECT_STORE }) }],
  'drill.start': [{ params: () => ({ repo: rootObjects.repo, point: rootObjects.point }) }],
  'mount.start': [
    { params: () => ({ repo: rootObjects.repo, point: rootObjects.fsPoint, dir: join(home) }) },
    { params: () => ({ repo: own.repo, point: own.fsPoint, dir: join(rootDir, 'mnt') }) },
    { params: () => ({ repo: own.repo, point: own.fsPoint }) },
  ],
  'mount.stop': [{ params: () => ({ path: rootObjects.mount }) }],
  'volumes.attach': [{ params: () => ({ source: join(rootDir, 'volume.img') }) }],
  'volumes.detach': [{ params: () => ({ source: rootObjects.volume }) }],
  'jobs.list': [
    {
      params: () => ({}),
      shows: (result) =>
        assert.ok(!(result as Job[]).some((job) => job.owner !== ATTACKER), "root's jobs are not listed"),
    },
  ],
  'jobs.cancel': [{ params: () => ({ id: rootObjects.job }) }],
  'plans.list': [
    { params: () => ({}), shows: (result) => assert.deepEqual(result, [], "root's plans are not listed") },
  ],
  'plans.save': [
    {
      params: () => ({
        id: rootObjects.plan,
        name: 'hijacked',
        source: own.small,
        repo: own.repo,
        schedule: null,
        retention: {},
        container: { kind: 'memory', capacityBytes: 1 << 20 },
        enabled: true,
      }),
    },
  ],
  'plans.delete': [{ params: () => ({ id: rootObjects.plan }) }],
  'plans.runNow': [{ params: () => ({ id: rootObjects.plan }) }],
  'schedules.setPaused': [{ params: () => ({ paused: true }) }],
  'blockmap.subscribe': [{ params: () => ({ jobId: rootObjects.job, cells: 16 }) }],
  // Reading protection is reading drives; a root file named as a disk is answered as no disk at all.
  'protection.list': [
    {
      params: () => ({}),
      shows: (result) => assert.ok(Array.isArray(result), 'every disk is listed as for drives.list'),
    },
  ],
  // Changing the boot setup is root's, even naming a disk with its confirmation.
  'protection.protect': [
    { params: () => ({ device: decoyLoop?.device, confirm: decoyLoop?.device }) },
    { params: () => ({ device: '/dev/no-such-disk', confirm: '/dev/no-such-disk' }) },
  ],
  'protection.unprotect': [{ params: () => ({ device: decoyLoop?.device, confirm: decoyLoop?.device }) }],
};

test("every API method on root's objects answers a user allowed on the socket with forbidden", {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  const missing = Object.keys(methods).filter((method) => !attempts[method]?.length);
  assert.deepEqual(missing, [], 'every method of the API has attacks here (add them with the method)');
  for (const [method, list] of Object.entries(attempts)) {
    for (const attempt of list) {
      const params = attempt.params();
      const answer = await attacker.call(method, params);
      if (attempt.shows) {
        assert.ok(answer.ok, `${method} answers: ${JSON.stringify(answer.error)}`);
        attempt.shows(answer.result);
      } else {
        assert.equal(answer.ok, false, `${method} ${JSON.stringify(params)} was allowed`);
        assert.equal(
          answer.error?.code,
          'forbidden',
          `${method} ${JSON.stringify(params)}: ${answer.error?.message}`,
        );
      }
    }
  }
  assert.ok(!existsSync(join(base, 'system-root')), 'the boot setup was not touched');
  // Root's objects are all still there.
  const status = await root.call('jobs.list', {});
  assert.ok(status.some((job) => job.id === rootObjects.job));
  assert.ok((await root.call('plans.list', {})).some((plan) => plan.id === rootObjects.plan));
  assert.deepEqual(await mountsUnder(join(rootDir, 'mnt')), [join(rootDir, 'mnt')]);
  // Events about root's jobs never reached the user.
  const events = await attacker.send<{ jobs: Job[] }>({ op: 'events' });
  assert.ok(events.jobs.length > 0, 'the user saw its own jobs');
  assert.ok(
    events.jobs.every((job) => job.owner === ATTACKER),
    "no event of root's jobs reached the user",
  );
});

test("dangling links, links to root files and links as parents are never followed into root's files", {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  await attacker.fs('symlink', join(rootDir, 'created-by-engine.img'), join(home, 'dangling.img'));
  await attacker.fs('symlink', join(rootDir, 'shadow'), join(home, 'shadow-link'));
  await attacker.fs('symlink', rootDir, join(home, 'rootdir-link'));
  const refusals: [string, unknown][] = [
    ['restore.preview', { repo: own.repo, point: own.smallPoint, to: join(home, 'dangling.img') }],
    [
      'restore.start',
      { repo: own.repo, point: own.smallPoint, to: join(home, 'dangling.img'), confirmToken: 'x' },
    ],
    [
      'restore.start',
      { repo: own.repo, point: own.smallPoint, to: join(home, 'shadow-link'), confirmToken: 'x' },
    ],
    [
      'restore.start',
      { repo: own.repo, point: own.smallPoint, to: join(home, 'rootdir-link', 'new.img'), confirmToken: 'x' },
    ],
    ['backup.start', { source: join(home, 'shadow-link'), repo: own.repo }],
    ['volumes.attach', { source: join(home, 'shadow-link') }],
    ['repo.init', { repo: join(home, 'rootdir-link', 'repo'), encrypted: false }],
    ['mount.start', { repo: own.repo, point: own.fsPoint, dir: join(home, 'rootdir-link', 'mnt') }],
    ['backup.start', { source: own.small, repo: join(home, 'rootdir-link', 'repo') }],
  ];
  for (const [method, params] of refusals) {
    const answer = await attacker.call(method, params);
    assert.equal(
      answer.error?.code,
      'forbidden',
      `${method} ${JSON.stringify(params)}: ${JSON.stringify(answer)}`,
    );
  }
  // A restore target inside the repository it restores from is refused: it would destroy the repository.
  await attacker.fs('write', join(own.repo, 'inside.img'), 'x');
  const inside = await attacker.call('restore.preview', {
    repo: own.repo,
    point: own.smallPoint,
    to: join(own.repo, 'inside.img'),
  });
  assert.equal(inside.error?.code, 'refused');
  assert.match(
    inside.error?.message ?? '',
    /is inside the repository .*; restoring there would destroy the repository/,
  );
  await attacker.fs('unlink', join(own.repo, 'inside.img'));
  // A FIFO is neither a disk nor an image: refused at once, never opened (it would block).
  await attacker.fs('mkfifo', join(home, 'fifo'));
  const fifo = await attacker.call('backup.start', { source: join(home, 'fifo'), repo: own.repo });
  assert.equal(fifo.error?.code, 'refused');
  assert.match(fifo.error?.message ?? '', /is neither a disk nor an image file/);
  assert.deepEqual(await fingerprint(rootDir), decoysBefore);
});

test("a target swapped for a link to a root file right after restore.start answers: the user's file is restored, root's is not touched", {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  const tally = await attacker.send<Record<string, number>>({
    op: 'swapAfterStart',
    repo: own.repo,
    point: own.smallPoint,
    to: join(home, 'swapped.img'),
    decoy: join(rootDir, 'shadow'),
    rounds: 20,
  });
  assert.deepEqual(tally, { 'restore succeeded': 20 });
  // The last round's file (put back by the attacker) holds the point's bytes.
  assert.deepEqual(await readFile(join(home, 'swapped.img')), await readFile(own.small));
  assert.deepEqual(await fingerprint(rootDir), decoysBefore);
});

test(`continuous flip races (${RACE_ROUNDS} rounds each): restore targets, parent directories and backup sources never reach root's files`, {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  await attacker.fs('mkdir', join(home, 'race'));
  const flippers = [
    startFlipper(join(home, 'race', 'target.img'), join(rootDir, 'shadow'), 'file', home),
    startFlipper(join(home, 'race', 'dir'), rootDir, 'dir', home),
    startFlipper(join(home, 'race', 'source.img'), join(rootDir, 'secret.img'), 'file', home),
  ];
  try {
    const [targets, parents, sources] = await Promise.all([
      attacker.send<Record<string, number>>({
        op: 'restoreRounds',
        repo: own.repo,
        point: own.smallPoint,
        to: join(home, 'race', 'target.img'),
        rounds: RACE_ROUNDS,
      }),
      attacker.send<Record<string, number>>({
        op: 'restoreRounds',
        repo: own.repo,
        point: own.smallPoint,
        to: join(home, 'race', 'dir', 'new.img'),
        rounds: RACE_ROUNDS,
      }),
      attacker.send<Record<string, number>>({
        op: 'backupRounds',
        repo: own.repo,
        source: join(home, 'race', 'source.img'),
        rounds: Math.ceil(RACE_ROUNDS / 3),
      }),
    ]);
    process.stdout.write(
      `# flip race outcomes: targets ${JSON.stringify(targets)}, parents ${JSON.stringify(parents)}, sources ${JSON.stringify(sources)}\n`,
    );
    for (const tally of [targets, parents]) {
      assert.equal(
        Object.values(tally).reduce((sum, n) => sum + n, 0),
        RACE_ROUNDS,
      );
    }
  } finally {
    for (const flipper of flippers) await flipper.stop();
  }
  // No point of the user's repository came from root's 3 MiB secret.
  const points = (await root.call('points.list', { repo: own.repo })).map((point) => point.sourceSize);
  assert.ok(!points.includes(3 << 20), `a point of root's secret is in the user's repository: ${points}`);
  assert.deepEqual(await fingerprint(rootDir), decoysBefore);
  assert.deepEqual(await mountsUnder(rootDir), [join(rootDir, 'mnt')]);
});

test('a plan source swapped after plans.save is refused when the plan runs; a root plan never follows a link the user planted', {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  const planSource = join(home, 'plan.img');
  await attacker.fs('write', planSource, 'mine\n');
  const saved = await attacker.call('plans.save', {
    id: '',
    name: 'mine',
    source: planSource,
    repo: own.repo,
    schedule: null,
    retention: {},
    container: { kind: 'memory', capacityBytes: 1 << 20 },
    enabled: true,
  });
  assert.ok(saved.ok, JSON.stringify(saved.error));
  await attacker.fs('unlink', planSource);
  await attacker.fs('symlink', join(rootDir, 'secret.img'), planSource);
  const run = await attacker.call('plans.runNow', { id: (saved.result as { id: string }).id });
  assert.equal(run.error?.code, 'failed');
  assert.match(run.error?.message ?? '', /is not a file of yours/);
  // Root's plan over a user's file: the user swaps it for a link to root's secret; root's run does not follow it.
  await attacker.fs('unlink', planSource);
  await attacker.fs('write', planSource, 'mine again\n');
  const rootPlan = await root.call('plans.save', {
    id: '',
    name: 'root over a user file',
    source: planSource,
    repo: rootObjects.repo,
    schedule: null,
    retention: {},
    container: { kind: 'memory', capacityBytes: 1 << 20 },
    enabled: true,
  });
  await attacker.fs('unlink', planSource);
  await attacker.fs('symlink', join(rootDir, 'shadow'), planSource);
  await assert.rejects(root.call('plans.runNow', { id: rootPlan.id }), /a symbolic link owned by uid 64123/);
  await root.call('plans.delete', { id: rootPlan.id });
  assert.deepEqual(await fingerprint(rootDir), decoysBefore);
});

test('a mounted point is read-only, nosuid, nodev, noexec: its setuid binary and device node give the user nothing; the mount ends with the connection', {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  const mnt = join(home, 'mnt');
  await attacker.fs('mkdir', mnt);
  const mounted = await attacker.call('mount.start', { repo: own.repo, point: own.fsPoint, dir: mnt });
  assert.ok(mounted.ok, JSON.stringify(mounted.error));
  const options = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .find((line) => line.split(' ')[1] === mnt)
    ?.split(' ')[3]
    ?.split(',');
  for (const option of ['ro', 'nosuid', 'nodev', 'noexec'])
    assert.ok(options?.includes(option), `${option} in ${options}`);
  const exec = (await attacker.fs('exec', join(mnt, 'suid-id'), '-u')) as {
    status: number | null;
    stdout: string | null;
    error: string | null;
  };
  assert.notEqual(String(exec.stdout ?? '').trim(), '0', 'the setuid binary ran as root');
  assert.equal(exec.status, null, 'noexec: it did not run at all');
  assert.match(exec.error ?? '', /EACCES/);
  const read = (await attacker.fs('exec', '/usr/bin/head', '-c', '16', join(mnt, 'rootdisk'))) as {
    status: number;
    stderr: string;
  };
  assert.notEqual(read.status, 0, 'nodev: the device node does not open');
  assert.match(read.stderr, /Permission denied/);
  // The user's mount lasts as long as its connection: a new caller takes over for the rest of the suite.
  await attacker.send({ op: 'disconnect' });
  await attacker.stop();
  const deadline = Date.now() + GUARD_MS;
  while ((await mountsUnder(mnt)).length && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(await mountsUnder(mnt), []);
  attacker = new HostileCaller(server.path, home);
  assert.deepEqual(await fingerprint(rootDir), decoysBefore);
});

test("a block device is root's unless the device policy shares it with a group of the caller", {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  const DISK_GROUP = 64200;
  await writeFile(join(base, 'shared.img'), Buffer.alloc(1 << 20), { mode: 0o600 });
  const shared = await attachLoop(join(base, 'shared.img'));
  const member = new HostileCaller(server.path, home, [DISK_GROUP]);
  try {
    const preview = { repo: own.repo, point: own.smallPoint, to: shared.device };
    const refused = await member.call('restore.preview', preview);
    assert.equal(refused.error?.code, 'forbidden');
    assert.match(
      refused.error?.message ?? '',
      /is a block device, which only root may use as a restore target unless/,
    );
    engine.state.config.deviceGroups[shared.device] = String(DISK_GROUP);
    const allowed = await member.call('restore.preview', preview);
    assert.ok(allowed.ok, JSON.stringify(allowed.error));
    assert.equal((allowed.result as { targetKind: string }).targetKind, 'device');
    // Shared with that group only: the same user without it, and root's other disks, stay refused.
    assert.equal((await attacker.call('restore.preview', preview)).error?.code, 'forbidden');
    const other = await member.call('restore.preview', { ...preview, to: decoyLoop?.device });
    assert.equal(other.error?.code, 'forbidden');
  } finally {
    delete engine.state.config.deviceGroups[shared.device];
    await member.stop();
    await shared.detach();
  }
  assert.deepEqual(await fingerprint(rootDir), decoysBefore);
});

test('the daemon kept answering another caller throughout the attacks', {
  skip: skip ?? false,
  timeout: GUARD_MS,
}, async () => {
  pinging = false;
  const roundTrips = await pinger;
  // Folded, not spread: a long run gathers more pings than a call can take as arguments.
  const slowest = roundTrips.reduce((most, each) => Math.max(most, each), 0);
  process.stdout.write(`# ${roundTrips.length} pings, slowest ${slowest.toFixed(1)} ms\n`);
  assert.ok(roundTrips.length > 10, 'the pinger ran throughout');
  // What a hostile name does to an engine that trusts it (a FIFO opened, a device read) holds it until the
  // attacker lets go: for the rest of the attacks. A busy machine delays a ping by a second or two, not that.
  assert.ok(slowest < STALLED_MS, `a ping waited ${slowest.toFixed(0)} ms: the engine was stalled`);
  assert.ok(existsSync(join(rootDir, 'shadow')));
});
