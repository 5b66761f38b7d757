// For the attack suite (engine/api/attacks.test.ts): a hostile local user's side, run as an unprivileged uid.
// `hostile-caller.ts agent SOCKET` takes JSON commands on stdin (one per line) and answers each on stdout:
// API calls on its own connection, file operations in its own home, races of calls against swaps.
// `hostile-caller.ts flip PATH LINK_TARGET file|dir` swaps PATH between something of its own and a symbolic
// link to LINK_TARGET as fast as it can, until it is killed.
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

interface Response {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

interface JobEvent {
  id: string;
  state: string;
  error?: string | null;
  owner?: number | null;
}

/** A job's outcome for a tally: its state, and for a failure the start of its error. */
function outcome(kind: string, job: JobEvent): string {
  return job.state === 'failed'
    ? `${kind} failed: ${(job.error ?? '').slice(0, 60)}`
    : `${kind} ${job.state}`;
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'interrupted']);

class Agent {
  #socket: Socket;
  #pending = new Map<number, (response: Response) => void>();
  #nextId = 1;
  #buffered = '';
  /** Every job.updated event this connection received. */
  jobEvents: JobEvent[] = [];
  /** Other events, by name. */
  otherEvents: { event: string; data: unknown }[] = [];
  #jobWaiters = new Map<string, (job: JobEvent) => void>();

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (data) => {
      this.#buffered += data.toString();
      for (
        let newline = this.#buffered.indexOf('\n');
        newline !== -1;
        newline = this.#buffered.indexOf('\n')
      ) {
        const message = JSON.parse(this.#buffered.slice(0, newline));
        this.#buffered = this.#buffered.slice(newline + 1);
        if (message.type === 'response') this.#pending.get(message.id)?.(message);
        else if (message.event === 'job.updated') {
          this.jobEvents.push(message.data);
          if (TERMINAL.has(message.data.state)) this.#jobWaiters.get(message.data.id)?.(message.data);
        } else this.otherEvents.push({ event: message.event, data: message.data });
      }
    });
  }

  call(method: string, params: unknown): Promise<Response> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, (response) => {
        this.#pending.delete(id);
        resolve(response);
      });
      this.#socket.write(`${JSON.stringify({ type: 'request', id, method, params })}\n`);
    });
  }

  /** Resolves when the job has ended (from its events; jobs.list answers it if it ended already). */
  async jobEnd(id: string): Promise<JobEvent> {
    const ended = this.jobEvents.find((job) => job.id === id && TERMINAL.has(job.state));
    if (ended) return ended;
    return new Promise((resolve) => this.#jobWaiters.set(id, resolve));
  }

  close(): void {
    this.#socket.end();
  }
}

function fileOperation(action: string, args: string[]): unknown {
  const [a = '', b = ''] = args;
  switch (action) {
    case 'symlink':
      return symlinkSync(a, b);
    case 'rename':
      return renameSync(a, b);
    case 'unlink':
      return unlinkSync(a);
    case 'rm':
      return rmSync(a, { recursive: true, force: true });
    case 'mkdir':
      return mkdirSync(a, { recursive: true });
    case 'write':
      return writeFileSync(a, b);
    case 'mkfifo':
      return spawnSync('mkfifo', [a]).status;
    case 'exec': {
      const run = spawnSync(a, args.slice(1), { encoding: 'utf8', timeout: 20_000 });
      return {
        status: run.status,
        stdout: run.stdout,
        stderr: run.stderr,
        error: run.error?.message ?? null,
      };
    }
    default:
      throw new Error(`unknown file operation ${action}`);
  }
}

type Tally = Record<string, number>;
function count(tally: Tally, key: string): void {
  tally[key] = (tally[key] ?? 0) + 1;
}

/** Previews and starts restores of `point` to `to`, waiting for each job, `rounds` times; tallies outcomes. */
async function restoreRounds(agent: Agent, command: Record<string, unknown>): Promise<Tally> {
  const tally: Tally = {};
  const { repo, point, to, rounds } = command as { repo: string; point: string; to: string; rounds: number };
  for (let round = 0; round < rounds; round++) {
    const preview = await agent.call('restore.preview', { repo, point, to });
    if (!preview.ok) {
      count(tally, `preview ${preview.error?.code}`);
      continue;
    }
    const { confirmToken } = preview.result as { confirmToken: string };
    const start = await agent.call('restore.start', { repo, point, to, confirmToken });
    if (!start.ok) {
      count(tally, `start ${start.error?.code}`);
      continue;
    }
    count(tally, outcome('restore', await agent.jobEnd((start.result as { id: string }).id)));
  }
  return tally;
}

