import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  ChunkDamage,
  chunkIds,
  decodeGroup,
  encodeGroup,
  GROUP_HEADER_BYTES,
  groupHolds,
  MEMBER_BYTES,
  maxGroupBytes,
  nativeCodec,
  referenceCodec,
} from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';
import { PackBuilder, packFileName, scanPack } from './pack.ts';

const skip = nativeCodec
  ? false
  : 'the native helper is not built (npm run build): only the reference codec runs';
const UNIT = 65536;

function keysOf(encrypted: boolean): RepositoryKeys {
  return { encrypted, dataKey: randomBytes(32), idKey: randomBytes(32) };
}

/** Units of every kind a disk holds: random, prose-like, zeros, mostly zero, and a short last unit. */
function sampleUnits(): Buffer[] {
  const text = Buffer.from('the restore point of a disk holds its blocks; '.repeat(2000)).subarray(0, UNIT);
  const sparse = Buffer.alloc(UNIT);
  randomBytes(512).copy(sparse, 4096);
  return [randomBytes(UNIT), text, Buffer.alloc(UNIT), sparse, randomBytes(UNIT), randomBytes(12345)];
}

type Codec = typeof referenceCodec;
const native: Codec = { chunkIds, encodeGroup, decodeGroup };

function encodeWith(codec: Codec, keys: RepositoryKeys, units: Buffer[], members: number[]) {
  const data = Buffer.concat(units);
  const lengths = Uint32Array.from(units.map((u) => u.length));
  const ids = Buffer.alloc(32 * units.length);
  codec.chunkIds(keys, data, lengths, ids);
  const memberFlags = Uint8Array.from(units, (_, i) => (members.includes(i) ? 1 : 0));
  const raw = members.reduce((sum, i) => sum + units[i]!.length, 0);
  const out = Buffer.alloc(maxGroupBytes(members.length, raw));
  const length = codec.encodeGroup(keys, data, lengths, ids, memberFlags, out);
  return { blob: out.subarray(0, length), ids, data, raw };
}

const idAt = (ids: Buffer, i: number) => ids.subarray(i * 32, i * 32 + 32);

for (const encrypted of [true, false]) {
  const kind = encrypted ? 'encrypted' : 'unencrypted';
  test(`native and reference codecs agree on ids and read each other's groups (${kind})`, { skip }, () => {
    const keys = keysOf(encrypted);
    const units = sampleUnits();
    // Not every unit is a member: the others were known already.
    const members = [0, 1, 3, 5];
    for (const [writer, reader] of [
      [native, referenceCodec],
      [referenceCodec, native],
      [native, native],
    ] as const) {
      const { blob, ids, data, raw } = encodeWith(writer, keys, units, members);
      const again = Buffer.alloc(ids.length);
      reader.chunkIds(keys, data, Uint32Array.from(units.map((u) => u.length)), again);
      assert.deepEqual(again, ids);
      const plain = Buffer.alloc(raw);
      assert.equal(reader.decodeGroup(keys, true, blob, plain), 0);
      assert.deepEqual(plain, Buffer.concat(members.map((i) => units[i]!)));
      let rawOffset = 0;
      for (const i of members) {
        assert.ok(groupHolds(blob, idAt(ids, i), rawOffset, units[i]!.length));
        rawOffset += units[i]!.length;
      }
      assert.equal(groupHolds(blob, idAt(ids, 2), 0, UNIT), false, 'a non-member is not in the group');
      assert.equal(blob[0], 1, 'the group shrinks, so it is stored compressed');
    }
  });

  test(`every damaged group is reported, never decoded to wrong bytes (${kind})`, () => {
    const keys = keysOf(encrypted);
    const units = sampleUnits();
    for (const codec of nativeCodec ? [native, referenceCodec] : [referenceCodec]) {
      const { blob, ids, raw } = encodeWith(codec, keys, units, [0, 1, 4]);
      const damaged = (mutate: (b: Buffer) => void, expected: number[]) => {
        const copy = Buffer.from(blob);
        mutate(copy);
        assert.ok(expected.includes(codec.decodeGroup(keys, false, copy, Buffer.alloc(raw + UNIT))));
      };
      const firstMemberLength = GROUP_HEADER_BYTES + 32;
      damaged(
        (b) => {
          b[GROUP_HEADER_BYTES + 3]! ^= 1; // a member's id
        },
        [encrypted ? ChunkDamage.authentication : ChunkDamage.content],
      );
      damaged(
        (b) => {
          b[firstMemberLength]! ^= 1; // a member's length
        },
        [encrypted ? ChunkDamage.authentication : ChunkDamage.length],
      );
      damaged(
        (b) => {
          b[b.length - 30]! ^= 0x40; // the stored bytes
        },
        encrypted
          ? [ChunkDamage.authentication]
          : [ChunkDamage.decompression, ChunkDamage.content, ChunkDamage.length],
      );
      damaged(
        (b) => {
          b.writeUInt32LE(1000, 4); // a member count beyond the blob
        },
        [ChunkDamage.truncated],
      );
      assert.equal(
        codec.decodeGroup(keys, false, blob.subarray(0, blob.length - 1), Buffer.alloc(raw)),
        ChunkDamage.truncated,
      );
      // A chunk is found only at its own place among the members.
      assert.equal(groupHolds(blob, idAt(ids, 1), 0, UNIT), false);
      assert.equal(groupHolds(blob, idAt(ids, 1), UNIT, UNIT - 1), false);
      assert.ok(groupHolds(blob, idAt(ids, 1), UNIT, UNIT));
    }
  });
}

