// Picks the transport: the Electron preload bridge (`window.diskline`) when the shell provides one, otherwise the
// WebSocket of the origin that served this page, authenticated by the token in the URL fragment.
import type { EngineClient } from '../../../protocol/messages.ts';
import type { ConnectionState, EngineConnection } from './connection.ts';
import { apiUrlFor, connectWebSocket, fragmentParam } from './websocket-client.ts';

declare global {
  interface Window {
    diskline?: EngineClient;
  }
}

function bridgeConnection(bridge: EngineClient): EngineConnection {
  const state: ConnectionState = { status: 'connected', retryInMs: null, reason: null, transport: 'bridge' };
  return {
    client: bridge,
    onState(listener) {
      listener(state);
      return () => {};
    },
    close() {},
  };
}

/** Null when there is neither a bridge nor a token: the page was opened without the address serve printed. */
export function connectToEngine(win: Window): EngineConnection | null {
  if (win.diskline) return bridgeConnection(win.diskline);
  const token = fragmentParam(win.location.hash, 'token');
  if (!token) return null;
  return connectWebSocket({ url: apiUrlFor(win.location), token });
}
