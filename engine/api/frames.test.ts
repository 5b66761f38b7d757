import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeBounded, encodeFrame, FrameDecoder } from './frames.ts';

test('frames split across reads are joined; several frames in one read are split', () => {
  const decoder = new FrameDecoder(100);
  assert.deepEqual(decoder.push(Buffer.from('{"a":')), []);
  assert.deepEqual(decoder.push(Buffer.from('1}\n{"b":2}\n\n{"c"')), [
    { kind: 'frame', text: '{"a":1}' },
    { kind: 'frame', text: '{"b":2}' },
  ]);
  assert.deepEqual(decoder.push(Buffer.from(':3}\n')), [{ kind: 'frame', text: '{"c":3}' }]);
});

test('a multi-byte character split between reads survives', () => {
  const decoder = new FrameDecoder(100);
  const bytes = Buffer.from('"disque dur é"\n');
  const cut = bytes.indexOf(0xa9);
  assert.deepEqual(decoder.push(bytes.subarray(0, cut)), []);
  assert.deepEqual(decoder.push(bytes.subarray(cut)), [{ kind: 'frame', text: '"disque dur é"' }]);
});

test('a frame over the limit is skipped up to its newline and reported with its size, once', () => {
  const decoder = new FrameDecoder(10);
  assert.deepEqual(decoder.push(Buffer.from('0123456789')), []);
  assert.deepEqual(decoder.push(Buffer.from('abc')), []);
  assert.deepEqual(decoder.push(Buffer.from('de\n{"ok":1}\n')), [
    { kind: 'oversized', bytes: 15 },
    { kind: 'frame', text: '{"ok":1}' },
  ]);
});

test('a frame of exactly the limit is accepted', () => {
  const decoder = new FrameDecoder(4);
  assert.deepEqual(decoder.push(Buffer.from('1234\n')), [{ kind: 'frame', text: '1234' }]);
});

test('encoded frames are one line even when strings hold newlines', () => {
  const frame = encodeFrame({ message: 'line one\nline two' });
  assert.equal(frame.indexOf('\n'), frame.length - 1);
  assert.deepEqual(JSON.parse(frame), { message: 'line one\nline two' });
});

test('an answer over the message limit becomes an error response; an oversized event is dropped', () => {
  const big = { type: 'response', id: 4, ok: true, result: 'x'.repeat(200) };
  assert.equal(encodeBounded(big, 1000), JSON.stringify(big));
  const refused = JSON.parse(encodeBounded({ ...big, result: 'x'.repeat(2000) }, 1000)!);
  assert.equal(refused.id, 4);
  assert.equal(refused.ok, false);
  assert.match(
    refused.error.message,
    /^The answer is \d+ bytes, over the 1000-byte message limit; ask for less\.$/,
  );
  assert.equal(encodeBounded({ type: 'event', data: 'y'.repeat(2000) }, 1000), null);
});
