import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliRun, runCli } from '../../repository/testing/run-cli.ts';
import { type S3Store, s3StoreUnavailableReason, startS3Store } from '../../testing/s3-store.ts';
import { runTool } from '../../testing/tools.ts';
import { S3Backend } from './backend.ts';
import { parseS3Location, S3LocationError } from './location.ts';
import { Signer, sha256Hex } from './signer.ts';

/** A read limit no test file reaches. */
const ANY_SIZE = 1 << 30;

test('SigV4 signs the reference GET request of the S3 documentation to its published signature', () => {
  const signer = new Signer(
    { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    'us-east-1',
  );
  const headers = signer.sign(
    {
      method: 'GET',
      url: new URL('https://examplebucket.s3.amazonaws.com/test.txt'),
      headers: { range: 'bytes=0-9' },
      payloadSha256: sha256Hex(''),
    },
    new Date('2013-05-24T00:00:00Z'),
  );
  assert.equal(
    headers.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ' +
      'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, ' +
      'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  );
});

test('locations: path-style and virtual-host, prefixes, regions; credentials in a location are refused', () => {
  assert.deepEqual(parseS3Location('s3:http://127.0.0.1:7480/backups/office/pc1', {}), {
    endpoint: 'http://127.0.0.1:7480',
    bucket: 'backups',
    prefix: 'office/pc1/',
    virtualHost: false,
    region: 'us-east-1',
  });
  assert.deepEqual(parseS3Location('s3:https://backups.s3.eu-west-1.amazonaws.com/pc1', {}), {
    endpoint: 'https://backups.s3.eu-west-1.amazonaws.com',
    bucket: 'backups',
    prefix: 'pc1/',
    virtualHost: true,
    region: 'eu-west-1',
  });
  assert.equal(
    parseS3Location('s3:https://s3.example.com/bucket1', { DISKLINE_S3_REGION: 'garage' }).region,
    'garage',
  );
  assert.throws(
    () => parseS3Location('s3:https://key:secret@s3.example.com/bucket1', {}),
    (error: Error) => {
      assert.ok(error instanceof S3LocationError);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    },
  );
  assert.throws(() => parseS3Location('s3:https://s3.example.com/', {}), /names no bucket/);
  assert.throws(() => parseS3Location('s3:ftp://s3.example.com/bucket1', {}), /http or https/);
  assert.throws(() => parseS3Location('s3:https://s3.example.com/Bad_Bucket', {}), /not a valid bucket name/);
});

const unavailable = s3StoreUnavailableReason();

describe('against a real S3 store (Ceph radosgw on loopback)', { skip: unavailable ?? false }, () => {
  let store: S3Store;
  let dir: string;
  before(async () => {
    store = await startS3Store();
    dir = await mkdtemp(join(tmpdir(), 'diskline-s3-test-'));
  });
  after(async () => {
    await store?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const env = () => ({
    AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
    DISKLINE_PASSWORD: 'a passphrase for the S3 tests',
    DISKLINE_STATE_DIR: join(dir, 'state'),
  });

  test('the backend keeps the contract: whole and ranged reads, parts, create-once, listing past a page, delete', async () => {
    const backend = new S3Backend(store.location('contract'), {
      credentials: store.credentials,
      listPageSize: 7,
      // Small enough that the 17 MiB object below goes in parts.
      upload: { multipartThreshold: 16 << 20, partSize: 8 << 20 },
    });
    await backend.ensureBucket();
    await backend.put('config', Buffer.from('hello'));
    assert.equal((await backend.get('config', ANY_SIZE)).toString(), 'hello');
    assert.equal(await backend.size('config'), 5);
    assert.equal(await backend.size('missing'), null);
    await assert.rejects(
      backend.get('config', 4),
      { code: 'EUNSAFEFILE' },
      'a file larger than its kind may be is refused',
    );
    await assert.rejects(backend.get('missing', ANY_SIZE), { code: 'ENOENT' });
    assert.equal((await backend.getRange('config', 1, 3)).toString(), 'ell');
    assert.equal((await backend.getRange('config', 3, 10)).toString(), 'lo', 'a range past the end is short');
    assert.equal((await backend.getRange('config', 9, 3)).length, 0);
    const into = Buffer.alloc(8, 0xee);
    const view = await backend.getRange('config', 0, 4, into);
    assert.equal(view.toString(), 'hell');
    assert.equal(view.buffer, into.buffer, 'a ranged read lands in the buffer it is given');

    await backend.create('locks/one', Buffer.from('first'));
    await assert.rejects(backend.create('locks/one', Buffer.from('second')), { code: 'EEXIST' });
    assert.equal(
      (await backend.get('locks/one', ANY_SIZE)).toString(),
      'first',
      'a refused create changes nothing',
    );

    // Above the multipart threshold, in parts that do not line up with the part size.
    const big = randomBytes(17 << 20);
    await backend.put('packs/big', [
      big.subarray(0, 12345),
      big.subarray(12345, 9 << 20),
      big.subarray(9 << 20),
    ]);
    assert.ok((await backend.get('packs/big', ANY_SIZE)).equals(big));
    assert.ok(
      (await backend.getRange('packs/big', (8 << 20) - 5, 10)).equals(
        big.subarray((8 << 20) - 5, (8 << 20) + 5),
      ),
    );

    const names = Array.from({ length: 20 }, (_, i) => `index/entry ${i} +&=`);
    for (const name of names) await backend.put(name, Buffer.from(name));
    assert.deepEqual(
      (await backend.list('index/')).sort(),
      [...names].sort(),
      'every name once, across pages',
    );
    await backend.delete(names[0] as string);
    await backend.delete('index/never-there');
    assert.equal((await backend.list('index/')).length, 19);
  });

  test('backup, restore byte-exact, verify --read-data; a flipped byte in a stored pack is caught', async () => {
    const image = await ext4WithFiles(join(dir, 'flip'));
    const repo = store.location('roundtrip', 'machine-a');
    await cliOk(['init', '--repo', repo], env());
    await cliOk(['backup', image, '--repo', repo], env());
    const restored = join(dir, 'restored.img');
    await cliOk(['restore', 'latest', '--repo', repo, '--to', restored], env());
    assert.equal(await sha256File(restored), await sha256File(image));
    await cliOk(['verify', '--repo', repo, '--read-data'], env());

    const backend = new S3Backend(repo, { credentials: store.credentials });
    const pack = (await backend.list('packs/'))[0] as string;
    const bytes = await backend.get(pack, ANY_SIZE);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] as number) ^ 0x01;
    await backend.put(pack, bytes);
    const verify = await cli(['verify', '--repo', repo, '--read-data'], env());
    assert.equal(verify.status, 4, verify.stderr);
    assert.match(verify.stdout + verify.stderr, /damaged/);
    const again = await cli(
      ['restore', 'latest', '--repo', repo, '--to', join(dir, 'restored-again.img')],
      env(),
    );
    assert.notEqual(again.status, 0, 'a restore never succeeds over damaged data');
  });

  test('a store answering SlowDown and 503 to one request in ten: the backup completes and restores exact', async () => {
    const proxy = await faultyProxy(new URL(store.endpoint), (n) => n % 10 === 3);
    try {
      const image = await ext4WithFiles(join(dir, 'slowdown'));
      const repo = `s3:${proxy.endpoint}/slowdown/repo`;
      await cliOk(['init', '--repo', repo], env());
      await cliOk(['backup', image, '--repo', repo], env());
      assert.ok(proxy.faults() > 0, 'faults were injected');
      const restored = join(dir, 'slowdown-restored.img');
      await cliOk(['restore', 'latest', '--repo', repo, '--to', restored], env());
      assert.equal(await sha256File(restored), await sha256File(image));
    } finally {
      await proxy.close();
    }
  });

  test('the store killed and restarted mid-backup: the backup completes or fails cleanly, and the next one restores exact', async () => {
    const image = await ext4WithFiles(join(dir, 'outage'));
    const repo = store.location('outage', 'repo');
    await cliOk(['init', '--repo', repo], env());
    // Kill the gateway once the backup has written its first pack object, start it again once the client is
    // seen retrying against the dead port.
    let killed = false;
    let restarted: Promise<void> = Promise.resolve();
    const proxy = await faultyProxy(
      new URL(store.endpoint),
      () => false,
      async (req) => {
        if (!killed && req.method === 'PUT' && req.url?.includes('/packs/')) {
          killed = true;
          await store.killGateway();
          restarted = store.startGateway();
          restarted.catch(() => undefined);
        }
      },
    );
    try {
      const first = await cli(['backup', image, '--repo', `s3:${proxy.endpoint}/outage/repo`], env());
      assert.ok(killed, 'the gateway was killed during the backup');
      assert.ok(first.status === 0 || first.status === 1, `a clean outcome, not a crash: ${first.stderr}`);
      await restarted;
      await cliOk(['backup', image, '--repo', repo], env());
      const restored = join(dir, 'outage-restored.img');
      await cliOk(['restore', 'latest', '--repo', repo, '--to', restored], env());
      assert.equal(await sha256File(restored), await sha256File(image));
      await cliOk(['verify', '--repo', repo, '--read-data'], env());
    } finally {
      await proxy.close();
    }
  });
});

/** The command line, with the test's own engine state and socket (run-cli.ts) under the caller's env. */
const cli = runCli;

async function cliOk(args: string[], env: Record<string, string>): Promise<CliRun> {
  const run = await cli(args, env);
  assert.equal(run.status, 0, `diskline ${args.join(' ')}: ${run.stderr}`);
  return run;
}

/** An ext4 image of 96 MiB holding random files and text, made by mkfs from a directory (no mount needed). */
async function ext4WithFiles(base: string): Promise<string> {
  const files = `${base}-files`;
  await mkdir(files, { recursive: true });
  for (let i = 0; i < 6; i++) await writeFile(join(files, `random-${i}`), randomBytes((1 + i) << 20));
  await writeFile(join(files, 'text'), 'the same line again and again\n'.repeat(100_000));
  const image = `${base}.img`;
  await writeFile(image, Buffer.alloc(0));
  await truncate(image, 96 << 20);
  await runTool('mkfs.ext4', ['-q', '-F', '-d', files, image]);
  return image;
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/**
 * A loopback HTTP proxy in front of the store that answers 503 SlowDown where `fail(n)` says so for the n-th
 * request, and calls `onRequest` before forwarding (to break the store at a chosen moment). Host headers are
 * forwarded untouched, so signatures stay valid.
 */
async function faultyProxy(
  target: URL,
  fail: (n: number) => boolean,
  onRequest?: (req: IncomingMessage) => Promise<void>,
): Promise<{ endpoint: string; faults(): number; close(): Promise<void> }> {
  let count = 0;
  let faults = 0;
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const n = count++;
    const body: Buffer[] = [];
    for await (const chunk of req) body.push(chunk as Buffer);
    if (fail(n)) {
      faults++;
      res.writeHead(503, { 'content-type': 'application/xml' });
      res.end('<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>');
      return;
    }
    await onRequest?.(req);
    const forward = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upstream) => {
        res.writeHead(upstream.statusCode ?? 502, upstream.headers);
        upstream.pipe(res);
      },
    );
    forward.once('error', () => {
      // The store is down: the client sees a dropped connection, as it would on a real network.
      res.destroy();
    });
    forward.end(Buffer.concat(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    faults: () => faults,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
