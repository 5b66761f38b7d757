// Turns a repository made by this Diskline into the format 2 it keeps reading: every point rewritten as one
// manifest holding its whole map (no segments), every sealed file sealed again without its name, and the
// config's format set to 2 — what a format 2 Diskline would have written.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { INDEX_MAGIC } from '../chunk-index.ts';
import { encodeLegacyManifest, MANIFEST_MAGIC } from '../manifest.ts';
import { PRUNE_MAGIC, Repository } from '../repository.ts';
import { seal } from '../sealed.ts';
import { legacyManifestOf } from './legacy-point.ts';

export async function rewriteAsFormat2(path: string, password: string): Promise<void> {
  const repo = await Repository.open(path, { password });
  try {
    for (const id of await repo.pointIds()) {
      const plaintext = encodeLegacyManifest(await legacyManifestOf(repo, id));
      await writeFile(join(path, 'points', id), seal(repo.keys, MANIFEST_MAGIC, plaintext, null));
    }
    await rm(join(path, 'segments'), { recursive: true, force: true });
    const kinds: [string, string][] = [
      ['index/', INDEX_MAGIC],
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
