// A small engine for the shell's tests: listens on a real unix socket, speaks the protocol's frames, answers
// a scripted set of methods and can push events. The real engine is another process owned elsewhere; this
// stands in for it where a test is about the shell's side of the socket.
import { createServer, type Server, type Socket } from 'node:net';
import type { EventName, MethodName } from '../../protocol/messages.ts';

export type Handler = (params: unknown) => unknown;

/** A handler returning this leaves the request unanswered (an engine busy or hung). */
export const noAnswer = Symbol('no answer');

export class TestEngine {
  readonly socketPath: string;
  readonly requests: { method: string; params: unknown }[] = [];
  readonly handlers = new Map<string, Handler>();
  readonly #server: Server;
  readonly #clients = new Set<Socket>();
  /** When set, every new connection is turned away with this message, as the daemon does a uid it does not allow. */
  refuseWith: string | null = null;

  private constructor(socketPath: string, server: Server) {
    this.socketPath = socketPath;
    this.#server = server;
  }

  static async listen(socketPath: string): Promise<TestEngine> {
    const server = createServer();
    const engine = new TestEngine(socketPath, server);
    engine.handle('engine.status', () => ({
      version: '0.1.0-test',
      privileged: true,
      schedulesPaused: false,
      nextRun: null,
    }));
    server.on('connection', (socket) => engine.#serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    return engine;
  }

  handle(method: MethodName, handler: Handler): void {
    this.handlers.set(method, handler);
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  emit(event: EventName, data: unknown): void {
    const frame = `${JSON.stringify({ type: 'event', event, data })}\n`;
    for (const socket of this.#clients) socket.write(frame);
  }

  /** Drops every connection, as a restarting engine does. */
  dropClients(): void {
    for (const socket of this.#clients) socket.destroy();
  }

  async close(): Promise<void> {
    this.dropClients();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: Socket): void {
    if (this.refuseWith !== null) {
      const refusal = {
        type: 'response',
        id: -1,
        ok: false,
        error: { code: 'forbidden', message: this.refuseWith },
      };
      socket.end(`${JSON.stringify(refusal)}\n`);
      socket.on('error', () => {});
      // Read (and drop) until the client's end arrives: a paused socket never sees it, never closes, and
      // would hold server.close() open.
      socket.resume();
      return;
    }
    this.#clients.add(socket);
    socket.on('close', () => this.#clients.delete(socket));
    socket.on('error', () => {});
    socket.setEncoding('utf8');
    let buffered = '';
    socket.on('data', (text: string) => {
      buffered += text;
      let newline = buffered.indexOf('\n');
      while (newline !== -1) {
        const request = JSON.parse(buffered.slice(0, newline)) as {
          id: number;
          method: string;
          params: unknown;
        };
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf('\n');
        this.requests.push({ method: request.method, params: request.params });
        const answer = this.#answer(request);
        if (answer !== noAnswer) socket.write(`${JSON.stringify(answer)}\n`);
      }
    });
  }

  #answer(request: { id: number; method: string; params: unknown }): unknown {
    const handler = this.handlers.get(request.method);
    if (!handler) {
      return {
        type: 'response',
        id: request.id,
        ok: false,
        error: { code: 'unknown-method', message: `no ${request.method} here` },
      };
    }
    try {
      const result = handler(request.params);
      if (result === noAnswer) return noAnswer;
      return { type: 'response', id: request.id, ok: true, result };
    } catch (error) {
      return {
        type: 'response',
        id: request.id,
        ok: false,
        error: { code: 'failed', message: (error as Error).message },
      };
    }
  }
}
