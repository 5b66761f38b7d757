// The chunk index's flat tables against a Map: entries set, overwritten and looked up across table growth and
// page boundaries, index files added with condemned packs held for reading only, ids and packs listed — the
// same answers.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ChunkIndex, encodeIndexEntries, type IndexEntry, idKey } from './chunk-index.ts';

test('the flat index answers as a Map of the same entries, past a page of entries and many table growths', () => {
  const index = new ChunkIndex();
  const model = new Map<string, IndexEntry>();
  const packs = Array.from({ length: 50 }, () => randomBytes(16).toString('hex'));
  const ids: Buffer[] = [];
  // 300,000 entries cross the first page (2^18) and grow the table from 1,024 slots many times.
  for (let i = 0; i < 300_000; i++) {
    const reuse = ids.length > 0 && i % 10 === 0;
    const id = reuse ? ids[(i * 7919) % ids.length]! : randomBytes(32);
    if (!reuse) ids.push(id);
    const entry: IndexEntry = {
      pack: packs[i % packs.length]!,
      blobOffset: i,
      blobLength: (i * 13) >>> 0,
      rawOffset: i % 65536,
      rawLength: 65536 - (i % 100),
    };
    index.set(i % 3 === 0 ? idKey(id) : id, entry);
    model.set(idKey(id), entry);
  }
  assert.equal(index.size, model.size);
  for (const [key, entry] of model) {
    const found = index.get(key)!;
    assert.ok(
      found.pack === entry.pack &&
        found.blobOffset === entry.blobOffset &&
        found.blobLength === entry.blobLength &&
        found.rawOffset === entry.rawOffset &&
        found.rawLength === entry.rawLength,
      `entry of ${key}`,
    );
  }
  for (let i = 0; i < 1000; i++) assert.equal(index.has(randomBytes(32)), false, 'an id never set is absent');
  const listed = new Map(index.entries());
  assert.equal(listed.size, model.size);
  assert.deepEqual(index.packs(), new Set([...model.values()].map((e) => e.pack)));
  let counted = 0;
  for (const id of index.ids()) {
    assert.ok(model.has(idKey(id)));
    counted++;
  }
  assert.equal(counted, model.size);
});

test("condemned packs' entries are kept for reading only; a live entry always wins; a later file overrides", () => {
  const kept = randomBytes(16).toString('hex');
  const condemned = randomBytes(16).toString('hex');
  const entries: [string, IndexEntry][] = Array.from({ length: 1000 }, (_, i) => [
    randomBytes(32).toString('base64'),
    { pack: i % 2 ? kept : condemned, blobOffset: i, blobLength: 1, rawOffset: 0, rawLength: 1 },
  ]);
  const index = new ChunkIndex();
  index.addFile(encodeIndexEntries(entries), new Set([condemned]));
  assert.equal(index.size, 1000, 'both kinds are held');
  assert.equal(index.hasCondemned, true);
  for (const [key, entry] of entries) {
    assert.deepEqual(index.get(key), entry, 'every chunk can be read');
    assert.equal(index.has(key), entry.pack === kept, 'only live chunks are deduplicated against');
  }
  assert.deepEqual(index.packs(), new Set([kept]), 'packs lists live packs only');
  assert.equal([...index.entries()].length, 500);
  assert.equal([...index.ids()].length, 500, 'ids (what a backup knows) skip condemned entries');
  // The same chunks in a condemned pack again, after their live entries: the live ones stay.
  const liveFirst = entries.filter(([, entry]) => entry.pack === kept);
  const again: [string, IndexEntry][] = liveFirst.map(([key, entry]) => [
    key,
    { ...entry, pack: condemned, blobOffset: 99 },
  ]);
  index.addFile(encodeIndexEntries(again), new Set([condemned]));
  for (const [key, entry] of liveFirst) {
    assert.deepEqual(index.get(key), entry, 'a condemned copy does not replace a live entry');
    assert.equal(index.has(key), true);
  }
  // Live copies of the condemned chunks, after them: they take over.
  const moved: [string, IndexEntry][] = entries.map(([key, entry]) => [
    key,
    { ...entry, pack: kept, blobOffset: 7 },
  ]);
  index.addFile(encodeIndexEntries(moved), new Set([condemned]));
  assert.equal(index.size, 1000);
  for (const [key] of entries) {
    assert.equal(index.get(key)?.blobOffset, 7);
    assert.equal(index.has(key), true);
  }
});
