// writeJson prints exactly what JSON.stringify would, in pieces, so a verb's data-sized list never has to fit
// in one string.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeJson } from './json-output.ts';

function printed(value: unknown, indent?: number): { text: string; pieces: number } {
  const pieces: string[] = [];
  writeJson(value, (text) => pieces.push(text), indent);
  return { text: pieces.join(''), pieces: pieces.length };
}

test('writeJson prints what JSON.stringify prints, compact and indented', () => {
  const values: unknown[] = [
    null,
    0,
    'a "quoted"\nline',
    [],
    {},
    [1, [2, [3, []]], {}],
    { a: 1, skipped: undefined, nested: { list: [{ start: 0, length: 65536 }], empty: [] }, last: null },
    [undefined, () => 1, 'x'],
    { when: new Date(0), flag: true },
  ];
  for (const value of values) {
    for (const indent of [0, 2]) {
      assert.equal(
        printed(value, indent).text,
        `${JSON.stringify(value, null, indent)}\n`,
        JSON.stringify(value),
      );
    }
  }
});

test('a list of 100,000 ranges is printed in pieces and parses back whole', () => {
  const ranges = Array.from({ length: 100_000 }, (_, i) => ({ start: i * 131072, length: 65536 }));
  const { text, pieces } = printed({ changedBytes: 100_000 * 65536, ranges }, 2);
  assert.ok(pieces > 10, `${pieces} pieces`);
  assert.deepEqual(JSON.parse(text), { changedBytes: 100_000 * 65536, ranges });
});
