// The kernel's cgroup v2 I/O controller as Diskline uses it: io.max on one device for every top-level cgroup
// that can write it (system.slice, user.slice, machine.slice … — a parent's limit covers its subtree), set
// and lifted together. Each cgroup limited is first handed to the watchdog, so a limit never outlives the
// engine. Processes in the root cgroup itself cannot be limited (the kernel exempts it).
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Watchdog } from './watchdog.ts';
import type { WriteLimit } from './write-limit.ts';

const CGROUP_ROOT = process.env.DISKLINE_CGROUP_ROOT ?? '/sys/fs/cgroup';

export class IoLimitError extends Error {}

export class WriterLimit {
  private readonly deviceNumber: string;
  private readonly watchdog: Watchdog;
  private readonly cgroups: string[];
  private guarded = false;
  private current = 'normal';

  private constructor(deviceNumber: string, watchdog: Watchdog, cgroups: string[]) {
    this.deviceNumber = deviceNumber;
    this.watchdog = watchdog;
    this.cgroups = cgroups;
  }

  /** The writers of `deviceNumber` ("major:minor"): every top-level cgroup, with the io controller enabled for them. */
  static async forDevice(deviceNumber: string, watchdog: Watchdog): Promise<WriterLimit> {
    let controllers: string;
    try {
      controllers = await readFile(join(CGROUP_ROOT, 'cgroup.controllers'), 'utf8');
    } catch {
      throw new IoLimitError(
        `no cgroup v2 hierarchy at ${CGROUP_ROOT}: writers could not be slowed when the store fills`,
      );
    }
    if (!controllers.split(/\s+/).includes('io'))
      throw new IoLimitError('the kernel offers no cgroup v2 io controller: writers could not be slowed');
    await writeFile(join(CGROUP_ROOT, 'cgroup.subtree_control'), '+io');
    const cgroups: string[] = [];
    for (const entry of await readdir(CGROUP_ROOT, { withFileTypes: true })) {
      if (entry.isDirectory()) cgroups.push(join(CGROUP_ROOT, entry.name));
    }
    return new WriterLimit(deviceNumber, watchdog, cgroups);
  }

  get state(): string {
    return this.current;
  }

  /** Sets the writers' limit; a repeat of the current one writes nothing. */
  async apply(limit: WriteLimit): Promise<void> {
    const line =
      limit.state === 'normal'
        ? `${this.deviceNumber} wbps=max wiops=max`
        : `${this.deviceNumber} wbps=${limit.writeBytesPerSecond} wiops=${limit.writeIopsPerSecond}`;
    const key = limit.state === 'normal' ? 'normal' : line;
    if (key === this.current) return;
    if (!this.guarded && limit.state !== 'normal') {
      for (const cgroup of this.cgroups) this.watchdog.guardLimit(cgroup, this.deviceNumber);
      this.guarded = true;
    }
    for (const cgroup of this.cgroups) {
      // A cgroup removed since it was listed has no writers left to limit.
      await writeFile(join(cgroup, 'io.max'), line).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    }
    this.current = key;
  }

  async lift(): Promise<void> {
    await this.apply({ state: 'normal' });
  }
}
