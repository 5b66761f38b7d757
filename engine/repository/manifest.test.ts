// Format 3 manifest plaintext (still read): the binary layout round-trips every field, the earlier all-JSON layout still reads the same,
// and a cut or inconsistent binary manifest is reported as damaged instead of read wrong.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  decodeLegacyManifest as decodeManifest,
  encodeLegacyManifest as encodeManifest,
  type LegacyManifest as Manifest,
} from './manifest.ts';

function sampleManifest(withDone: boolean): Manifest {
  const unitCount = 21;
  const chunkIds = [randomBytes(32), randomBytes(32), randomBytes(32)];
  const units = new Uint32Array(unitCount);
  for (let unit = 0; unit < unitCount; unit++) units[unit] = unit % 4;
  return {
    format: 1,
    id: 'a'.repeat(32),
    time: '2026-12-03T09:00:00.000Z',
    complete: !withDone,
    parent: null,
    consistency: 'offline',
    source: {
      path: '/dev/sample',
      model: null,
      serial: null,
      size: unitCount * 65536 - 100,
      partitionTable: null,
    },
    partitions: [],
    unitSize: 65536,
    unitCount,
    unitsPerSegment: 16384,
    used: Uint8Array.from([0xff, 0x7f, 0x1f]),
    ...(withDone ? { done: Uint8Array.from([0x0f, 0, 0x10]) } : {}),
    chunkIds,
    units,
    stats: { usedBytes: 1, changedBytes: 1, storedBytes: 1, zeroUnits: 5, newChunks: 3 },
  };
}

/** What the earlier code wrote: one JSON document with the maps and ids in base64. */
function jsonLayout(manifest: Manifest): Buffer {
  const { used, chunkIds, units, done, unitsPerSegment: _, ...rest } = manifest;
  return Buffer.from(
    JSON.stringify({
      ...rest,
      ...(done ? { done: Buffer.from(done).toString('base64') } : {}),
      used: Buffer.from(used).toString('base64'),
      chunks: Buffer.concat(chunkIds).toString('base64'),
      units: Buffer.from(units.buffer).toString('base64'),
    }),
  );
}

const comparable = (manifest: Manifest) => ({
  ...manifest,
  used: [...manifest.used],
  done: manifest.done ? [...manifest.done] : undefined,
  chunkIds: manifest.chunkIds.map((id) => id.toString('hex')),
  units: [...manifest.units],
});

test('a manifest round-trips through the binary layout, and the JSON layout reads the same', () => {
  for (const withDone of [false, true]) {
    const manifest = sampleManifest(withDone);
    const binary = encodeManifest(manifest);
    assert.equal(binary.subarray(0, 8).toString('ascii'), 'DLPTMAP2');
    assert.deepEqual(comparable(decodeManifest(binary, 'm')), comparable(manifest));
    assert.deepEqual(comparable(decodeManifest(jsonLayout(manifest), 'm')), comparable(manifest));
  }
});

test('a cut or inconsistent binary manifest is damaged, never read', () => {
  const binary = encodeManifest(sampleManifest(true));
  assert.throws(() => decodeManifest(binary.subarray(0, binary.length - 1), 'point x'), {
    message: 'point x is damaged: its maps have the wrong length',
  });
  assert.throws(() => decodeManifest(Buffer.from('DLPTMAP2'), 'point x'), {
    message: 'point x is damaged: unknown manifest layout',
  });
  // A unit naming a chunk beyond the list.
  const bad = Buffer.from(binary);
  bad.writeUInt32LE(9, bad.length - 4);
  assert.throws(() => decodeManifest(bad, 'point x'), {
    message: 'point x is damaged: unit map names chunk 9',
  });
});
