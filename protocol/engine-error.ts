// The error a client of the engine API rejects a call with, whatever the transport (unix socket, WebSocket,
// preload bridge). Runtime-neutral: the Electron shell and the renderer throw the same class.

/**
 * An error the engine answered with, or the client's own when no answer can come. `code` is the protocol's
 * ErrorCode, or a client-side one ('disconnected', 'bad-response'); it says whether retrying can help.
 */
export class EngineError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
  }
}
