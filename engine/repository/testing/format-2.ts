// Turns a repository made by this Diskline into the format 2 it keeps reading: every sealed file sealed again
// without its name, and the config's format set to 2 — what a format 2 Diskline would have written.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { INDEX_MAGIC } from '../chunk-index.ts';
import { MANIFEST_MAGIC } from '../manifest.ts';
import { PRUNE_MAGIC, Repository } from '../repository.ts';
import { seal } from '../sealed.ts';

export async function rewriteAsFormat2(path: string, password: string): Promise<void> {
  const repo = await Repository.open(path, { password });
  try {
    const kinds: [string, string][] = [
      ['index/', INDEX_MAGIC],
      ['points/', MANIFEST_MAGIC],
      ['prune/', PRUNE_MAGIC],
    ];
    for (const [folder, magic] of kinds) {
      for (const name of await repo.backend.list(folder)) {
        const plaintext = await repo.readSealed(name, magic, name);
        await writeFile(join(path, name), seal(repo.keys, magic, plaintext, null));
      }
    }
  } finally {
    await repo.close();
  }
  const config = JSON.parse(await readFile(join(path, 'config'), 'utf8'));
  await writeFile(join(path, 'config'), JSON.stringify({ ...config, format: 2 }));
}
