// The engine's end of a tap helper (engine/native/src/tap-helper.c): the process that serves one attached volume
// and outlives the engine. Starts a helper for a source, connects to a running one, and speaks its wire format:
// frames of u32 type, u32 sequence, u32 length + payload (native byte order). Requests are answered by REPLY
// frames carrying the request's sequence; ACCESS frames (a write touching armed units, held by the helper) come
// unasked and are answered with complete(). If this end closes — the engine exits, crashes or is killed — the
// helper drops the snapshot, thaws, releases held writers and keeps serving (see docs/consistent-points.md).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { TapStats } from '../native/index.ts';

const MSG = {
  hello: 1,
  arm: 2,
  disarm: 3,
  settle: 4,
  mark: 5,
  complete: 6,
  changed: 7,
  stats: 8,
  freeze: 9,
  thaw: 10,
  generation: 11,
  release: 12,
  stop: 13,
  access: 101,
  reply: 102,
} as const;

const FLAG_ARMED = 1;
const FLAG_TRACKING_LOST = 2;
const FLAG_FROZEN = 4;
const ETIME = 62;

export const helperPath = fileURLToPath(
  new URL('../native/build/Release/diskline-tap-helper', import.meta.url),
);

/** What a running helper says about itself. */
export interface HelperInfo {
  pid: number;
  size: number;
  trackUnitSize: number;
  /** The change-tracking generation its bitmap is relative to ('' before the engine set one). */
  generation: string;
  /** A backup was armed when an engine left without releasing: its changes are not to be trusted. */
  trackingLost: boolean;
  armed: boolean;
  frozen: boolean;
  mountDir: string;
  source: string;
}

/** The helper failed a request with an errno. */
export class HelperRequestError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(message);
    this.errno = errno;
  }
}

/** The helper answered a thaw with "the freeze deadline thawed first": the point cannot be trusted. */
export class FreezeDeadlineError extends Error {}

/** The source is already served by a helper (another engine's, or a dying one's). */
export class HelperBusyError extends Error {}

interface Waiting {
  resolve(body: Buffer): void;
  reject(error: Error): void;
  what: string;
}

function generationBytes(generation: string): Buffer {
  const hex = generation.replaceAll('-', '');
  const bytes = Buffer.alloc(16);
  if (/^[0-9a-f]{32}$/i.test(hex)) bytes.write(hex, 'hex');
  return bytes;
}

