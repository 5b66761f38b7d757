// How the engine's jobs open repositories, with one passphrase rule for every way in: a passphrase file named
// for this engine (the CLI's --password-file when it hosts the engine, else DISKLINE_PASSWORD_FILE — a service
// unit points it at a root-only file) wins over DISKLINE_PASSWORD; the file's first line is the passphrase.
import { readFileSync } from 'node:fs';
import { Repository } from '../repository/repository.ts';

let passphraseFile: string | null = null;

/** Makes this engine read the passphrase from `file` (the CLI's --password-file, for an engine it hosts). */
export function setPassphraseFile(file: string): void {
  passphraseFile = file;
}

export function enginePassphrase(): string | null {
  const file = passphraseFile ?? process.env.DISKLINE_PASSWORD_FILE;
  if (!file) return process.env.DISKLINE_PASSWORD ?? null;
  try {
    return readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
  } catch (error) {
    throw new Error(
      `Cannot read the repository passphrase from ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`,
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
