import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../bin/diskline', import.meta.url));

test('an unknown verb is a usage error that names the verb', () => {
  const run = spawnSync(cli, ['frobnicate'], { encoding: 'utf8' });
  assert.equal(run.status, 2);
  assert.match(run.stderr, /unknown verb 'frobnicate'/);
});

test('--help lists the verbs and exits 0', () => {
  const run = spawnSync(cli, ['--help'], { encoding: 'utf8' });
  assert.equal(run.status, 0);
  assert.match(run.stdout, /Usage:/);
});
