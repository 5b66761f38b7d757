// A real S3 store for tests and benchmarks: a one-node Ceph cluster (a monitor, one OSD keeping objects in
// memory, and radosgw) on 127.0.0.1, in a temporary directory, with free ports and a fresh user. Cold start takes
// a few seconds. Every daemon is a child of this process, run in the foreground, so stop() — or the test
// process ending — leaves nothing behind.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { S3Credentials } from '../backend/s3/signer.ts';
import { hasTool } from './tools.ts';

const execFileAsync = promisify(execFile);

/** Why no store can start here, or null. */
export function s3StoreUnavailableReason(): string | null {
  for (const tool of ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph']) {
    if (!hasTool(tool))
      return `${tool} is missing (Debian packages ceph-mon, ceph-osd, radosgw, ceph-common)`;
  }
  return null;
}

export interface S3Store {
  /** e.g. http://127.0.0.1:40123 */
  endpoint: string;
  credentials: S3Credentials;
  /** A repository location in a fresh bucket of this store. */
  location(bucket: string, prefix?: string): string;
  /** Kills radosgw (the store stops answering) — the fault a network drop or a store restart looks like. */
  killGateway(): Promise<void>;
  /** Starts radosgw again on the same port; resolves when it answers. */
  startGateway(): Promise<void>;
  /** Requests the gateway has answered since it started (its log's "req done" lines): what a paid store bills. */
  requestsServed(): Promise<number>;
  stop(): Promise<void>;
}

export async function startS3Store(): Promise<S3Store> {
  const base = await mkdtemp(join(tmpdir(), 'diskline-s3-'));
  const monPort = await freePort();
  const gatewayPort = await freePort();
  const conf = join(base, 'ceph.conf');
  const env = { ...process.env, CEPH_CONF: conf };
  const daemons = new Map<string, ChildProcess>();
  const fsid = randomUUID();
  for (const dir of ['mon', 'osd', 'rgw', 'log', 'run', 'asok']) await mkdir(join(base, dir));
  // One copy of everything, no authentication between daemons (loopback only), and fast consensus: what makes
  // a one-node cluster start in seconds.
  await writeFile(
    conf,
    `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
run dir = ${base}/run
admin socket = ${base}/asok/$name.asok
log file = ${base}/log/$name.log
mon cluster log file = ${base}/log/cluster.log
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail warn = 1
mon data avail crit = 0
[mon]
mon data = ${base}/mon/$cluster-$id
[osd]
osd data = ${base}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 8589934592
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.test]
rgw data = ${base}/rgw
rgw frontends = beast endpoint=127.0.0.1:${gatewayPort}
rgw enable usage log = false
rgw gc obj min wait = 0
`,
  );
  const run = (command: string, args: string[]) => execFileAsync(command, args, { env, maxBuffer: 1 << 20 });
  const daemon = (name: string, command: string, args: string[]) => {
    const child = spawn(command, [...args, '-f'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.resume();
    daemons.set(name, child);
    return child;
  };
  const stop = async () => {
    for (const name of ['rgw', 'osd', 'mon']) {
      const child = daemons.get(name);
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    }
    await rm(base, { recursive: true, force: true });
  };
  const gatewayAnswers = async () => {
    try {
      await fetch(`http://127.0.0.1:${gatewayPort}/`);
      return true;
    } catch {
      return false;
    }
  };
  const startGateway = async () => {
    const child = daemon('rgw', 'radosgw', ['-n', 'client.rgw.test']);
    await until(gatewayAnswers, child, 'radosgw to answer');
  };
  try {
    await run('monmaptool', [
      '--create',
      '--fsid',
      fsid,
      '--addv',
      'a',
      `[v2:127.0.0.1:${monPort}]`,
      join(base, 'monmap'),
    ]);
    await run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(base, 'monmap')]);
    const mon = daemon('mon', 'ceph-mon', ['-i', 'a']);
    await until(() => succeeds(run('ceph', ['-s', '--connect-timeout', '2'])), mon, 'the monitor to answer');
    const osdUuid = randomUUID();
    const osdId = (await run('ceph', ['osd', 'new', osdUuid])).stdout.trim();
    await mkdir(join(base, 'osd', `ceph-${osdId}`));
    await run('ceph-osd', ['-i', osdId, '--mkfs', '--osd-uuid', osdUuid]);
    const osd = daemon('osd', 'ceph-osd', ['-i', osdId]);
    await until(
      async () => (await run('ceph', ['osd', 'dump'])).stdout.includes(`osd.${osdId} up`),
      osd,
      'the OSD to come up',
    );
    await startGateway();
    const credentials = {
      accessKeyId: randomBytes(10).toString('hex').toUpperCase(),
      secretAccessKey: randomBytes(20).toString('base64url'),
    };
    await run('radosgw-admin', [
      'user',
      'create',
      '--uid=diskline-test',
      '--display-name=diskline test',
      `--access-key=${credentials.accessKeyId}`,
      `--secret-key=${credentials.secretAccessKey}`,
    ]);
    const endpoint = `http://127.0.0.1:${gatewayPort}`;
    return {
      endpoint,
      credentials,
      location: (bucket, prefix = 'repo') => `s3:${endpoint}/${bucket}/${prefix}`,
      killGateway: async () => {
        const child = daemons.get('rgw');
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      },
      startGateway,
      requestsServed: async () => {
        const log = await readFile(join(base, 'log', 'client.rgw.test.log'), 'utf8').catch(() => '');
        return log.split('====== req done').length - 1;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Checks `ready` again each time the previous check settles, until it holds; fails at once if the daemon it
 * waits for exits, and after a generous guard (a busy machine starts Ceph slowly, a broken one never).
 */
async function until(ready: () => Promise<boolean>, daemon: ChildProcess, what: string): Promise<void> {
  const guard = Date.now() + 120_000;
  while (!(await ready().catch(() => false))) {
    if (daemon.exitCode !== null || daemon.signalCode !== null) {
      throw new Error(
        `the S3 test store failed while waiting for ${what}: the daemon exited (${daemon.exitCode ?? daemon.signalCode})`,
      );
    }
    if (Date.now() > guard) throw new Error(`the S3 test store gave up waiting for ${what}`);
    // Each check is a process or a connection: pacing them keeps a slow start from spinning a core.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function succeeds(promise: Promise<unknown>): Promise<boolean> {
  try {
    await promise;
    return true;
  } catch {
    return false;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
