// The connection to the engine as the UI sees it: one EngineClient whatever the transport, plus the state of the
// link (so the UI can say "disconnected" and when it will try again).
import type { EngineClient } from '../../../protocol/messages.ts';

export type ConnectionStatus = 'connecting' | 'connected' | 'disconnected';

export interface ConnectionState {
  status: ConnectionStatus;
  /** When disconnected: milliseconds until the next attempt. */
  retryInMs: number | null;
  /** Why the last attempt failed or the link dropped, in words for the user. */
  reason: string | null;
  /** 'bridge' inside the desktop app, 'websocket' in a browser. */
  transport: 'bridge' | 'websocket';
}

export interface EngineConnection {
  client: EngineClient;
  /** Calls the listener now and on every change; returns the function that unsubscribes. */
  onState(listener: (state: ConnectionState) => void): () => void;
  close(): void;
}

/** An error the engine returned for a request (shared with the Electron shell): its code says whether retrying can help. */
export { EngineError } from '../../../protocol/engine-error.ts';
