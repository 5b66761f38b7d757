// The transport of `diskline serve`: HTTP on 127.0.0.1 only, serving the built renderer and the API as a
// WebSocket at /api. The WebSocket upgrade must carry the random access token (?token=…, compared in
// constant time) and, from a browser, an Origin of this very server; anything else never reaches a method.
// A wrong token gets the handshake and an immediate close with code 4001, so the page can say why.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { type WebSocket, WebSocketServer } from 'ws';
import { MAX_MESSAGE_BYTES } from '../../protocol/messages.ts';
import { type Connection, dispatch } from './dispatcher.ts';
import { Engine } from './engine.ts';
import { encodeBounded } from './frames.ts';

/** Close code for a refused access token (the renderer tells the user to open the printed address). */
export const TOKEN_REFUSED_CLOSE_CODE = 4001;
/** Output queued for one client beyond which it is considered stuck and dropped. */
const MAX_QUEUED_OUTPUT_BYTES = 16 * MAX_MESSAGE_BYTES;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws://127.0.0.1:* ws://localhost:*; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export interface WebServerOptions {
  /** 0 picks a free port. */
  port: number;
  /** Directory of the built renderer (index.html and assets). */
  rendererDir: string;
  /** Extra origins allowed to open the WebSocket (e.g. a Vite dev server). */
  allowedOrigins?: string[];
  /** Fixed token (tests); random otherwise. */
  token?: string;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export class WebServer {
  readonly token: string;
  #engine: Engine;
  #options: WebServerOptions;
  #http: Server | null = null;
  #wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  #port = 0;

  constructor(engine: Engine, options: WebServerOptions) {
    this.#engine = engine;
    this.#options = options;
    this.token = options.token ?? randomBytes(24).toString('base64url');
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/#token=${this.token}`;
  }

  async listen(): Promise<void> {
    const http = createServer((request, response) => {
      this.#serveFile(request, response).catch(() => {
        if (!response.headersSent) response.writeHead(400).end();
        else response.destroy();
      });
    });
    http.on('upgrade', (request, socket, head) => this.#upgrade(request, socket, head));
    this.#http = http;
    await new Promise<void>((done, fail) => {
      http.once('error', fail);
      // Loopback only: the engine runs as root and must never be reachable from the network.
      http.listen(this.#options.port, '127.0.0.1', () => {
        http.off('error', fail);
        done();
      });
    });
    this.#port = (http.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const client of this.#wss.clients) client.terminate();
    this.#wss.close();
    this.#http?.closeAllConnections();
    await new Promise<void>((done) => (this.#http ? this.#http.close(() => done()) : done()));
  }

  #tokenMatches(given: string | null): boolean {
    // Digests have one length whatever was sent, so the comparison time says nothing about the token.
    return given !== null && timingSafeEqual(digest(given), digest(this.token));
  }

  /** Refuses a Host other than this server: a page on another name that resolves here (DNS rebinding). */
  #hostAllowed(host: string | undefined): boolean {
    return host === `127.0.0.1:${this.#port}` || host === `localhost:${this.#port}`;
  }

  #originAllowed(origin: string | undefined): boolean {
    // Non-browser clients send no Origin; the token alone authenticates them.
    if (origin === undefined) return true;
    const own = [`http://127.0.0.1:${this.#port}`, `http://localhost:${this.#port}`];
    return own.includes(origin) || (this.#options.allowedOrigins ?? []).includes(origin);
  }

  #upgrade(request: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/api') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    if (!this.#hostAllowed(request.headers.host) || !this.#originAllowed(request.headers.origin)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      return;
    }
    const tokenOk = this.#tokenMatches(url.searchParams.get('token'));
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      if (!tokenOk) {
        ws.close(TOKEN_REFUSED_CLOSE_CODE, 'access token refused');
        return;
      }
      this.#attach(ws);
    });
  }

  #attach(ws: WebSocket): void {
    const cleanups: (() => void)[] = [];
    const send = (message: unknown) => {
      if (ws.readyState !== ws.OPEN) return;
      if (ws.bufferedAmount > MAX_QUEUED_OUTPUT_BYTES) {
        ws.terminate();
        return;
      }
      const text = encodeBounded(message as { type: string });
      if (text !== null) ws.send(text);
    };
    const connection: Connection = {
      id: Engine.newConnectionId(),
      transport: 'websocket',
      uid: null,
      sendEvent: (event, data) => send({ type: 'event', event, data }),
      onClose: (cleanup) => cleanups.push(cleanup),
    };
    cleanups.push(this.#engine.events.subscribe((event, data) => connection.sendEvent(event, data)));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString();
      void dispatch(text, this.#engine.handlers, connection).then(send);
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      for (const cleanup of cleanups.splice(0)) cleanup();
    });
  }

  async #serveFile(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (!this.#hostAllowed(request.headers.host)) {
      response
        .writeHead(421, { 'content-type': 'text/plain; charset=utf-8' })
        .end('Open the address diskline serve printed.\n');
      return;
    }
    const root = resolve(this.#options.rendererDir);
    const pathname = decodeURIComponent(new URL(request.url ?? '/', 'http://127.0.0.1').pathname);
    let file = normalize(join(root, pathname));
    if (file !== root && !file.startsWith(root + sep)) {
      response.writeHead(403).end();
      return;
    }
    let info = await stat(file).catch(() => null);
    if (info?.isDirectory()) {
      file = join(file, 'index.html');
      info = await stat(file).catch(() => null);
    }
    if (!info?.isFile()) {
      // A client-side route: the app's index.html handles it.
      file = join(root, 'index.html');
      info = await stat(file).catch(() => null);
      if (!info?.isFile()) {
        response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        response.end(
          `The Diskline UI is not built (${root} has no index.html): run 'npm run build', then reload.\n`,
        );
        return;
      }
    }
    response.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': info.size,
      'cache-control': 'no-cache',
      ...SECURITY_HEADERS,
    });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    createReadStream(file).pipe(response);
  }
}