function generationText(bytes: Buffer): string {
  if (bytes.every((byte) => byte === 0)) return '';
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** One connection to one helper. */
export class HelperChannel {
  #socket: Socket;
  #buffered: Buffer = Buffer.alloc(0);
  #nextSeq = 1;
  #waiting = new Map<number, Waiting>();
  #closed: Error | null = null;
  #closeListeners: ((reason: Error) => void)[] = [];
  /** Called for each write the helper holds (armed units); answer with complete(id, errno). */
  onAccess: (offset: number, length: number, id: bigint) => void = (_offset, _length, id) =>
    this.complete(id, 0);

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    const end = (error?: Error) =>
      this.#end(
        error ?? new Error('the tap helper closed the connection (it ended or serves another engine)'),
      );
    socket.on('error', end);
    socket.on('close', () => end());
  }

  /** Connects to the helper listening on `socketPath`. */
  static connect(socketPath: string): Promise<HelperChannel> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new HelperChannel(socket));
      });
    });
  }

  get closed(): boolean {
    return this.#closed !== null;
  }

  /** Runs `listener` once when the connection ends (the helper died, or close() was called). */
  onClose(listener: (reason: Error) => void): void {
    if (this.#closed) listener(this.#closed);
    else this.#closeListeners.push(listener);
  }

  #end(reason: Error): void {
    if (this.#closed) return;
    this.#closed = reason;
    this.#socket.destroy();
    for (const waiting of this.#waiting.values())
      waiting.reject(new Error(`${waiting.what}: ${reason.message}`));
    this.#waiting.clear();
    for (const listener of this.#closeListeners.splice(0)) listener(reason);
  }

  #receive(chunk: Buffer): void {
    this.#buffered = this.#buffered.length ? Buffer.concat([this.#buffered, chunk]) : chunk;
    while (this.#buffered.length >= 12) {
      const type = this.#buffered.readUInt32LE(0);
      const seq = this.#buffered.readUInt32LE(4);
      const length = this.#buffered.readUInt32LE(8);
      if (this.#buffered.length < 12 + length) return;
      const body = this.#buffered.subarray(12, 12 + length);
      this.#buffered = this.#buffered.subarray(12 + length);
      if (type === MSG.access) {
        this.onAccess(
          Number(body.readBigUInt64LE(8)),
          Number(body.readBigUInt64LE(16)),
          body.readBigUInt64LE(0),
        );
      } else if (type === MSG.reply) {
        const waiting = this.#waiting.get(seq);
        if (!waiting) continue;
        this.#waiting.delete(seq);
        const errno = body.readInt32LE(0);
        if (errno === 0) waiting.resolve(Buffer.from(body.subarray(8)));
        else if (errno === ETIME)
          waiting.reject(new FreezeDeadlineError(`${waiting.what}: the freeze deadline passed`));
        else waiting.reject(new HelperRequestError(errno, `${waiting.what}: errno ${errno}`));
      }
    }
  }

  #send(type: number, payload: Buffer | null, seq = 0): void {
    if (this.#closed) return;
    const header = Buffer.alloc(12);
    header.writeUInt32LE(type, 0);
    header.writeUInt32LE(seq, 4);
    header.writeUInt32LE(payload?.length ?? 0, 8);
    this.#socket.write(payload?.length ? Buffer.concat([header, payload]) : header);
  }

  #request(type: number, payload: Buffer | null, what: string): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new Error(`${what}: ${this.#closed.message}`));
    const seq = this.#nextSeq++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, { resolve, reject, what });
      this.#send(type, payload, seq);
    });
  }

  async hello(): Promise<HelperInfo> {
    const body = await this.#request(MSG.hello, null, 'asking the tap helper who it is');
    const flags = body.readUInt32LE(16);
    const [mountDir = '', source = ''] = body.subarray(40).toString('utf8').split('\n');
    return {
      size: Number(body.readBigUInt64LE(0)),
      trackUnitSize: Number(body.readBigUInt64LE(8)),
      armed: (flags & FLAG_ARMED) !== 0,
      trackingLost: (flags & FLAG_TRACKING_LOST) !== 0,
      frozen: (flags & FLAG_FROZEN) !== 0,
      pid: body.readUInt32LE(20),
      generation: generationText(body.subarray(24, 40)),
      mountDir,
      source,
    };
  }

  /**
   * Arms every unit of `unitSize` bytes; with `newGeneration`, atomically also returns the changed-block bitmap
   * up to this instant, clears it and records that generation.
   */
  async arm(unitSize: number, newGeneration: string | null): Promise<Uint8Array | null> {
    const payload = Buffer.alloc(24);
    payload.writeUInt32LE(unitSize, 0);
    payload.writeUInt32LE(newGeneration ? 1 : 0, 4);
    if (newGeneration) generationBytes(newGeneration).copy(payload, 8);
    const body = await this.#request(MSG.arm, payload, 'arming the tap');
    return newGeneration ? new Uint8Array(body) : null;
  }

  async disarm(): Promise<void> {
    await this.#request(MSG.disarm, null, 'disarming the tap');
  }

  #units(type: number, firstUnit: number, count: number): void {
    const payload = Buffer.alloc(16);
    payload.writeBigUInt64LE(BigInt(firstUnit), 0);
    payload.writeBigUInt64LE(BigInt(count), 8);
    this.#send(type, payload);
  }

  /** Writes to these units no longer wait (copied or free). Sent in order, unanswered. */
  settle(firstUnit: number, count: number): void {
    this.#units(MSG.settle, firstUnit, count);
  }

  mark(firstUnit: number, count: number): void {
    this.#units(MSG.mark, firstUnit, count);
  }

  /** Lets the held write `id` proceed (errno 0) or fail with errno. */
  complete(id: bigint, errno: number): void {
    const payload = Buffer.alloc(12);
    payload.writeBigUInt64LE(id, 0);
    payload.writeInt32LE(errno, 8);
    this.#send(MSG.complete, payload);
  }

  async changed(): Promise<Uint8Array> {
    return new Uint8Array(await this.#request(MSG.changed, null, 'reading the changed-block bitmap'));
  }

  /** Records the generation the (empty) bitmap of a freshly started helper is relative to. */
  async setGeneration(generation: string): Promise<void> {
    await this.#request(MSG.generation, generationBytes(generation), 'setting the tracking generation');
  }

  async stats(): Promise<TapStats> {
    const body = await this.#request(MSG.stats, null, 'reading tap statistics');
    const at = (index: number) => Number(body.readBigUInt64LE(index * 8));
    return { reads: at(0), writes: at(1), interceptedCalls: at(2), bytesRead: at(3), bytesWritten: at(4) };
  }

  /**
   * FIFREEZE of the file system mounted at `mountPoint`, done by the helper. It thaws by itself when this
   * connection ends or `deadlineMs` after the first freeze of the point.
   */
  async freeze(mountPoint: string, deadlineMs: number): Promise<void> {
    const path = Buffer.from(mountPoint, 'utf8');
    const payload = Buffer.alloc(4 + path.length);
    payload.writeUInt32LE(deadlineMs, 0);
    path.copy(payload, 4);
    try {
      await this.#request(MSG.freeze, payload, `freezing ${mountPoint}`);
    } catch (error) {
      if (error instanceof HelperRequestError)
        throw new Error(`cannot freeze ${mountPoint}: errno ${error.errno}`);
      throw error;
    }
  }

  /** Thaws everything the helper froze; FreezeDeadlineError when its deadline had thawed first. */
  async thaw(): Promise<void> {
    await this.#request(MSG.thaw, null, 'thawing');
  }

  /** Tells the helper the engine leaves on purpose (it keeps serving; tracking stays valid if nothing was armed). */
  async release(): Promise<void> {
    await this.#request(MSG.release, null, 'releasing the tap helper').catch(() => undefined);
    this.close();
  }

  /** Asks the helper to unmount, flush the source and exit (the loop device must be detached first). */
  async stop(): Promise<void> {
    await this.#request(MSG.stop, null, 'stopping the tap helper');
    this.close();
  }

  close(): void {
    this.#end(new Error('the connection to the tap helper was closed'));
  }
}

