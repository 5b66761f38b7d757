import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  BLOB_HEADER_BYTES,
  type BlobPlan,
  chunkIds,
  DamagedChunkError,
  decodeChunks,
  encodeChunks,
  maxBlobBytes,
  nativeCodec,
  referenceCodec,
} from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';

const skip = nativeCodec
  ? false
  : 'the native helper is not built (npm run build): only the reference codec runs';
const UNIT = 65536;

function keysOf(encrypted: boolean): RepositoryKeys {
  return { encrypted, dataKey: randomBytes(32), idKey: randomBytes(32) };
}

/** Units of every kind a disk holds: random, repetitive text, zeros, mostly zero, and a short last unit. */
function sampleUnits(): Buffer[] {
  const text = Buffer.from('restore point '.repeat(6000)).subarray(0, UNIT);
  const sparse = Buffer.alloc(UNIT);
  randomBytes(512).copy(sparse, 4096);
  return [randomBytes(UNIT), text, Buffer.alloc(UNIT), sparse, randomBytes(UNIT), randomBytes(12345)];
}

type Codec = typeof referenceCodec;
const native: Codec = {
  chunkIds,
  encodeChunks,
  decodeChunks: (keys, checkIds, input, plan, out) => decodeChunks(keys, checkIds, input, plan, out),
};

function encodeWith(codec: Codec, keys: RepositoryKeys, units: Buffer[]) {
  const data = Buffer.concat(units);
  const lengths = Uint32Array.from(units.map((u) => u.length));
  const ids = Buffer.alloc(32 * units.length);
  codec.chunkIds(keys, data, lengths, ids);
  const out = Buffer.alloc(units.reduce((sum, u) => sum + maxBlobBytes(u.length), 0));
  const blobLengths = new Int32Array(units.length);
  const flags = new Uint8Array(units.length);
  const encode = new Uint8Array(units.length).fill(1);
  const placed = codec.encodeChunks(keys, data, lengths, ids, encode, out, blobLengths, flags);
  const headerOffsets = new Uint32Array(units.length);
  let at = 0;
  for (let i = 0; i < units.length; i++) {
    headerOffsets[i] = at;
    at += blobLengths[i]!;
  }
  assert.equal(placed, at);
  const plan: BlobPlan = {
    headerOffsets,
    storedLengths: Uint32Array.from(blobLengths, (n) => n - BLOB_HEADER_BYTES),
    unitLengths: lengths,
    ids,
  };
  return { blobs: out.subarray(0, placed), plan, flags, data };
}

for (const encrypted of [true, false]) {
  const kind = encrypted ? 'encrypted' : 'unencrypted';
  test(`native and reference codecs agree on ids and read each other's blobs (${kind})`, { skip }, () => {
    const keys = keysOf(encrypted);
    const units = sampleUnits();
    for (const [writer, reader] of [
      [native, referenceCodec],
      [referenceCodec, native],
      [native, native],
    ] as const) {
      const { blobs, plan, flags, data } = encodeWith(writer, keys, units);
      const ids = Buffer.alloc(plan.ids.length);
      reader.chunkIds(keys, data, plan.unitLengths, ids);
      assert.deepEqual(ids, plan.ids);
      const out = Buffer.alloc(data.length);
      reader.decodeChunks(keys, true, blobs, plan, out);
      assert.deepEqual(out, data);
      // Repetitive and zero units shrink; random ones are stored as they are.
      assert.deepEqual([...flags], [0, 1, 1, 1, 0, 0]);
    }
  });

  test(`every damaged blob is named, never decoded to wrong bytes (${kind})`, () => {
    const keys = keysOf(encrypted);
    const units = sampleUnits();
    for (const codec of nativeCodec ? [native, referenceCodec] : [referenceCodec]) {
      const { blobs, plan } = encodeWith(codec, keys, units);
      const decode = (input: Buffer, p: BlobPlan = plan) =>
        codec.decodeChunks(keys, false, input, p, Buffer.alloc(units.reduce((s, u) => s + u.length, 0)));
      const damaged = (mutate: (b: Buffer) => void, message: RegExp, p?: BlobPlan) => {
        const copy = Buffer.from(blobs);
        mutate(copy);
        assert.throws(
          () => decode(copy, p),
          (error: unknown) =>
            error instanceof DamagedChunkError && error.index === 1 && message.test(error.message),
        );
      };
      const second = plan.headerOffsets[1]!;
      const body = second + BLOB_HEADER_BYTES;
      damaged((b) => {
        b[second]! ^= 1;
      }, /names another chunk/);
      damaged(
        (b) => {
          b[second + 36]! ^= 1; // the raw length, which the seal covers
        },
        encrypted ? /fails authentication/ : /length other than its unit/,
      );
      damaged(
        (b) => {
          b[body + 20]! ^= 0x40;
        },
        encrypted ? /fails authentication/ : /does not decompress|content does not match/,
      );
      // A chunk swapped for another of the same repository: right header, wrong content.
      const swapped: BlobPlan = { ...plan, ids: Buffer.from(plan.ids) };
      plan.ids.copy(swapped.ids, 32, 0, 32);
      damaged(() => undefined, /names another chunk/, swapped);
    }
  });
}

test('a batch that overruns its buffers is refused before any work', { skip }, () => {
  const keys = keysOf(true);
  const data = randomBytes(UNIT);
  const lengths = Uint32Array.of(UNIT, UNIT);
  assert.throws(() => chunkIds(keys, data, lengths, Buffer.alloc(64)), RangeError);
  const ids = Buffer.alloc(32);
  chunkIds(keys, data, Uint32Array.of(UNIT), ids);
  const small = Buffer.alloc(UNIT);
  assert.throws(
    () =>
      encodeChunks(
        keys,
        data,
        Uint32Array.of(UNIT),
        ids,
        Uint8Array.of(1),
        small,
        new Int32Array(1),
        new Uint8Array(1),
      ),
    /out is too short/,
  );
  assert.throws(
    () => chunkIds(keys, data, [UNIT] as unknown as Uint32Array, ids),
    /lengths must be a Uint32Array/,
  );
});
