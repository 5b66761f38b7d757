// How the verbs that read a repository directly (init, points, mount, diff) get at it — the passphrase by the
// engine's one rule, the shared options — and the formatting the verbs share (sizes, a progress line).
import { readFile } from 'node:fs/promises';
import { enginePassphrase } from '../jobs/repository-access.ts';
import { Repository } from '../repository/repository.ts';
import { UsageError } from './verb.ts';

export const repositoryOptions = {
  repo: { type: 'string' },
  'password-file': { type: 'string' },
} as const;

export const repositoryHelp =
  '  --repo R               the repository (a directory)\n' +
  '  --password-file F      read the passphrase from F (first line); default: $DISKLINE_PASSWORD_FILE, else $DISKLINE_PASSWORD';

export function requireRepo(values: { repo?: string | undefined }): string {
  if (!values.repo) throw new UsageError('--repo is required');
  return values.repo;
}

/** The passphrase by the engine's one rule (jobs/repository-access.ts), --password-file standing for
 * DISKLINE_PASSWORD_FILE; null when none is given (fine for an unencrypted repository). */
export async function readPassphrase(values: {
  'password-file'?: string | undefined;
}): Promise<string | null> {
  const file = values['password-file'];
  if (file) {
    const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot read the passphrase file ${file}: ${error.code ?? error.message}`);
    });
    return text.split(/\r?\n/)[0] ?? '';
  }
  return enginePassphrase();
}

export async function openRepository(values: {
  repo?: string | undefined;
  'password-file'?: string | undefined;
}): Promise<Repository> {
  const path = requireRepo(values);
  return Repository.open(path, { password: await readPassphrase(values) });
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A one-line progress bar on stderr when it is a terminal; nothing otherwise. */
export function progressLine(label: string): { update(done: number, total: number): void; end(): void } {
  const tty = process.stderr.isTTY;
  const started = Date.now();
  let last = 0;
  return {
    update(done, total) {
      if (!tty || Date.now() - last < 100) return;
      last = Date.now();
      const fraction = total > 0 ? Math.min(1, done / total) : 1;
      const width = 30;
      const filled = Math.round(fraction * width);
      const rate = done / Math.max(0.001, (Date.now() - started) / 1000);
      process.stderr.write(
        `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
          `${formatBytes(done)} / ${formatBytes(total)}  ${formatBytes(rate)}/s   `,
      );
    },
    end() {
      if (tty) process.stderr.write('\n');
    },
  };
}
