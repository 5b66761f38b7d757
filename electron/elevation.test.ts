import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  elevatedLaunch,
  fallbackAfter,
  limitedModeScope,
  pkexecOutcome,
  spawnErrorOutcome,
  sudoPromptOutcome,
} from './elevation.ts';

test('on Linux the engine is started through pkexec with its absolute path', () => {
  assert.deepEqual(elevatedLaunch('linux', '/opt/Diskline/resources/app/bin/diskline'), {
    kind: 'spawn',
    command: 'pkexec',
    args: ['/opt/Diskline/resources/app/bin/diskline', 'daemon'],
  });
});

test('on macOS and Windows sudo-prompt gets one quoted command line', () => {
  assert.deepEqual(elevatedLaunch('darwin', "/Applications/Dis'kline.app/bin/diskline"), {
    kind: 'sudo-prompt',
    commandLine: "'/Applications/Dis'\\''kline.app/bin/diskline' daemon",
    name: 'Diskline',
  });
  assert.deepEqual(elevatedLaunch('win32', 'C:\\Program Files\\Diskline\\diskline.cmd'), {
    kind: 'sudo-prompt',
    commandLine: '"C:\\Program Files\\Diskline\\diskline.cmd" daemon',
    name: 'Diskline',
  });
  assert.equal(elevatedLaunch('freebsd', '/x').kind, 'unsupported');
});

test('pkexec exit codes: 126 declined, 127 no way to ask, others the engine failed', () => {
  assert.deepEqual(pkexecOutcome(126, 'Error executing command as another user: Not authorized\n'), {
    kind: 'declined',
  });
  assert.deepEqual(
    pkexecOutcome(127, 'Error executing command as another user: No authentication agent found.\n'),
    {
      kind: 'unavailable',
      detail: 'Error executing command as another user: No authentication agent found.',
    },
  );
  assert.deepEqual(pkexecOutcome(1, 'starting\ndiskline: /run/diskline is not writable\n'), {
    kind: 'failed',
    detail: 'diskline: /run/diskline is not writable',
  });
  assert.deepEqual(pkexecOutcome(2, ''), { kind: 'failed', detail: 'the engine exited with code 2' });
});

test('sudo-prompt: a dismissed dialog is declined, other errors failed', () => {
  assert.deepEqual(sudoPromptOutcome(new Error('User did not grant permission.')), { kind: 'declined' });
  assert.deepEqual(sudoPromptOutcome(new Error('spawn osascript ENOENT')), {
    kind: 'failed',
    detail: 'spawn osascript ENOENT',
  });
  assert.deepEqual(sudoPromptOutcome(undefined), { kind: 'started' });
});

test('a missing pkexec means no way to ask', () => {
  const error = Object.assign(new Error('spawn pkexec ENOENT'), { code: 'ENOENT', path: 'pkexec' });
  assert.deepEqual(spawnErrorOutcome(error), { kind: 'unavailable', detail: 'pkexec is not installed' });
});

test('every refusal falls back to an unprivileged engine and says what still works', () => {
  assert.equal(fallbackAfter({ kind: 'started' }), null);
  for (const outcome of [
    { kind: 'declined' as const },
    { kind: 'unavailable' as const, detail: 'pkexec is not installed' },
    { kind: 'failed' as const, detail: 'the engine exited with code 2' },
  ]) {
    const fallback = fallbackAfter(outcome);
    assert.equal(fallback?.startUnprivileged, true);
    assert.ok(fallback?.message.includes(limitedModeScope), fallback?.message);
  }
  assert.equal(
    fallbackAfter({ kind: 'declined' })?.message,
    'Diskline is running without administrator rights because the request was declined. ' +
      'You can browse the restore points of a local repository you can read. ' +
      'Listing drives, backing up, restoring to a device, mounting and scheduled backups need the engine.',
  );
});
