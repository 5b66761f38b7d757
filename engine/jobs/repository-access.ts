// How the engine's jobs open repositories: the passphrase comes from DISKLINE_PASSWORD, else the first line
// of the file named by DISKLINE_PASSWORD_FILE (a service unit points it at a root-only file).
import { readFileSync } from 'node:fs';
import { Repository } from '../repository/repository.ts';

export function enginePassphrase(): string | null {
  if (process.env.DISKLINE_PASSWORD) return process.env.DISKLINE_PASSWORD;
  const file = process.env.DISKLINE_PASSWORD_FILE;
  if (!file) return null;
  try {
    return readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
  } catch (error) {
    throw new Error(
      `Cannot read the repository passphrase from ${file} (DISKLINE_PASSWORD_FILE): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`,
    );
  }
}

export function openEngineRepository(path: string): Promise<Repository> {
  return Repository.open(path, { password: enginePassphrase() });
}

/** Opens a repository, runs `work`, and closes it whatever happens. */
export async function withRepository<T>(path: string, work: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await openEngineRepository(path);
  try {
    return await work(repo);
  } catch (error) {
    // A repository removed, moved or replaced meanwhile explains whatever failed: say that instead.
    throw (
      (await repo.ensureHeld().then(
        () => null,
        (gone: Error) => gone,
      )) ?? error
    );
  } finally {
    await repo.close();
  }
}
