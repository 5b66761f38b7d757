// @vitest-environment node
// The WebSocket transport against a real WebSocket server (the `ws` package the engine uses), through the
// platform's standard WebSocket: requests and responses, engine errors, events, the token, disconnects and
// reconnecting.: requests and responses, engine errors, events, the token, disconnects and reconnecting.
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket as ServerSocket, WebSocketServer } from 'ws';
import type { ConnectionState, EngineConnection } from './connection.ts';
import { apiUrlFor, connectWebSocket, fragmentParam } from './websocket-client.ts';

let server: WebSocketServer | null = null;
let connection: EngineConnection | null = null;

afterEach(async () => {
  connection?.close();
  connection = null;
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
});

async function startServer(
  onConnection: (socket: ServerSocket, url: string) => void,
  port = 0,
): Promise<number> {
  server = new WebSocketServer({ host: '127.0.0.1', port });
  server.on('connection', (socket, request) => onConnection(socket, request.url ?? ''));
  await new Promise<void>((resolve) => server!.once('listening', () => resolve()));
  return (server.address() as { port: number }).port;
}

function waitForState(target: EngineConnection, status: ConnectionState['status']): Promise<ConnectionState> {
  return new Promise((resolve) => {
    const stop = target.onState((state) => {
      if (state.status === status) {
        queueMicrotask(() => stop());
        resolve(state);
      }
    });
  });
}

describe('WebSocket engine client', () => {
  it('sends the token, settles calls from responses and delivers validated events', async () => {
    let seenUrl = '';
    const port = await startServer((socket, url) => {
      seenUrl = url;
      socket.on('message', (raw) => {
        const request = JSON.parse(String(raw));
        if (request.method === 'jobs.cancel') {
          socket.send(
            JSON.stringify({
              type: 'response',
              id: request.id,
              ok: false,
              error: { code: 'refused', message: 'Job j1 has already ended (succeeded); nothing to cancel.' },
            }),
          );
          return;
        }
        socket.send(JSON.stringify({ type: 'event', event: 'points.changed', data: { repo: '/r' } }));
        socket.send(JSON.stringify({ type: 'event', event: 'points.changed', data: { wrong: true } }));
        socket.send(JSON.stringify({ type: 'response', id: request.id, ok: true, result: { paused: true } }));
      });
    });
    connection = connectWebSocket({ url: `ws://127.0.0.1:${port}/api`, token: 'sec ret' });
    const events: unknown[] = [];
    connection.client.on('points.changed', (data) => events.push(data));
    await waitForState(connection, 'connected');
    expect(seenUrl).toBe('/api?token=sec%20ret');
    await expect(connection.client.call('schedules.setPaused', { paused: true })).resolves.toEqual({
      paused: true,
    });
    expect(events).toEqual([{ repo: '/r' }]);
    await expect(connection.client.call('jobs.cancel', { id: 'j1' })).rejects.toThrow(
      'Job j1 has already ended (succeeded); nothing to cancel.',
    );
  });

  it('says the token was refused, fails waiting calls, and reconnects when the engine is back', async () => {
    let accept = false;
    const port = await startServer((socket) => {
      if (!accept) socket.close(4001, 'access token refused');
    });
    connection = connectWebSocket({
      url: `ws://127.0.0.1:${port}/api`,
      token: 't',
      minRetryMs: 30,
      maxRetryMs: 60,
    });
    const down = await waitForState(connection, 'disconnected');
    expect(down.reason).toBe(
      'the engine refused the access token — open the address `diskline serve` printed',
    );
    expect(down.retryInMs).toBeGreaterThan(0);
    await expect(connection.client.call('jobs.list', {})).rejects.toThrow(
      'Not connected to the engine, so jobs.list was not sent. It reconnects by itself; try again then.',
    );
    accept = true;
    await waitForState(connection, 'connected');
  });

  it('takes a loopback engine address from the fragment (a UI dev server), never another host', () => {
    const at = (href: string) => new URL(href) as unknown as Location;
    expect(apiUrlFor(at('http://127.0.0.1:4000/#token=t'))).toBe('ws://127.0.0.1:4000/api');
    expect(apiUrlFor(at('http://localhost:5173/#token=t&engine=ws%3A%2F%2F127.0.0.1%3A4000%2Fapi'))).toBe(
      'ws://127.0.0.1:4000/api',
    );
    expect(apiUrlFor(at('http://localhost:5173/#token=t&engine=ws%3A%2F%2Fevil.example%2Fapi'))).toBe(
      'ws://localhost:5173/api',
    );
  });

  it('reads parameters from the URL fragment', () => {
    expect(fragmentParam('#token=abc&repo=%2Fsrv%2Fb', 'token')).toBe('abc');
    expect(fragmentParam('#token=abc&repo=%2Fsrv%2Fb', 'repo')).toBe('/srv/b');
    expect(fragmentParam('', 'token')).toBeNull();
  });
});