/** How to start a helper for one source. */
export interface HelperLaunch {
  socketPath: string;
  mountDir: string;
  size: number;
  trackUnitSize: number;
  source: string;
  /** The opened source; the helper gets its own copy as fd 3 (the caller may close this one). */
  backingFd: number;
}

/**
 * Starts a helper in a session of its own (a signal to the engine's process group does not reach it) and
 * resolves once it is mounted and listening. Rejects with HelperBusyError when another helper serves the source.
 */
export function startHelper(launch: HelperLaunch): Promise<void> {
  if (!existsSync(helperPath))
    return Promise.reject(
      new Error(`the tap helper is not built (${helperPath} is missing): run 'npm run build'`),
    );
  return new Promise((resolve, reject) => {
    const child = spawn(
      helperPath,
      [launch.socketPath, launch.mountDir, String(launch.size), String(launch.trackUnitSize), launch.source],
      { detached: true, stdio: ['ignore', 'pipe', 'ignore', launch.backingFd] },
    );
    let said = '';
    const stdout = child.stdout as NonNullable<typeof child.stdout>;
    stdout.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (said.startsWith('ready\n')) {
        stdout.destroy();
        child.unref();
        resolve();
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = said.trim();
      if (code === 3) reject(new HelperBusyError(line));
      else reject(new Error(`the tap helper did not start (exit ${code}): ${line || 'no reason given'}`));
    });
  });
}
