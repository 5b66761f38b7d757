import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32, inflateSync } from 'node:zlib';
import { writeIcons } from '../scripts/make-icons.ts';
import { trayIconPath } from './tray.ts';

const assetsDir = join(import.meta.dirname, '..', 'assets');

/** Reads a PNG the strict way: signature, every chunk's CRC, IHDR, and the inflated pixel rows' length. */
function readPng(data: Buffer): { width: number; height: number; colorType: number } {
  assert.deepEqual(
    [...data.subarray(0, 8)],
    [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
    'PNG signature',
  );
  let offset = 8;
  let header: { width: number; height: number; colorType: number } | null = null;
  const idat: Buffer[] = [];
  let ended = false;
  while (offset < data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString('latin1', offset + 4, offset + 8);
    const body = data.subarray(offset + 8, offset + 8 + length);
    assert.equal(
      data.readUInt32BE(offset + 8 + length),
      crc32(data.subarray(offset + 4, offset + 8 + length)),
      `${type} CRC`,
    );
    if (type === 'IHDR')
      header = { width: body.readUInt32BE(0), height: body.readUInt32BE(4), colorType: body[9]! };
    if (type === 'IDAT') idat.push(body);
    if (type === 'IEND') ended = true;
    offset += 12 + length;
  }
  assert.ok(header && ended, 'IHDR and IEND present');
  assert.equal(inflateSync(Buffer.concat(idat)).length, header.height * (header.width * 4 + 1), 'pixel rows');
  return header;
}

test('the app icon exists at every size, as valid RGBA PNGs of that size', () => {
  for (const size of [16, 24, 32, 48, 64, 128, 256, 512, 1024]) {
    const png = readPng(readFileSync(join(assetsDir, 'icons', `${size}x${size}.png`)));
    assert.deepEqual(png, { width: size, height: size, colorType: 6 }, `${size}x${size}`);
  }
  assert.equal(readPng(readFileSync(join(assetsDir, 'icon.png'))).width, 1024);
});

test('the tray has an icon per state, at 1x and 2x, where the shell looks for them', () => {
  for (const state of ['idle', 'busy', 'attention'] as const) {
    const path = trayIconPath(assetsDir, state);
    assert.equal(readPng(readFileSync(path)).width, 22, path);
    assert.equal(readPng(readFileSync(path.replace('.png', '@2x.png'))).width, 44);
  }
});

test('the .ico lists PNG images of 16 to 256 pixels (256 written as 0)', () => {
  const ico = readFileSync(join(assetsDir, 'icon.ico'));
  assert.deepEqual([ico.readUInt16LE(0), ico.readUInt16LE(2)], [0, 1]);
  const sizes: number[] = [];
  for (let i = 0; i < ico.readUInt16LE(4); i++) {
    const entry = 6 + i * 16;
    const image = ico.subarray(
      ico.readUInt32LE(entry + 12),
      ico.readUInt32LE(entry + 12) + ico.readUInt32LE(entry + 8),
    );
    const size = ico[entry] === 0 ? 256 : ico[entry]!;
    assert.equal(readPng(image).width, size);
    sizes.push(size);
  }
  assert.deepEqual(sizes, [16, 24, 32, 48, 64, 128, 256]);
});

test('the .icns holds PNG entries from 16 to 1024 pixels and its length adds up', () => {
  const icns = readFileSync(join(assetsDir, 'icon.icns'));
  assert.equal(icns.toString('latin1', 0, 4), 'icns');
  assert.equal(icns.readUInt32BE(4), icns.length);
  const entries: string[] = [];
  for (let offset = 8; offset < icns.length; ) {
    const type = icns.toString('latin1', offset, offset + 4);
    const length = icns.readUInt32BE(offset + 4);
    entries.push(`${type}:${readPng(icns.subarray(offset + 8, offset + length)).width}`);
    offset += length;
  }
  assert.deepEqual(entries, [
    'icp4:16',
    'icp5:32',
    'icp6:64',
    'ic07:128',
    'ic08:256',
    'ic09:512',
    'ic10:1024',
    'ic11:32',
    'ic12:64',
    'ic13:256',
    'ic14:512',
  ]);
});

test('the committed icons are exactly what scripts/make-icons.ts draws', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-icons-'));
  try {
    const written = writeIcons(dir);
    assert.equal(written.length, 36);
    for (const path of written) {
      const committed = join(assetsDir, path.slice(dir.length + 1));
      assert.ok(
        readFileSync(committed).equals(readFileSync(path)),
        `${committed} is stale: run npx node scripts/make-icons.ts`,
      );
    }
    assert.deepEqual(readdirSync(join(assetsDir, 'tray')).length, readdirSync(join(dir, 'tray')).length);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
