// Keeps the shell connected to an engine: the system service's socket when it runs; otherwise an engine
// started elevated (asking the user once); if that is declined, an unprivileged engine of the user's own,
// with a message saying what works without rights. A lost connection is retried with backoff, never by
// asking for rights again. It is the EngineClient the window and the tray use; listeners survive reconnects.
import type { EngineClient, EventData, EventName, MethodName, Params, Result } from '../protocol/messages.ts';
import type { ElevationOutcome } from './elevation.ts';
import { fallbackAfter } from './elevation.ts';
import { EngineError, type EventHandler } from './engine-link.ts';
import type { EngineConnection } from './tray-model.ts';

/** The part of EngineLink the supervisor needs (tests give it links to an in-process engine). */
export type Link = {
  readonly socketPath: string;
  readonly closed: Promise<string>;
  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>>;
  close(): void;
};

export type SupervisorDeps = {
  /** The service's socket (DISKLINE_SOCKET, default /run/diskline/engine.sock). */
  systemSocket: string;
  /** Where an unprivileged engine of this user listens (in the user's runtime directory). */
  userSocket: string;
  connect(socketPath: string, onEvent: EventHandler): Promise<Link>;
  /** Asks for rights and starts the engine; resolves once its socket answers or the attempt ended. */
  startElevated(): Promise<ElevationOutcome>;
  startUnprivileged(socketPath: string): Promise<void>;
  sleep(ms: number): Promise<void>;
  onConnection(connection: EngineConnection, notice: string | null): void;
};

const firstRetryMs = 500;
const maxRetryMs = 10_000;

export class EngineSupervisor implements EngineClient {
  readonly #deps: SupervisorDeps;
  readonly #listeners = new Map<EventName, Set<(data: never) => void>>();
  #link: Link | null = null;
  #stopped = false;
  /** Shown while connected to the unprivileged fallback (what works, what does not). */
  notice: string | null = null;

  constructor(deps: SupervisorDeps) {
    this.#deps = deps;
  }

  get connected(): boolean {
    return this.#link !== null;
  }

  /** Finds or starts an engine, then keeps the connection up until stop(). Resolves after the first attempt. */
  async start(): Promise<void> {
    this.#deps.onConnection({ kind: 'connecting' }, null);
    const socketPath = await this.#firstConnection();
    if (socketPath !== null) {
      void this.#keepConnected(socketPath);
    } else {
      // No engine could be had now; the service may be installed or started later, so keep looking for it.
      this.notice = null;
      void this.#keepConnected(this.#deps.systemSocket);
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#link?.close();
    this.#link = null;
  }

  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    if (!this.#link) {
      return Promise.reject(
        new EngineError(
          'failed',
          `Cannot ${method}: Diskline is not connected to its engine. Try again shortly.`,
        ),
      );
    }
    return this.#link.call(method, params);
  }

  on<E extends EventName>(event: E, listener: (data: EventData<E>) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as (data: never) => void);
    return () => set.delete(listener as (data: never) => void);
  }

  readonly #dispatch: EventHandler = (event, data) => {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        (listener as (value: unknown) => void)(data);
      } catch (error) {
        console.error(`diskline: a listener of '${event}' threw:`, error);
      }
    }
  };

  async #tryConnect(socketPath: string): Promise<Link | null> {
    try {
      return await this.#deps.connect(socketPath, this.#dispatch);
    } catch {
      return null;
    }
  }

  async #adopt(link: Link): Promise<void> {
    this.#link = link;
    let privileged = false;
    try {
      privileged = (await link.call('engine.status', {})).privileged;
    } catch {
      // An engine that cannot say its status is still worth talking to; the UI shows its errors.
    }
    this.#deps.onConnection({ kind: 'connected', privileged }, this.notice);
  }

  /** The socket it connected to, or null when no engine could be had. */
  async #firstConnection(): Promise<string | null> {
    const { systemSocket, userSocket } = this.#deps;
    const service = await this.#tryConnect(systemSocket);
    if (service) {
      await this.#adopt(service);
      return systemSocket;
    }
    const outcome = await this.#deps.startElevated();
    const fallback = fallbackAfter(outcome);
    if (!fallback) {
      const elevated = await this.#tryConnect(systemSocket);
      if (elevated) {
        await this.#adopt(elevated);
        return systemSocket;
      }
      this.notice = `The engine started but does not answer at ${systemSocket}.`;
    } else {
      this.notice = fallback.message;
    }
    try {
      await this.#deps.startUnprivileged(userSocket);
    } catch (error) {
      const reason = `${this.notice} Starting the engine without rights failed too: ${(error as Error).message}`;
      this.#deps.onConnection({ kind: 'offline', reason }, reason);
      return null;
    }
    const own = await this.#tryConnect(userSocket);
    if (!own) {
      const reason = `${this.notice} The engine started without rights does not answer at ${userSocket}.`;
      this.#deps.onConnection({ kind: 'offline', reason }, reason);
      return null;
    }
    await this.#adopt(own);
    return userSocket;
  }

  /** Waits for the link to close, then reconnects with backoff; with no link yet, starts by connecting. */
  async #keepConnected(socketPath: string): Promise<void> {
    while (!this.#stopped) {
      if (this.#link) {
        const reason = await this.#link.closed;
        this.#link = null;
        if (this.#stopped) return;
        this.#deps.onConnection(
          { kind: 'offline', reason: `Lost the engine (${reason}); reconnecting…` },
          this.notice,
        );
      }
      let delay = firstRetryMs;
      let link: Link | null = null;
      while (!this.#stopped && !(link = await this.#tryConnect(socketPath))) {
        await this.#deps.sleep(delay);
        delay = Math.min(delay * 2, maxRetryMs);
      }
      if (!link) return;
      if (this.#stopped) {
        link.close();
        return;
      }
      await this.#adopt(link);
    }
  }
}
