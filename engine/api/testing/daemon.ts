// For tests: an engine with its state in a temp dir, listening on a real unix socket in that dir, with job
// runners that tests control (a job that runs until released or cancelled, reporting progress as it goes).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PointSummary } from '../../../protocol/model.ts';
import { StateStore } from '../../config/state.ts';
import type { JobContext } from '../../jobs/manager.ts';
import type { JobRunners } from '../../jobs/runners.ts';
import { SocketClient } from '../client.ts';
import { Engine, type EngineOptions } from '../engine.ts';
import { UnixServer, type UnixServerOptions } from '../unix-server.ts';

/**
 * A job body that reports progress every 20 ms until `release()` or cancellation (then throws). Tests wait for
 * its steps (untilSteps) or its jobs' events, never for a time; release and cancel take effect at once.
 */
export class ControlledWork {
  started = 0;
  /** Progress reports made so far, across runs. */
  steps = 0;
  #released = false;
  #wakers = new Set<() => void>();
  #stepWaiters: { count: number; resolve: () => void }[] = [];

  get released(): boolean {
    return this.#released;
  }

  set released(value: boolean) {
    this.#released = value;
    if (value) for (const wake of this.#wakers) wake();
  }

  release(): void {
    this.released = true;
  }

  /** Resolves once `count` progress reports have been made in all. */
  untilSteps(count: number): Promise<void> {
    if (this.steps >= count) return Promise.resolve();
    return new Promise((resolve) => this.#stepWaiters.push({ count, resolve }));
  }

  async run(context: JobContext, totalBytes = 1000): Promise<Record<string, unknown>> {
    this.started++;
    let done = 0;
    while (!this.#released) {
      if (context.signal.aborted) throw context.signal.reason;
      done = Math.min(totalBytes, done + 10);
      context.progress({ doneBytes: done, totalBytes });
      this.steps++;
      for (const waiter of this.#stepWaiters.filter((w) => this.steps >= w.count)) waiter.resolve();
      this.#stepWaiters = this.#stepWaiters.filter((w) => this.steps < w.count);
      await this.#pause(context.signal);
    }
    return { doneBytes: done };
  }

  /** 20 ms between reports, cut short by a release or a cancel. */
  #pause(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        signal.removeEventListener('abort', wake);
        resolve();
      };
      const timer = setTimeout(wake, 20);
      this.#wakers.add(wake);
      signal.addEventListener('abort', wake, { once: true });
    });
  }
}

export function samplePoint(repo: string, id: string, sourceSize: number): PointSummary {
  return {
    id,
    repo,
    time: new Date(0).toISOString(),
    source: '/dev/sample',
    sourceSize,
    consistency: 'frozen',
    parent: null,
    usedBytes: sourceSize / 2,
    changedBytes: sourceSize / 2,
    storedBytes: sourceSize / 4,
    complete: true,
    verify: 'unverified',
    drill: null,
  };
}

/** Runners that need no repository: backups and prunes run ControlledWork, one point per repository. */
export function controlledRunners(work: ControlledWork, pointSize = 1 << 20): JobRunners {
  return {
    listPoints: async (repo) => [samplePoint(repo, 'a1b2c3d4e5f6', pointSize)],
    initRepository: async () => {},
    backup: (_params, context) => work.run(context),
    restore: (_params, context) => work.run(context),
    verify: async () => ({ ok: true }),
    prune: (_params, context) => work.run(context),
    copy: (_params, context) => work.run(context),
    drill: async () => ({ ok: true, detail: 'fsck -n: clean' }),
    mount: async ({ point }) => ({ path: `/mnt/${point}` }),
    unmount: async () => {},
    attach: async (source) => {
      throw new Error(`attaching ${source} is not part of this test engine`);
    },
  };
}

export interface TestDaemon {
  dir: string;
  socket: string;
  engine: Engine;
  server: UnixServer;
  connect(): Promise<SocketClient>;
  close(): Promise<void>;
}

export async function startTestDaemon(
  runners: JobRunners,
  options: Omit<UnixServerOptions, 'path'> = {},
  engineOptions: Omit<EngineOptions, 'state' | 'runners'> = {},
): Promise<TestDaemon> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-daemon-'));
  const state = await StateStore.open(join(dir, 'state'));
  const engine = new Engine({ ...engineOptions, state, runners });
  await engine.start();
  const socket = join(dir, 'engine.sock');
  const server = new UnixServer(engine, socket);
  await server.listen(options);
  const clients: SocketClient[] = [];
  return {
    dir,
    socket,
    engine,
    server,
    async connect() {
      const client = await SocketClient.connect(socket);
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) await client.close();
      await server.close();
      await engine.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
