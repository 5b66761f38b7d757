// Restore points mounted read-only by the engine (mount.start / mount.stop): each keeps its repository open
// and its FUSE file served until it is unmounted — by mount.stop, by the user running umount, or when the
// engine stops. Directories the engine made for a mount are removed with it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Repository } from '../repository/repository.ts';
import { type MountedPoint, mountPointReadOnly } from '../tap/serve-point.ts';
import { openEngineRepository } from './repository-access.ts';

/** mount.stop of a directory that holds no point the engine mounted. */
export class NotMountedError extends Error {}

interface Mount {
  repo: Repository;
  mounted: MountedPoint;
  /** The engine made the directory: remove it after unmounting. */
  ownDir: boolean;
}

export class MountTable {
  #mounts = new Map<string, Mount>();

  async mount(repoPath: string, point: string, dir: string | undefined): Promise<{ path: string }> {
    const repo = await openEngineRepository(repoPath);
    const path = dir ? resolve(dir) : await mkdtemp(join(tmpdir(), 'diskline-mount-'));
    try {
      if (this.#mounts.has(path))
        throw new Error(`${path} already holds a mounted restore point; choose another directory.`);
      const pointId = await repo.resolvePointId(point);
      const manifest = await repo.loadManifest(pointId);
      if (!manifest.complete)
        throw new Error(
          `Restore point ${pointId} is incomplete (its backup did not finish); it cannot be mounted.`,
        );
      const reader = await repo.openPoint(pointId);
      const mounted = await mountPointReadOnly(
        reader,
        manifest.source.size,
        `restore point ${pointId}`,
        path,
      );
      const entry = { repo, mounted, ownDir: !dir };
      this.#mounts.set(path, entry);
      // Someone ran umount themselves: stop serving and forget the mount.
      void mounted.whenUnmounted().then(() => {
        if (this.#mounts.get(path) === entry) void this.unmount(path).catch(() => {});
      });
      return { path };
    } catch (error) {
      await repo.close();
      if (!dir) await rm(path, { recursive: true, force: true });
      throw error;
    }
  }

  async unmount(path: string): Promise<void> {
    const key = resolve(path);
    const entry = this.#mounts.get(key);
    if (!entry) throw new NotMountedError(`No restore point is mounted at ${key}.`);
    this.#mounts.delete(key);
    try {
      await entry.mounted.unmount();
    } finally {
      await entry.repo.close();
      if (entry.ownDir) await rm(key, { recursive: true, force: true });
    }
  }

  async unmountAll(): Promise<void> {
    for (const path of [...this.#mounts.keys()]) await this.unmount(path).catch(() => {});
  }
}
