// The native helper's small system calls, against real sockets, real loop devices and a real ext4 mount.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  allocAligned,
  blockDeviceSectorSize,
  blockDeviceSize,
  freeze,
  nativeHelperAvailable,
  peerCredentials,
  thaw,
} from './index.ts';

const built = nativeHelperAvailable();
const isRoot = process.getuid?.() === 0;

test('allocAligned returns zeroed memory aligned for O_DIRECT that reads a file with O_DIRECT', {
  skip: !built && 'native helper not built (npm run build)',
}, async () => {
  const buffer = allocAligned(1 << 16);
  assert.equal(buffer.byteLength, 1 << 16);
  assert.ok(new Uint8Array(buffer).every((b) => b === 0));
  const dir = mkdtempSync(join(tmpdir(), 'diskline-native-'));
  try {
    const file = join(dir, 'data');
    const content = Buffer.alloc(1 << 16, 0x5a);
    writeFileSync(file, content);
    const { constants, readSync } = await import('node:fs');
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_DIRECT);
    } catch {
      return; // tmpfs refuses O_DIRECT; alignment itself was checked above
    }
    try {
      const view = new Uint8Array(buffer);
      assert.equal(readSync(fd, view, 0, view.length, 0), 1 << 16);
      assert.ok(Buffer.from(buffer).equals(content));
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('allocAligned rejects an alignment that is not a power of two', {
  skip: !built && 'native helper not built',
}, () => {
  assert.throws(() => allocAligned(4096, 3000), /alignment a power of two/);
});

test('peerCredentials reports this process at the other end of a unix socket', {
  skip: !built && 'native helper not built',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'diskline-native-'));
  const socketPath = join(dir, 'sock');
  const server = createServer();
  try {
    const accepted = new Promise<number>((resolve) => {
      server.on('connection', (socket) =>
        resolve((socket as unknown as { _handle: { fd: number } })._handle.fd),
      );
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const client = connect(socketPath);
    const fd = await accepted;
    const credentials = peerCredentials(fd);
    assert.deepEqual(credentials, { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
    client.destroy();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peerCredentials on a non-socket fd says what failed', {
  skip: !built && 'native helper not built',
}, () => {
  const fd = openSync('/dev/null', 'r');
  try {
    assert.throws(() => peerCredentials(fd), { code: 'ENOTSOCK', message: /SO_PEERCRED/ });
  } finally {
    closeSync(fd);
  }
});

test('blockDeviceSize and freeze/thaw work on a real loop device with ext4', {
  skip: (!built && 'native helper not built') || (!isRoot && 'needs root for loop devices and mounts'),
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'diskline-native-'));
  const image = join(dir, 'disk.img');
  const mountDir = join(dir, 'mnt');
  let loop = '';
  let mounted = false;
  try {
    execFileSync('truncate', ['-s', '32M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    const fd = openSync(loop, 'r');
    try {
      assert.equal(blockDeviceSize(fd), 32 * 1024 * 1024);
      assert.equal(blockDeviceSectorSize(fd), 512);
    } finally {
      closeSync(fd);
    }
    execFileSync('mkdir', [mountDir]);
    execFileSync('mount', [loop, mountDir]);
    mounted = true;
    freeze(mountDir);
    // A second freeze of a frozen file system is refused with EBUSY: proof the first one took.
    assert.throws(() => freeze(mountDir), { code: 'EBUSY' });
    thaw(mountDir);
    writeFileSync(join(mountDir, 'after-thaw'), 'ok');
    assert.throws(() => thaw(mountDir), { code: 'EINVAL' });
  } finally {
    if (mounted) execFileSync('umount', [mountDir]);
    if (loop) execFileSync('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('blockDeviceSize on a regular file says it is not a block device', {
  skip: !built && 'native helper not built',
}, () => {
  const fd = openSync('/dev/null', 'r');
  try {
    assert.throws(() => blockDeviceSize(fd), /BLKGETSIZE64.*block device/);
  } finally {
    closeSync(fd);
  }
});

test('freezeAsync/thawAsync freeze and thaw on a worker thread', {
  skip: (!built && 'native helper not built') || (!isRoot && 'needs root for loop devices and mounts'),
}, async () => {
  const { freezeAsync, thawAsync } = await import('./index.ts');
  const dir = mkdtempSync(join(tmpdir(), 'diskline-native-'));
  const image = join(dir, 'disk.img');
  const mountDir = join(dir, 'mnt');
  let loop = '';
  let mounted = false;
  try {
    execFileSync('truncate', ['-s', '32M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    execFileSync('mkdir', [mountDir]);
    execFileSync('mount', [loop, mountDir]);
    mounted = true;
    await freezeAsync(mountDir);
    await assert.rejects(freezeAsync(mountDir), {
      code: 'EBUSY',
      message: new RegExp(`freeze ${mountDir} failed`),
    });
    await thawAsync(mountDir);
    await assert.rejects(thawAsync(join(dir, 'missing')), { message: /cannot open the mount point/ });
  } finally {
    if (mounted) execFileSync('umount', [mountDir]);
    if (loop) execFileSync('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
  }
});
