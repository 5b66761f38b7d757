import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { MAX_MESSAGE_BYTES } from '../../protocol/messages.ts';
import { StateStore } from '../config/state.ts';
import { Engine } from './engine.ts';
import { ControlledWork, controlledRunners } from './testing/daemon.ts';
import { TOKEN_REFUSED_CLOSE_CODE, WebServer } from './web-server.ts';

const cli = fileURLToPath(new URL('../../bin/diskline', import.meta.url));

let dir: string;
let engine: Engine;
let server: WebServer;
const work = new ControlledWork();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-serve-'));
  const ui = join(dir, 'ui');
  await mkdir(join(ui, 'assets'), { recursive: true });
  await writeFile(join(ui, 'index.html'), '<!doctype html><title>Diskline</title>');
  await writeFile(join(ui, 'assets', 'app.js'), 'console.log(1)');
  await writeFile(join(dir, 'secret.txt'), 'not for the browser');
  engine = new Engine({ state: await StateStore.open(join(dir, 'state')), runners: controlledRunners(work) });
  await engine.start();
  server = new WebServer(engine, { port: 0, rendererDir: ui, token: 'test-token-0123456789' });
  await server.listen();
});

after(async () => {
  work.release();
  await server.close();
  await engine.stop();
  await rm(dir, { recursive: true, force: true });
});

function get(path: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port: server.port, path }, (response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body, headers: response.headers }),
      );
    })
      .on('error', reject)
      .end();
  });
}

/** Opens the API WebSocket; resolves with the socket once open, or with the close code if refused. */
function openApi(
  token: string | null,
  origin?: string,
): Promise<{ ws: WebSocket } | { closed: number } | { status: number }> {
  const query = token === null ? '' : `?token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api${query}`, origin ? { origin } : {});
  return new Promise((resolve) => {
    let opened = false;
    ws.on('open', () => {
      opened = true;
      setTimeout(() => {
        if (ws.readyState === ws.OPEN) resolve({ ws });
      }, 50);
    });
    ws.on('close', (code) => opened && resolve({ closed: code }));
    ws.on('unexpected-response', (_request, response) => resolve({ status: response.statusCode ?? 0 }));
    ws.on('error', () => {});
  });
}

function call(
  ws: WebSocket,
  id: number,
  method: string,
  params: unknown,
): Promise<{ ok: boolean; result?: unknown }> {
  return new Promise((resolve) => {
    const onMessage = (data: WebSocket.RawData) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'response' && message.id === id) {
        ws.off('message', onMessage);
        resolve(message);
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ type: 'request', id, method, params }));
  });
}

test('the UI is served from the renderer directory with a CSP, and client routes fall back to index.html', async () => {
  const index = await get('/');
  assert.equal(index.status, 200);
  assert.equal(index.body, '<!doctype html><title>Diskline</title>');
  assert.match(String(index.headers['content-security-policy']), /default-src 'self'/);
  const asset = await get('/assets/app.js');
  assert.equal(asset.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(asset.body, 'console.log(1)');
  assert.equal((await get('/timeline/some-point')).body, index.body);
});

test('a request for another host name (DNS rebinding) is refused', async () => {
  const status = await new Promise<number>((resolve, reject) => {
    request(
      { host: '127.0.0.1', port: server.port, path: '/', headers: { host: `evil.example:${server.port}` } },
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    )
      .on('error', reject)
      .end();
  });
  assert.equal(status, 421);
});

test('no file outside the renderer directory is served', async () => {
  const escaped = await get('/%2e%2e/secret.txt');
  assert.notEqual(escaped.body, 'not for the browser');
  assert.equal((await get('/..%2fsecret.txt')).status, 403);
});

test('the API WebSocket needs the token: none or a wrong one is closed with 4001, the right one is answered', async () => {
  assert.deepEqual(await openApi(null), { closed: TOKEN_REFUSED_CLOSE_CODE });
  assert.deepEqual(await openApi('test-token-0123456788'), { closed: TOKEN_REFUSED_CLOSE_CODE });
  assert.deepEqual(await openApi('short'), { closed: TOKEN_REFUSED_CLOSE_CODE });
  const opened = await openApi('test-token-0123456789', `http://127.0.0.1:${server.port}`);
  assert.ok('ws' in opened);
  const response = await call(opened.ws, 1, 'engine.status', {});
  assert.equal(response.ok, true);
  assert.equal((response.result as { version: string }).version, '0.1.0');
  opened.ws.close();
});

test('a page from another origin cannot open the API even with the token', async () => {
  assert.deepEqual(await openApi('test-token-0123456789', 'http://evil.example'), { status: 403 });
  assert.deepEqual(await openApi('test-token-0123456789', `http://127.0.0.1:${server.port + 1}`), {
    status: 403,
  });
});

test('a WebSocket message over MAX_MESSAGE_BYTES closes that connection (1009) and the server still answers', async () => {
  const opened = await openApi('test-token-0123456789');
  assert.ok('ws' in opened);
  const closed = new Promise<number>((resolve) => opened.ws.on('close', resolve));
  opened.ws.send('x'.repeat(MAX_MESSAGE_BYTES + 1));
  assert.equal(await closed, 1009);
  const again = await openApi('test-token-0123456789');
  assert.ok('ws' in again);
  assert.equal((await call(again.ws, 2, 'jobs.list', {})).ok, true);
  again.ws.close();
});

test('the server listens on loopback only', () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/#token=test-token-0123456789$/);
});

test('diskline serve --json prints url, port and token on one line and keeps serving until SIGTERM', async () => {
  const stateDir = join(dir, 'serve-state');
  const image = join(dir, 'demo.img');
  await writeFile(image, Buffer.alloc(1 << 20));
  const child = spawn(cli, ['serve', '--json', '--repo', join(dir, 'repo'), '--image', image], {
    env: { ...process.env, DISKLINE_STATE_DIR: stateDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (data) => {
        out += data;
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.on('exit', (code) => reject(new Error(`serve exited early with ${code}`)));
    });
    const printed = JSON.parse(line) as { url: string; port: number; token: string };
    assert.equal(printed.url, `http://127.0.0.1:${printed.port}/#token=${printed.token}`);
    assert.ok(printed.token.length >= 32);
    const ws = new WebSocket(`ws://127.0.0.1:${printed.port}/api?token=${printed.token}`);
    await new Promise((resolve) => ws.on('open', resolve));
    const status = await call(ws, 1, 'engine.status', {});
    assert.equal((status.result as { defaultRepo: string }).defaultRepo, join(dir, 'repo'));
    const drives = (await call(ws, 2, 'drives.list', {})).result as { device: string; size: number }[];
    assert.equal(drives.find((drive) => drive.device === image)?.size, 1 << 20);
    ws.close();
  } finally {
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
});