/** Starts backups of `source`, waiting for each job, `rounds` times; tallies outcomes. */
async function backupRounds(agent: Agent, command: Record<string, unknown>): Promise<Tally> {
  const tally: Tally = {};
  const { repo, source, rounds } = command as { repo: string; source: string; rounds: number };
  for (let round = 0; round < rounds; round++) {
    const start = await agent.call('backup.start', { source, repo });
    if (!start.ok) {
      count(tally, `start ${start.error?.code}`);
      continue;
    }
    count(tally, outcome('backup', await agent.jobEnd((start.result as { id: string }).id)));
  }
  return tally;
}

/**
 * A restore to `to` (the caller's own file) whose name is swapped for a link to `decoy` the moment
 * restore.start answers, `rounds` times: the job must still write the file that was checked.
 */
async function swapAfterStart(agent: Agent, command: Record<string, unknown>): Promise<Tally> {
  const tally: Tally = {};
  const { repo, point, to, decoy, rounds } = command as {
    repo: string;
    point: string;
    to: string;
    decoy: string;
    rounds: number;
  };
  for (let round = 0; round < rounds; round++) {
    writeFileSync(to, `round ${round}\n`);
    const preview = await agent.call('restore.preview', { repo, point, to });
    const { confirmToken } = (preview.result ?? {}) as { confirmToken?: string };
    const start = await agent.call('restore.start', { repo, point, to, confirmToken: confirmToken ?? '' });
    // Now: the name becomes a link to root's file before the job has opened anything by name.
    renameSync(to, `${to}.checked`);
    symlinkSync(decoy, to);
    if (!start.ok) count(tally, `start ${start.error?.code}`);
    else count(tally, `restore ${(await agent.jobEnd((start.result as { id: string }).id)).state}`);
    unlinkSync(to);
    renameSync(`${to}.checked`, to);
  }
  return tally;
}

async function runAgent(socketPath: string): Promise<void> {
  const socket = createConnection(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const agent = new Agent(socket);
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as Record<string, unknown> & { id: number; op: string };
    let answer: unknown;
    try {
      switch (command.op) {
        case 'call':
          answer = await agent.call(command.method as string, command.params);
          break;
        case 'fs':
          answer = fileOperation(command.action as string, command.args as string[]) ?? null;
          break;
        case 'restoreRounds':
          answer = await restoreRounds(agent, command);
          break;
        case 'backupRounds':
          answer = await backupRounds(agent, command);
          break;
        case 'swapAfterStart':
          answer = await swapAfterStart(agent, command);
          break;
        case 'jobEnd':
          answer = await agent.jobEnd(command.job as string);
          break;
        case 'events':
          answer = { jobs: agent.jobEvents, other: agent.otherEvents };
          break;
        case 'disconnect':
          agent.close();
          answer = null;
          break;
        default:
          throw new Error(`unknown op ${command.op}`);
      }
      process.stdout.write(`${JSON.stringify({ id: command.id, ok: true, answer })}\n`);
    } catch (error) {
      process.stdout.write(
        `${JSON.stringify({ id: command.id, ok: false, error: (error as Error).message })}\n`,
      );
    }
  }
  // No more commands: leave (the connection ends with this process).
  process.exit(0);
}

/** Swaps `path` between the caller's own file (or directory) and a link to `linkTarget`, until killed. */
function flip(path: string, linkTarget: string, kind: string): void {
  const own = `${path}.own`;
  const link = `${path}.link`;
  // Each state is held 0 to 3 ms (in turn), so the engine meets both states and every moment in between.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const hold = (round: number) => Atomics.wait(pause, 0, 0, round % 4);
  let round = 0;
  for (;;) {
    try {
      if (kind === 'dir') {
        mkdirSync(own);
        rmSync(path, { recursive: true, force: true });
        renameSync(own, path);
      } else {
        writeFileSync(own, `own ${round}\n`);
        renameSync(own, path);
      }
      hold(round);
      symlinkSync(linkTarget, link);
      if (kind === 'dir') rmSync(path, { recursive: true, force: true });
      renameSync(link, path);
      hold(round + 1);
    } catch {
      // A step lost a race with the engine or itself: keep flipping.
      rmSync(link, { force: true });
      rmSync(own, { recursive: true, force: true });
    }
    round++;
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'agent') await runAgent(rest[0] as string);
else if (mode === 'flip') flip(rest[0] as string, rest[1] as string, rest[2] as string);
else throw new Error('usage: hostile-caller.ts agent SOCKET | flip PATH LINK_TARGET file|dir');
