// The type of `window.diskline`, the bridge the preload exposes: the renderer imports this type (only the
// type) and finds the engine's API on window when it runs inside the desktop shell.
import type { EngineClient } from '../protocol/messages.ts';

export type DisklineBridge = EngineClient;

declare global {
  interface Window {
    /** Present inside the desktop shell; absent in a browser, where the WebSocket client is used. */
    diskline?: DisklineBridge;
  }
}