test('a pack scan finds every group and its members, as the index would', () => {
  const keys = keysOf(true);
  const units = sampleUnits();
  const pack = new PackBuilder('ab'.repeat(16), PackBuilder.allocate(1 << 20));
  const first = encodeWith(referenceCodec, keys, units, [0, 1]);
  const second = encodeWith(referenceCodec, keys, units, [4, 5]);
  const a = pack.add(first.blob);
  const b = pack.add(second.blob);
  const groups = scanPack('ab'.repeat(16), Buffer.from(pack.finish()));
  assert.deepEqual(
    groups.map((g) => [g.blobOffset, g.blobLength, g.members.map((m) => [m.rawOffset, m.rawLength])]),
    [
      [
        a.headerOffset,
        first.blob.length,
        [
          [0, UNIT],
          [UNIT, UNIT],
        ],
      ],
      [
        b.headerOffset,
        second.blob.length,
        [
          [0, UNIT],
          [UNIT, 12345],
        ],
      ],
    ],
  );
  assert.deepEqual(groups[1]!.members[1]!.id, idAt(second.ids, 5));
  assert.equal(packFileName('ab'.repeat(16)), `packs/ab/${'ab'.repeat(16)}`);
  assert.equal(MEMBER_BYTES, 36);
});

test('a batch that overruns its buffers is refused before any work', { skip }, () => {
  const keys = keysOf(true);
  const data = randomBytes(UNIT);
  assert.throws(() => chunkIds(keys, data, Uint32Array.of(UNIT, UNIT), Buffer.alloc(64)), RangeError);
  const ids = Buffer.alloc(32);
  chunkIds(keys, data, Uint32Array.of(UNIT), ids);
  assert.throws(
    () => encodeGroup(keys, data, Uint32Array.of(UNIT), ids, Uint8Array.of(1), Buffer.alloc(UNIT)),
    /out is too short/,
  );
  assert.equal(encodeGroup(keys, data, Uint32Array.of(UNIT), ids, Uint8Array.of(0), Buffer.alloc(UNIT)), 0);
  assert.throws(
    () => chunkIds(keys, data, [UNIT] as unknown as Uint32Array, ids),
    /lengths must be a Uint32Array/,
  );
});
