// The daemon's transport: newline-delimited JSON frames on a unix socket. The socket file is created
// 0660 (owner root, group root or the 'diskline' group), and every connection is checked again by the
// peer's credentials (SO_PEERCRED): root, the daemon's own uid, or a uid allowed in the config. Frames over
// MAX_MESSAGE_BYTES are refused before parsing; malformed input gets an error response and never ends the
// daemon. A client that does not read its events is dropped rather than let memory grow.
import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { MAX_MESSAGE_BYTES } from '../../protocol/messages.ts';
import { type PeerCredentials, peerCredentials } from '../native/index.ts';
import { callerOf, mayAccess } from './authorization.ts';
import { type Connection, dispatch, UNREADABLE_REQUEST_ID } from './dispatcher.ts';
import { Engine } from './engine.ts';
import { encodeBounded, encodeFrame, FrameDecoder } from './frames.ts';

export { DEFAULT_SOCKET_PATH, socketPath } from '../config/socket-path.ts';

/** Output queued for one client beyond which it is considered stuck and dropped. */
const MAX_QUEUED_OUTPUT_BYTES = 16 * MAX_MESSAGE_BYTES;

export interface UnixServerOptions {
  path: string;
  /** File mode of the socket; 0660 by default. */
  mode?: number;
  /** Group owning the socket (members may connect if also allowed by uid); root's group by default. */
  gid?: number;
  /** Uids allowed for this run only, besides root and the config's (the user who started it via pkexec). */
  extraAllowedUids?: number[];
}

/** Who is connecting; null when the kernel cannot tell (the native helper is not built). */
function credentialsOf(socket: Socket): PeerCredentials | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) return null;
  try {
    return peerCredentials(fd);
  } catch {
    return null;
  }
}

/** The peer's groups: its primary gid and the supplementary ones the kernel lists for its process. */
function groupsOf(credentials: PeerCredentials): number[] {
  const gids = [credentials.gid];
  try {
    const status = readFileSync(`/proc/${credentials.pid}/status`, 'utf8');
    const line = /^Groups:(.*)$/m.exec(status)?.[1] ?? '';
    for (const word of line.trim().split(/\s+/)) if (/^\d+$/.test(word)) gids.push(Number(word));
  } catch {
    // The peer is gone: its primary group is all there is to go on.
  }
  return gids;
}

/** Refuses to start over a live daemon; removes a socket file left by one that died. */
async function clearStaleSocket(path: string): Promise<void> {
  try {
    const info = await lstat(path);
    if (!info.isSocket()) {
      throw new Error(
        `${path} exists and is not a socket; remove it or set DISKLINE_SOCKET to another path.`,
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`Another Diskline engine is already listening on ${path}; stop it first.`);
  await rm(path, { force: true });
}

export class UnixServer {
  readonly path: string;
  #engine: Engine;
  #server: Server | null = null;
  #sockets = new Set<Socket>();
  #mode = 0o660;
  #extraAllowedUids: number[] = [];

  constructor(engine: Engine, path: string) {
    this.#engine = engine;
    this.path = path;
  }

  async listen(options: Omit<UnixServerOptions, 'path'> = {}): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o755 });
    await clearStaleSocket(this.path);
    const server = createServer((socket) => this.#accept(socket));
    this.#server = server;
    // The socket file is born with the umask's mode: keep it owner-only until chmod sets the real mode.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
    this.#mode = options.mode ?? 0o660;
    this.#extraAllowedUids = options.extraAllowedUids ?? [];
    await chmod(this.path, this.#mode);
    if (options.gid !== undefined) await chown(this.path, process.getuid?.() ?? 0, options.gid);
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    await rm(this.path, { force: true });
  }

  #allowed(credentials: PeerCredentials | null): boolean {
    if (!credentials) {
      // Without SO_PEERCRED (native helper not built) only the socket's mode protects it: accept only when
      // that mode admits the owner alone.
      return (this.#mode & 0o077) === 0;
    }
    const ownUid = process.getuid?.() ?? 0;
    return (
      credentials.uid === 0 ||
      credentials.uid === ownUid ||
      this.#extraAllowedUids.includes(credentials.uid) ||
      this.#engine.state.config.allowedUids.includes(credentials.uid)
    );
  }

  #accept(socket: Socket): void {
    // Every connection, refused ones too, is closed by close(): the server's close waits for them all.
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    const credentials = credentialsOf(socket);
    if (!this.#allowed(credentials)) {
      const who = credentials ? `uid ${credentials.uid}` : 'a client whose uid could not be read';
      socket.end(
        encodeFrame({
          type: 'response',
          id: UNREADABLE_REQUEST_ID,
          ok: false,
          error: {
            code: 'forbidden',
            message: `The Diskline engine refuses ${who}: only root and the users allowed in its config may use it (add the uid to allowedUids in config.json).`,
          },
        }),
      );
      socket.on('error', () => {});
      return;
    }
    const decoder = new FrameDecoder(MAX_MESSAGE_BYTES);
    const cleanups: (() => void)[] = [];
    const send = (message: unknown) => {
      if (socket.destroyed) return;
      if (socket.writableLength > MAX_QUEUED_OUTPUT_BYTES) {
        socket.destroy();
        return;
      }
      const text = encodeBounded(message as { type: string });
      if (text !== null) socket.write(`${text}\n`);
    };
    const connection: Connection = {
      id: Engine.newConnectionId(),
      transport: 'unix',
      uid: credentials?.uid ?? null,
      gids: credentials ? groupsOf(credentials) : [],
      sendEvent: (event, data) => send({ type: 'event', event, data }),
      onClose: (cleanup) => cleanups.push(cleanup),
    };
    const caller = callerOf(connection);
    cleanups.push(
      this.#engine.events.subscribe((event, data, owner) => {
        // News about an object goes only to those who may see it (its owner and root).
        if (owner === undefined || mayAccess(caller, owner)) connection.sendEvent(event, data);
      }),
    );
    socket.on('data', (data: Buffer) => {
      for (const frame of decoder.push(data)) {
        if (frame.kind === 'oversized') {
          send({
            type: 'response',
            id: UNREADABLE_REQUEST_ID,
            ok: false,
            error: {
              code: 'bad-request',
              message: `Message of ${frame.bytes} bytes refused: the limit is ${MAX_MESSAGE_BYTES} bytes.`,
            },
          });
          continue;
        }
        // Requests run concurrently; each response carries its request's id.
        void dispatch(frame.text, this.#engine.handlers, connection).then(send);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const cleanup of cleanups.splice(0)) cleanup();
    });
  }
}
