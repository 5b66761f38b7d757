import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { moduleClosure } from './kernel-modules.ts';

test('a wanted module comes after everything it needs, each once; one built in is not loaded; one the kernel lacks is named', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-modules-'));
  try {
    await writeFile(
      join(dir, 'modules.dep'),
      [
        'kernel/drivers/scsi/sr_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/cdrom/cdrom.ko',
        'kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko',
        'kernel/drivers/scsi/scsi_common.ko:',
        'kernel/drivers/cdrom/cdrom.ko:',
        'kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko',
        'kernel/fs/nls/nls_iso8859-1.ko:',
        '',
      ].join('\n'),
    );
    await writeFile(join(dir, 'modules.builtin'), 'kernel/drivers/nvme/host/nvme.ko\n');
    const { load, missing } = moduleClosure(dir, ['isofs', 'sr_mod', 'nls_iso8859_1', 'ahci', 'nvme']);
    const names = load.map((m) => m.name);
    assert.deepEqual(names, ['cdrom', 'isofs', 'scsi_common', 'scsi_mod', 'sr_mod', 'nls_iso8859_1']);
    assert.equal(load.find((m) => m.name === 'nls_iso8859_1')?.path, 'kernel/fs/nls/nls_iso8859-1.ko');
    assert.deepEqual(missing, ['ahci']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
