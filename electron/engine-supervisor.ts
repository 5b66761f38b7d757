// Keeps the shell connected to an engine: the system service's socket when it runs; otherwise an engine
// started elevated (asking the user once); if that is declined, an unprivileged engine of the user's own,
// with a message saying what works without rights. A lost connection is retried with backoff, never by
// asking for rights again. It is the EngineClient the window and the tray use; listeners survive reconnects.
import type { Clock } from '../protocol/clock.ts';
import type { EngineClient, EventData, EventName, MethodName, Params, Result } from '../protocol/messages.ts';
import type { ElevationOutcome } from './elevation.ts';
import { fallbackAfter, limitedModeScope } from './elevation.ts';
import { EngineError, type EventHandler } from './engine-link.ts';
import type { EngineConnection } from './tray-model.ts';

/** The part of EngineLink the supervisor needs (tests give it links to an in-process engine). */
export type Link = {
  readonly socketPath: string;
  readonly closed: Promise<string>;
  readonly isOpen: boolean;
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
  /** Paces the reconnect backoff. */
  clock: Clock;
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

  /** Takes a fresh link into use; false (and the link closed) when the engine refuses this user. */
  async #adopt(link: Link): Promise<boolean> {
    let privileged = false;
    try {
      privileged = (await link.call('engine.status', {})).privileged;
    } catch (error) {
      if ((error as EngineError).code === 'forbidden') {
        link.close();
        this.#refusal = (error as Error).message;
        return false;
      }
      // A link that closed meanwhile is no link; an open one that cannot say its status is still worth
      // talking to (the UI shows its errors).
      if (!link.isOpen) return false;
    }
    this.#link = link;
    this.#deps.onConnection({ kind: 'connected', privileged }, this.notice);
    return true;
  }

  #refusal: string | null = null;

  /** Connects to the service; says why not when the service runs but turns this user away. */
  async #connectToService(): Promise<{ ok: boolean; refused: string | null }> {
    const { systemSocket } = this.#deps;
    try {
      const link = await this.#deps.connect(systemSocket, this.#dispatch);
      if (await this.#adopt(link)) return { ok: true, refused: null };
      return { ok: false, refused: this.#refusal };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The socket is 0660 root:diskline: a user outside the group cannot even connect.
      if (code === 'EACCES' || code === 'EPERM')
        return { ok: false, refused: `no permission to open ${systemSocket}` };
      return { ok: false, refused: null };
    }
  }

  /** The socket it connected to, or null when no engine could be had. */
  async #firstConnection(): Promise<string | null> {
    const { systemSocket, userSocket } = this.#deps;
    const service = await this.#connectToService();
    if (service.ok) return systemSocket;
    if (service.refused !== null) {
      // The service runs: a second, elevated engine would only collide with it. Say how to get in.
      this.notice =
        `The Diskline service is running but does not let you use it (${service.refused}). ` +
        `Ask an administrator to add you to the 'diskline' group, then log in again. ${limitedModeScope}`;
    } else {
      const fallback = fallbackAfter(await this.#deps.startElevated());
      if (!fallback) {
        const elevated = await this.#tryConnect(systemSocket);
        if (elevated && (await this.#adopt(elevated))) return systemSocket;
        this.notice = `The engine started but does not answer at ${systemSocket}.`;
      } else {
        this.notice = fallback.message;
      }
    }
    try {
      await this.#deps.startUnprivileged(userSocket);
    } catch (error) {
      const reason = `${this.notice} Starting the engine without rights failed too: ${(error as Error).message}`;
      this.#deps.onConnection({ kind: 'offline', reason }, reason);
      return null;
    }
    const own = await this.#tryConnect(userSocket);
    if (!own || !(await this.#adopt(own))) {
      const reason = `${this.notice} The engine started without rights does not answer at ${userSocket}.`;
      this.#deps.onConnection({ kind: 'offline', reason }, reason);
      return null;
    }
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
        await this.#deps.clock.sleep(delay);
        delay = Math.min(delay * 2, maxRetryMs);
      }
      if (!link) return;
      if (this.#stopped) {
        link.close();
        return;
      }
      if (!(await this.#adopt(link))) {
        this.#deps.onConnection(
          { kind: 'offline', reason: this.#refusal ?? 'The engine refused the connection.' },
          null,
        );
        await this.#deps.clock.sleep(maxRetryMs);
      }
    }
  }
}
