import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseByteSize } from './byte-size.ts';

test('sizes take binary units, with or without iB, and fractions', () => {
  assert.equal(parseByteSize('4096'), 4096);
  assert.equal(parseByteSize('64K'), 65536);
  assert.equal(parseByteSize('256M'), 256 * 2 ** 20);
  assert.equal(parseByteSize('1.5GiB'), 1.5 * 2 ** 30);
  assert.equal(parseByteSize(' 2t '), 2 * 2 ** 40);
});

test('anything else is not a size', () => {
  for (const text of ['', 'M', '12X', '-1G', '1G2', 'ten']) assert.equal(parseByteSize(text), null, text);
});
