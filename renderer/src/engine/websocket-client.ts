// The engine client over the WebSocket of `diskline serve`: requests carry an id, responses settle them, events
// fan out to listeners. The token comes from the page's URL fragment (#token=…), never from a query string, so it
// stays out of server logs and Referer headers. The link reconnects with exponential backoff.
import {
  type EngineClient,
  type EventData,
  type EventName,
  eventSchemas,
  MAX_MESSAGE_BYTES,
  type MethodName,
  methods,
  type Params,
  type Result,
  type ServerMessage,
} from '../../../protocol/messages.ts';
import { type ConnectionState, type EngineConnection, EngineError } from './connection.ts';

export interface WebSocketOptions {
  /** ws://host:port/path of the engine's API. */
  url: string;
  token: string;
  /** Backoff bounds for reconnecting, in milliseconds. */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** Injected in tests; the browser's WebSocket otherwise. */
  WebSocketImpl?: typeof WebSocket;
}

interface PendingCall {
  method: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The API's URL on the serving origin: same host, ws(s), path /api. */
export function apiUrlFromLocation(location: Location): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api`;
}

/**
 * The API's URL: the serving origin's, or — for a UI dev server started with `diskline serve --allow-origin` —
 * the `#engine=ws://127.0.0.1:PORT/api` of the address. Only loopback engines are accepted, so a crafted link
 * cannot send the token elsewhere.
 */
export function apiUrlFor(location: Location): string {
  const requested = fragmentParam(location.hash, 'engine');
  if (requested) {
    try {
      const url = new URL(requested);
      const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
      if ((url.protocol === 'ws:' || url.protocol === 'wss:') && loopback)
        return `${url.origin}${url.pathname}`;
    } catch {
      // Not a URL: fall back to the serving origin.
    }
  }
  return apiUrlFromLocation(location);
}

/** Reads `token` from a fragment like `#token=abc&repo=/srv/backups`. */
export function fragmentParam(hash: string, name: string): string | null {
  return new URLSearchParams(hash.replace(/^#/, '')).get(name);
}

export function connectWebSocket(options: WebSocketOptions): EngineConnection {
  const WebSocketImpl = options.WebSocketImpl ?? WebSocket;
  const minRetryMs = options.minRetryMs ?? 500;
  const maxRetryMs = options.maxRetryMs ?? 15_000;
  const listeners = new Map<string, Set<(data: unknown) => void>>();
  const stateListeners = new Set<(state: ConnectionState) => void>();
  const pending = new Map<number, PendingCall>();
  let state: ConnectionState = {
    status: 'connecting',
    retryInMs: null,
    reason: null,
    transport: 'websocket',
  };
  let socket: WebSocket | null = null;
  let nextId = 1;
  let failures = 0;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;

  function setState(next: Partial<ConnectionState>): void {
    state = { ...state, ...next };
    for (const listener of stateListeners) listener(state);
  }

  function failPending(reason: string): void {
    for (const [id, call] of pending) {
      pending.delete(id);
      call.reject(
        new EngineError(
          'disconnected',
          `Lost the connection to the engine while waiting for ${call.method} (${reason}). It reconnects by itself; try again then.`,
        ),
      );
    }
  }

  function scheduleReconnect(reason: string): void {
    if (closed) return;
    const delay = Math.min(maxRetryMs, minRetryMs * 2 ** failures);
    failures += 1;
    setState({ status: 'disconnected', retryInMs: delay, reason });
    retryTimer = setTimeout(open, delay);
  }

  function handleMessage(text: string): void {
    if (text.length > MAX_MESSAGE_BYTES) return;
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (message.type === 'response') {
      const call = pending.get(message.id);
      if (!call) return;
      pending.delete(message.id);
      if (message.ok) {
        const schema = methods[call.method as MethodName][1];
        const parsed = schema.safeParse(message.result);
        if (parsed.success) call.resolve(parsed.data);
        else
          call.reject(
            new EngineError('bad-response', `The engine's answer to ${call.method} was malformed.`),
          );
      } else {
        call.reject(new EngineError(message.error.code, message.error.message));
      }
    } else if (message.type === 'event') {
      const schema = eventSchemas[message.event];
      const set = listeners.get(message.event);
      if (!schema || !set || set.size === 0) return;
      const parsed = schema.safeParse(message.data);
      if (!parsed.success) return;
      for (const listener of set) listener(parsed.data);
    }
  }

  function open(): void {
    retryTimer = null;
    if (closed) return;
    setState({ status: 'connecting', retryInMs: null });
    const url = `${options.url}${options.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(options.token)}`;
    let ws: WebSocket;
    try {
      ws = new WebSocketImpl(url);
    } catch (error) {
      scheduleReconnect(`could not open ${options.url}: ${(error as Error).message}`);
      return;
    }
    socket = ws;
    ws.onopen = () => {
      failures = 0;
      setState({ status: 'connected', retryInMs: null, reason: null });
    };
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data === 'string') handleMessage(event.data);
    };
    ws.onclose = (event: CloseEvent) => {
      if (socket !== ws) return;
      socket = null;
      const reason =
        event.code === 1008 || event.code === 4001
          ? 'the engine refused the access token — open the address `diskline serve` printed'
          : event.reason || `the link closed (code ${event.code})`;
      failPending(reason);
      scheduleReconnect(reason);
    };
    ws.onerror = () => {
      // onclose follows with the code; nothing to add here.
    };
  }

  const client: EngineClient = {
    call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
      return new Promise<Result<M>>((resolve, reject) => {
        if (!socket || state.status !== 'connected') {
          reject(
            new EngineError(
              'disconnected',
              `Not connected to the engine, so ${method} was not sent. It reconnects by itself; try again then.`,
            ),
          );
          return;
        }
        const id = nextId++;
        pending.set(id, { method, resolve: resolve as (value: unknown) => void, reject });
        socket.send(JSON.stringify({ type: 'request', id, method, params }));
      });
    },
    on<E extends EventName>(event: E, listener: (data: EventData<E>) => void): () => void {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      const entry = listener as (data: unknown) => void;
      set.add(entry);
      return () => set.delete(entry);
    },
  };

  open();
  return {
    client,
    onState(listener) {
      stateListeners.add(listener);
      listener(state);
      return () => stateListeners.delete(listener);
    },
    close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      failPending('the window closed');
      socket?.close();
      socket = null;
    },
  };
}
