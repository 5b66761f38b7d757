// The guard of what outlives the engine: a suspended or swapped table, an I/O limit on a disk's writers, a
// snapshot and its copy-on-write store. The engine starts a small shell process that holds the read end of a
// pipe and tells it, before each step, how to undo it; when the pipe ends without a clean 'forget' (the engine
// was killed, ran out of memory, crashed) the guard undoes everything at once — limits lifted first so writers
// move, then each swapped device given back its own table, then the devices, loops and files it made removed —
// and exits. The script lives in memory (bash -c), not in a file: the disk it would be read from may be the one
// that is suspended. Failure mode: it execs dmsetup, losetup and rm, which must be readable then (they were
// just used, so they are in the page cache; a guard in C with the ioctls is the stronger form).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { checkDmName } from './dmsetup.ts';

/** Read once, when the engine loads: the guard runs from memory. */
const GUARD_SCRIPT = readFileSync(new URL('./guard.sh', import.meta.url), 'utf8');

function checkedLine(value: string, what: string): string {
  if (/[\n\r]/.test(value) || value.length === 0) throw new Error(`the guard cannot hold ${what} '${value}'`);
  return value;
}

export class Watchdog {
  private readonly child: ChildProcess;
  private closed = false;

  private constructor(child: ChildProcess) {
    this.child = child;
  }

  /** Starts the guard in a session of its own (a signal to the engine's group does not reach it). */
  static start(): Watchdog {
    const child = spawn('/bin/bash', ['-c', GUARD_SCRIPT], {
      stdio: ['pipe', 'ignore', 'inherit'],
      detached: true,
    });
    // The engine does not wait for its guard; the guard waits for the engine.
    child.unref();
    child.stdin?.on('error', () => {});
    return new Watchdog(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private send(line: string): void {
    if (this.closed) throw new Error('the device-mapper guard was already released');
    this.child.stdin?.write(`${line}\n`);
  }

  /** On the engine's death: set `cgroupDir`'s io.max for `deviceNumber` back to no limit. */
  guardLimit(cgroupDir: string, deviceNumber: string): void {
    this.send(`limit ${checkedLine(cgroupDir, 'cgroup')} ${checkedLine(deviceNumber, 'device number')}`);
  }

  /** On the engine's death: give `name` back `table` (suspend, load, resume). Send before suspending it. */
  guardTable(name: string, table: string): void {
    for (const line of table.trimEnd().split('\n')) this.send(`line ${checkedLine(line, 'table line')}`);
    this.send(`origin ${checkDmName(name)}`);
  }

  /** On the engine's death: remove the mapped device `name` (after the tables are given back; last made, first removed). */
  guardDevice(name: string): void {
    this.send(`remove ${checkDmName(name)}`);
  }

  guardLoop(loopDevice: string): void {
    this.send(`loop ${checkedLine(loopDevice, 'loop device')}`);
  }

  guardFile(path: string): void {
    this.send(`file ${checkedLine(path, 'file')}`);
  }

  /** Everything guarded so far was undone by the engine itself: nothing to do on its death. */
  forget(): void {
    this.send('forget');
  }

  /** Ends the guard (after forget). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.send('bye');
    this.closed = true;
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Waited for now: the guard was unref'd so that it never kept the engine alive.
    child.ref();
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  }
}
