// A writer for tests of a mounted volume under faults: a child process that keeps replacing files (write, fsync,
// rename, fsync of the directory) and reports each acknowledged file with its checksum, and at the end the
// longest a single write-and-fsync waited and every failure it met. It stops at the first failure.
import { spawn } from 'node:child_process';

const writerScript = `
const fs = require('node:fs');
const crypto = require('node:crypto');
const dir = process.argv[1];
let stop = false;
process.on('message', () => { stop = true; });
let maxWaitMs = 0;
let maxAt = 0;
let i = 0;
const dirFd = fs.openSync(dir, 'r');
function step() {
  if (stop) {
    process.send({ done: true, maxWaitMs, maxAt, count: i }, () => process.exit(0));
    return;
  }
  const name = 'f' + (i % 64);
  const data = crypto.randomBytes(4096 + (i % 16) * 4096);
  const started = performance.now();
  const startedAt = Date.now();
  try {
    const fd = fs.openSync(dir + '/' + name + '.tmp', 'w');
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(dir + '/' + name + '.tmp', dir + '/' + name);
    fs.fsyncSync(dirFd);
  } catch (error) {
    process.send({ failed: error.message, maxWaitMs, maxAt, count: i }, () => process.exit(1));
    return;
  }
  const waited = performance.now() - started;
  if (waited > maxWaitMs) {
    maxWaitMs = waited;
    maxAt = Date.now();
  }
  i++;
  process.send({ ack: name, sha: crypto.createHash('sha256').update(data).digest('hex'), startedAt, waited });
  setImmediate(step);
}
step();
`;

export interface FsyncWriterOutcome {
  /** Longest one file's write + fsync + rename + directory fsync took, in ms. */
  maxWaitMs: number;
  /** When (Date.now()) that longest wait ended. */
  maxAt: number;
  count: number;
  failure: string | null;
}

/** One acknowledged file: when its write started (Date.now()) and how long until it was durable, in ms. */
export interface FsyncWait {
  startedAt: number;
  waitedMs: number;
}

export interface FsyncWriter {
  /** The last acknowledged checksum of each file. */
  readonly acknowledged: Map<string, string>;
  /** Every acknowledged file's wait, in order. */
  readonly waits: FsyncWait[];
  readonly acks: number;
  /** Resolves once `count` more files were acknowledged (rejects if the writer failed or ended first). */
  moreAcks(count: number): Promise<void>;
  stop(): Promise<FsyncWriterOutcome>;
}

export function startFsyncWriter(dir: string): FsyncWriter {
  const child = spawn(process.execPath, ['-e', writerScript, dir], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const acknowledged = new Map<string, string>();
  const waits: FsyncWait[] = [];
  let acks = 0;
  let outcome: FsyncWriterOutcome | null = null;
  const waiters: { target: number; resolve(): void; reject(error: Error): void }[] = [];
  const settleWaiters = () => {
    for (const waiter of waiters.splice(0)) {
      if (acks >= waiter.target) waiter.resolve();
      else if (outcome) waiter.reject(new Error(`the writer ended: ${outcome.failure ?? 'stopped'}`));
      else waiters.push(waiter);
    }
  };
  const ended = new Promise<FsyncWriterOutcome>((resolve) => {
    child.on(
      'message',
      (message: {
        ack?: string;
        sha?: string;
        done?: boolean;
        failed?: string;
        maxWaitMs?: number;
        maxAt?: number;
        startedAt?: number;
        waited?: number;
        count?: number;
      }) => {
        if (message.ack && message.sha) {
          acknowledged.set(message.ack, message.sha);
          waits.push({ startedAt: message.startedAt ?? 0, waitedMs: message.waited ?? 0 });
          acks++;
        } else {
          outcome = {
            maxWaitMs: message.maxWaitMs ?? 0,
            maxAt: message.maxAt ?? 0,
            count: message.count ?? 0,
            failure: message.failed ?? null,
          };
        }
        settleWaiters();
      },
    );
    child.on('exit', () => {
      outcome ??= {
        maxWaitMs: Number.NaN,
        maxAt: 0,
        count: acks,
        failure: 'the writer exited without a word',
      };
      settleWaiters();
      resolve(outcome);
    });
  });
  return {
    acknowledged,
    waits,
    get acks() {
      return acks;
    },
    moreAcks(count) {
      return new Promise((resolve, reject) => {
        waiters.push({ target: acks + count, resolve, reject });
        settleWaiters();
      });
    },
    async stop() {
      if (child.connected) child.send('stop');
      return ended;
    },
  };
}
