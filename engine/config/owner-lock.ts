// One engine per state directory: the daemon and `diskline serve` both run schedules and write job records,
// so a second engine on the same state would run every plan twice and overwrite the other's records. The
// owner writes its pid to engine.pid; a pid file whose process is gone is taken over.
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class StateInUseError extends Error {}

/** Claims `dir` for this process; returns the function that releases it. */
export async function claimStateDir(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, 'engine.pid');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, 'wx', 0o600);
      await file.writeFile(`${process.pid}\n`);
      await file.close();
      return async () => {
        const owner = await readFile(path, 'utf8').catch(() => '');
        if (Number(owner.trim()) === process.pid) await rm(path, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (owner && owner !== process.pid && alive(owner)) {
      throw new StateInUseError(
        `Another Diskline engine (pid ${owner}) already uses the state in ${dir}; stop it, talk to it, or set DISKLINE_STATE_DIR to another directory.`,
      );
    }
    // Left by an engine that is gone: take it over.
    await rm(path, { force: true });
  }
  throw new StateInUseError(`Could not claim the state in ${dir} (engine.pid keeps changing); try again.`);
}
