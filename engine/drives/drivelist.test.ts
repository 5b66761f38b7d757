import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holdsRunningSystem } from './drivelist.ts';

test('a fixed disk holds the running system unless the system names the disks it runs from', () => {
  const saved = process.env.DISKLINE_SYSTEM_DISKS;
  try {
    delete process.env.DISKLINE_SYSTEM_DISKS;
    assert.equal(holdsRunningSystem({ device: '/dev/sda', isSystem: true }), true);
    assert.equal(holdsRunningSystem({ device: '/dev/sdb', isSystem: false }), false);
    process.env.DISKLINE_SYSTEM_DISKS = '/dev/sr0 /dev/sdc';
    assert.equal(holdsRunningSystem({ device: '/dev/sda', isSystem: true }), false);
    assert.equal(holdsRunningSystem({ device: '/dev/sdc', isSystem: false }), true);
    assert.equal(holdsRunningSystem({ device: '/dev/sr0', isSystem: true }), true);
  } finally {
    if (saved === undefined) delete process.env.DISKLINE_SYSTEM_DISKS;
    else process.env.DISKLINE_SYSTEM_DISKS = saved;
  }
});
