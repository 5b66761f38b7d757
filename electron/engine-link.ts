// One connection to the engine's unix socket: newline-delimited JSON frames of the protocol's requests,
// responses and events. Answers are checked against the method's result schema, so an engine of another
// version fails loudly with the method's name instead of feeding the UI data it cannot show.
import { createConnection, type Socket } from 'node:net';
import { EngineError } from '../protocol/engine-error.ts';
import {
  type EventData,
  type EventName,
  eventSchemas,
  MAX_MESSAGE_BYTES,
  type MethodName,
  methods,
  type Params,
  type Result,
  type ServerMessage,
} from '../protocol/messages.ts';

type Pending = { method: MethodName; resolve: (value: unknown) => void; reject: (error: Error) => void };

/** The error every call rejects with; shared with the renderer's WebSocket client. */
export { EngineError };

export type EventHandler = <E extends EventName>(event: E, data: EventData<E>) => void;

export class EngineLink {
  readonly socketPath: string;
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #onEvent: EventHandler;
  #nextId = 1;
  #buffered = '';
  #closedReason: string | null = null;
  /** Set when the engine turned this client away; later calls fail with it too. */
  #refusal: { code: string; message: string } | null = null;
  readonly closed: Promise<string>;

  private constructor(socketPath: string, socket: Socket, onEvent: EventHandler) {
    this.socketPath = socketPath;
    this.#socket = socket;
    this.#onEvent = onEvent;
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.#receive(text));
    this.closed = new Promise((resolve) => {
      socket.on('error', (error: NodeJS.ErrnoException) =>
        this.#fail(
          error.code === 'ECONNRESET' || error.code === 'EPIPE'
            ? `the engine closed the connection at ${socketPath}`
            : `the connection to ${socketPath} failed: ${error.message}`,
        ),
      );
      socket.on('close', () => {
        this.#fail(`the engine closed the connection at ${socketPath}`);
        resolve(this.#closedReason!);
      });
    });
  }

  /** Connects, or throws the socket's error (ENOENT: nothing listens; ECONNREFUSED: a stale socket file). */
  static connect(socketPath: string, onEvent: EventHandler, timeoutMs = 3000): Promise<EngineLink> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          Object.assign(new Error(`no answer from ${socketPath} in ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
        );
      }, timeoutMs);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new EngineLink(socketPath, socket, onEvent));
      });
    });
  }

  get isOpen(): boolean {
    return this.#closedReason === null;
  }

  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    if (this.#refusal !== null)
      return Promise.reject(new EngineError(this.#refusal.code, this.#refusal.message));
    if (this.#closedReason !== null) {
      return Promise.reject(new EngineError('failed', `Cannot call ${method}: ${this.#closedReason}.`));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { method, resolve: resolve as (value: unknown) => void, reject });
      this.#socket.write(`${JSON.stringify({ type: 'request', id, method, params })}\n`);
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  /** Closes the link for `reason`; with a `refusal` (the engine turned this client away), calls fail with it. */
  #fail(reason: string, refusal?: { code: string; message: string }): void {
    if (this.#closedReason !== null) return;
    this.#closedReason = reason;
    this.#refusal = refusal ?? null;
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.reject(
        refusal
          ? new EngineError(refusal.code, refusal.message)
          : new EngineError('failed', `${pending.method} got no answer: ${reason}. Try again.`),
      );
    }
    this.#socket.destroy();
  }

  #receive(text: string): void {
    this.#buffered += text;
    let newline = this.#buffered.indexOf('\n');
    while (newline !== -1) {
      const frame = this.#buffered.slice(0, newline);
      this.#buffered = this.#buffered.slice(newline + 1);
      if (frame.trim() !== '') this.#handleFrame(frame);
      newline = this.#buffered.indexOf('\n');
    }
    // A peer that never sends a newline must not grow our memory without bound.
    if (this.#buffered.length > MAX_MESSAGE_BYTES * 4) {
      this.#fail(
        `the engine at ${this.socketPath} sent a message larger than ${MAX_MESSAGE_BYTES * 4} bytes`,
      );
    }
  }

  #handleFrame(frame: string): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(frame) as ServerMessage;
    } catch {
      this.#fail(`the engine at ${this.socketPath} sent a frame that is not JSON`);
      return;
    }
    if (message.type === 'event') {
      if (!Object.hasOwn(eventSchemas, message.event)) return; // an event of a newer engine: not ours to show
      const parsed = eventSchemas[message.event].safeParse(message.data);
      if (parsed.success) this.#onEvent(message.event, parsed.data as EventData<typeof message.event>);
      return;
    }
    if (message.type !== 'response') return;
    const pending = this.#pending.get(message.id);
    if (!pending) {
      // An error answering no request of ours: the engine refuses this client as a whole (its uid is not
      // allowed) and closes the connection.
      if (!message.ok) this.#fail(message.error.message, message.error);
      return;
    }
    this.#pending.delete(message.id);
    if (!message.ok) {
      pending.reject(new EngineError(message.error.code, message.error.message));
      return;
    }
    const parsed = methods[pending.method][1].safeParse(message.result);
    if (parsed.success) {
      pending.resolve(parsed.data);
    } else {
      const issue = parsed.error.issues[0];
      pending.reject(
        new EngineError(
          'failed',
          `The engine answered ${pending.method} with data this version of Diskline does not understand ` +
            `(${issue?.path.join('.') || 'result'}: ${issue?.message}). Update Diskline and its engine together.`,
        ),
      );
    }
  }
}
