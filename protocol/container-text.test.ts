import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseContainerText } from './container-text.ts';

test('each container kind parses into the spec plans and the API carry', () => {
  assert.deepEqual(parseContainerText('memory'), { kind: 'memory' });
  assert.deepEqual(parseContainerText('memory:256M'), { kind: 'memory', capacityBytes: 256 << 20 });
  assert.deepEqual(parseContainerText('file:/var/tmp/c'), { kind: 'file', path: '/var/tmp/c' });
  assert.deepEqual(parseContainerText('file:/var/tmp/c:1G'), {
    kind: 'file',
    path: '/var/tmp/c',
    capacityBytes: 1 << 30,
  });
  assert.deepEqual(parseContainerText('file:/var/tmp/c:64M:1G'), {
    kind: 'file',
    path: '/var/tmp/c',
    initialBytes: 64 << 20,
    capacityBytes: 1 << 30,
  });
  assert.deepEqual(parseContainerText('file:/mnt/a:b/c:2G'), {
    kind: 'file',
    path: '/mnt/a:b/c',
    capacityBytes: 2 * 2 ** 30,
  });
  assert.deepEqual(parseContainerText('device:/dev/sdb2'), { kind: 'device', path: '/dev/sdb2' });
});

test('a bad container says what is wrong, as a usage error', () => {
  const cases: [string, RegExp][] = [
    ['ram', /'ram' is not a container; use memory\[:SIZE\]/],
    ['memory:lots', /SIZE 'lots' is not a size/],
    ['file:', /give the file's path/],
    ['file:/c:1G:64M', /MAX is smaller than SIZE/],
    ['device:', /give the spare partition/],
  ];
  for (const [text, message] of cases) {
    assert.throws(
      () => parseContainerText(text),
      (error: Error & { kind?: string }) => message.test(error.message) && error.kind === 'usage',
      text,
    );
  }
});
