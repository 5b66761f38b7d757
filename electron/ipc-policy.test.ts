import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appOrigin, callChannel, checkCall, isTrustedUrl, originOf, trustedOrigins } from './ipc-policy.ts';

const origins = trustedOrigins(undefined);
const page = { url: `${appOrigin}/index.html`, isMainFrame: true };

test('a call from our page with valid params is accepted, defaults applied', () => {
  assert.deepEqual(
    checkCall(callChannel, page, { method: 'repo.init', params: { repo: '/srv/r' } }, origins),
    {
      ok: true,
      method: 'repo.init',
      params: { repo: '/srv/r', encrypted: true },
    },
  );
  assert.deepEqual(checkCall(callChannel, page, { method: 'engine.status' }, origins), {
    ok: true,
    method: 'engine.status',
    params: {},
  });
});

test('calls on another channel, from subframes, gone frames or foreign pages are refused', () => {
  const call = { method: 'drives.list', params: {} };
  assert.deepEqual(checkCall('other:call', page, call, origins), {
    ok: false,
    reason: "unknown channel 'other:call'",
  });
  assert.deepEqual(checkCall(callChannel, null, call, origins), {
    ok: false,
    reason: 'the sending frame is gone',
  });
  assert.deepEqual(checkCall(callChannel, { ...page, isMainFrame: false }, call, origins), {
    ok: false,
    reason: 'a subframe (app://diskline/index.html) may not call the engine',
  });
  for (const url of [
    'https://example.com/',
    'file:///tmp/evil.html',
    'app://elsewhere/index.html',
    'about:blank',
  ]) {
    const check = checkCall(callChannel, { url, isMainFrame: true }, call, origins);
    assert.equal(check.ok, false, url);
    assert.match(!check.ok ? check.reason : '', /may not call the engine$/);
  }
});

test('unknown methods, prototype names and bad params are refused with the reason', () => {
  assert.deepEqual(checkCall(callChannel, page, { method: 'engine.shutdown' }, origins), {
    ok: false,
    reason: "unknown method 'engine.shutdown'",
  });
  assert.equal(checkCall(callChannel, page, { method: 'constructor' }, origins).ok, false);
  assert.equal(checkCall(callChannel, page, { method: '__proto__' }, origins).ok, false);
  assert.deepEqual(checkCall(callChannel, page, 'drives.list', origins), {
    ok: false,
    reason: 'a call must be an object',
  });
  const bad = checkCall(
    callChannel,
    page,
    { method: 'backup.start', params: { source: '', repo: '/r' } },
    origins,
  );
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.reason : '', /^bad params for backup\.start at 'source': /);
});

test('params larger than a protocol message are refused before they are parsed', () => {
  const check = checkCall(
    callChannel,
    page,
    { method: 'jobs.cancel', params: { id: 'x'.repeat(1 << 20) } },
    origins,
  );
  assert.deepEqual(check, {
    ok: false,
    reason: `params for jobs.cancel are ${(1 << 20) + 9} bytes, over the ${1 << 20}-byte limit`,
  });
});

test('the dev server origin is trusted only when configured, and only that origin', () => {
  const dev = trustedOrigins('http://localhost:5173/');
  assert.ok(isTrustedUrl('http://localhost:5173/src/main.tsx', dev));
  assert.ok(!isTrustedUrl('http://localhost:5174/', dev));
  assert.ok(!isTrustedUrl('http://localhost:5173/', origins));
});

test('origins of the app scheme and of odd URLs', () => {
  assert.equal(originOf('app://diskline/assets/x.js'), 'app://diskline');
  assert.equal(originOf('file:///index.html'), null);
  assert.equal(originOf('not a url'), null);
});
