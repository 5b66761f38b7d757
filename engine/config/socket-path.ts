// Where the daemon's socket lives. Its own module so that a command which only asks "is a daemon running?"
// loads nothing of the engine.

export const DEFAULT_SOCKET_PATH = '/run/diskline/engine.sock';

export function socketPath(): string {
  return process.env.DISKLINE_SOCKET || DEFAULT_SOCKET_PATH;
}
