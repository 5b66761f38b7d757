// The engine as the CLI's verbs see it: the daemon over its unix socket when that socket answers, otherwise
// an engine hosted in this process for the one command. Both implement the protocol's EngineClient, and a
// failed call throws EngineCallError carrying the API's error code and the kind of failure it is.
import { existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { MAX_MESSAGE_BYTES } from '../../protocol/constants.ts';
import { type FailureKind, KindedError } from '../../protocol/failure.ts';
import type {
  EngineClient,
  ErrorCode,
  EventData,
  EventName,
  MethodName,
  Params,
  Result,
  ServerMessage,
} from '../../protocol/messages.ts';
import { socketPath } from '../config/socket-path.ts';
import type { Engine } from './engine.ts';
import { encodeFrame, FrameDecoder } from './frames.ts';
import type { HostOptions } from './host.ts';

/** The kind of failure an API error code is: bad input, a refusal (for safety or not allowed), damage, or other. */
function kindOfCode(code: ErrorCode | 'disconnected'): FailureKind {
  if (code === 'bad-request' || code === 'unknown-method') return 'usage';
  if (code === 'refused' || code === 'forbidden') return 'refusal';
  if (code === 'damaged') return 'damage';
  return 'failure';
}

export class EngineCallError extends KindedError {
  readonly code: ErrorCode | 'disconnected';
  constructor(code: ErrorCode | 'disconnected', message: string) {
    super(kindOfCode(code), message);
    this.code = code;
  }
}

type Listener = (data: unknown) => void;

/** Common to both clients: event listeners by name. */
class Listeners {
  #byEvent = new Map<string, Set<Listener>>();
  on(event: string, listener: Listener): () => void {
    let set = this.#byEvent.get(event);
    if (!set) this.#byEvent.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }
  emit(event: string, data: unknown): void {
    for (const listener of this.#byEvent.get(event) ?? []) listener(data);
  }
}

export interface ClosableEngineClient extends EngineClient {
  readonly kind: 'daemon' | 'in-process';
  close(): Promise<void>;
}

/** A client of the daemon over its unix socket. */
export class SocketClient implements ClosableEngineClient {
  readonly kind = 'daemon' as const;
  #socket: Socket;
  #nextId = 1;
  #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #listeners = new Listeners();
  #closedReason: string | null = null;

  private constructor(socket: Socket) {
    this.#socket = socket;
    const decoder = new FrameDecoder(MAX_MESSAGE_BYTES * 16);
    socket.on('data', (data: Buffer) => {
      for (const frame of decoder.push(data)) {
        if (frame.kind === 'frame') this.#receive(frame.text);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closedReason ??= 'the engine closed the connection';
      for (const pending of this.#pending.values()) {
        pending.reject(new EngineCallError('disconnected', `Lost the engine: ${this.#closedReason}.`));
      }
      this.#pending.clear();
    });
  }

  static connect(path: string): Promise<SocketClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new SocketClient(socket));
      });
      socket.once('error', reject);
    });
  }

  #receive(text: string): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (message.type === 'event') {
      this.#listeners.emit(message.event, message.data);
      return;
    }
    if (message.type !== 'response') return;
    const pending = this.#pending.get(message.id);
    if (!pending) {
      // An error not tied to a request (e.g. 'forbidden' when the engine refuses this user): fail them all.
      if (!message.ok) {
        this.#closedReason = message.error.message;
        for (const waiting of this.#pending.values()) {
          waiting.reject(new EngineCallError(message.error.code, message.error.message));
        }
        this.#pending.clear();
      }
      return;
    }
    this.#pending.delete(message.id);
    if (message.ok) pending.resolve(message.result);
    else pending.reject(new EngineCallError(message.error.code, message.error.message));
  }

  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    if (this.#socket.destroyed) {
      return Promise.reject(new EngineCallError('disconnected', `Lost the engine: ${this.#closedReason}.`));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#socket.write(encodeFrame({ type: 'request', id, method, params }));
    });
  }

  on<E extends EventName>(event: E, listener: (data: EventData<E>) => void): () => void {
    return this.#listeners.on(event, listener as Listener);
  }

  /** Calls `listener` once when the connection ends (the daemon stopped, or close()). */
  onClose(listener: () => void): void {
    if (this.#socket.destroyed) listener();
    else this.#socket.once('close', listener);
  }

  async close(): Promise<void> {
    this.#closedReason = 'closed by the client';
    this.#socket.end();
    this.#socket.destroy();
  }
}

/** A client of an engine in this process; requests go through the same validation as over a socket. */
export class InProcessClient implements ClosableEngineClient {
  readonly kind = 'in-process' as const;
  readonly engine: Engine;
  #listeners = new Listeners();
  #connection;
  #ownsEngine: boolean;
  #nextId = 1;
  #unsubscribe: () => void;

  constructor(engine: Engine, ownsEngine = true) {
    this.engine = engine;
    this.#ownsEngine = ownsEngine;
    this.#connection = engine.localConnection((event, data) => this.#listeners.emit(event, data));
    this.#unsubscribe = engine.events.subscribe((event, data) => this.#listeners.emit(event, data));
  }

  async call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    const request = JSON.stringify({ type: 'request', id: this.#nextId++, method, params });
    // Loaded on first use: a client of the daemon needs none of the engine's parts.
    const { dispatch } = await import('./dispatcher.ts');
    const response = await dispatch(request, this.engine.handlers, this.#connection);
    if (response.ok) return response.result as Result<M>;
    throw new EngineCallError(response.error.code, response.error.message);
  }

  on<E extends EventName>(event: E, listener: (data: EventData<E>) => void): () => void {
    return this.#listeners.on(event, listener as Listener);
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    this.#connection.close();
    if (this.#ownsEngine) await this.engine.stop();
  }
}

/**
 * The daemon if its socket (DISKLINE_SOCKET, default /run/diskline/engine.sock) exists and answers,
 * otherwise an engine in this process (its state in DISKLINE_STATE_DIR; no schedules run, no volumes attached).
 */
export async function connectEngine(
  options: HostOptions & { socket?: string } = {},
): Promise<ClosableEngineClient> {
  const path = options.socket ?? socketPath();
  if (existsSync(path)) {
    try {
      return await SocketClient.connect(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        throw new EngineCallError(
          'forbidden',
          `The Diskline engine at ${path} does not let this user in (${code}); run as root or ask for your uid to be allowed.`,
        );
      }
      // ECONNREFUSED: a socket left by a daemon that is gone; host the engine here instead.
    }
  }
  // Loaded only here: a client of the daemon needs none of the engine's parts.
  const { openEngine } = await import('./host.ts');
  const engine = await openEngine({ ...options, schedules: false, recover: false, reattach: false });
  return new InProcessClient(engine);
}
