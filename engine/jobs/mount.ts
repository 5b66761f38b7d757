// Restore points mounted read-only by the engine (mount.start / mount.stop): each keeps its repository open,
// its FUSE file served and its directory held open until it is unmounted — by mount.stop, by the user running
// umount, or when the engine stops. Directories the engine made for a mount are removed with it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type HeldPath, holdPath } from '../handles/held-path.ts';
import { PointReading } from '../repository/locks.ts';
import type { Repository } from '../repository/repository.ts';
import { type MountedPoint, mountPointReadOnly } from '../tap/serve-point.ts';
import { openEngineRepository } from './repository-access.ts';

/** mount.stop of a directory that holds no point the engine mounted. */
export class NotMountedError extends Error {}

interface Mount {
  repo: Repository;
  /** The point registered as being read, so a prune keeps it while it is mounted. */
  reading: PointReading;
  mounted: MountedPoint;
  /** The directory mounted on, held open until it is unmounted. */
  dir: HeldPath;
  /** The engine made the directory: remove it after unmounting. */
  ownDir: boolean;
}

export class MountTable {
  #mounts = new Map<string, Mount>();

  /** Mounts on `dir` (held by the caller, who hands it over: it is closed with the mount), or a new temp dir. */
  async mount(repoPath: string, point: string, dir: HeldPath | null): Promise<{ path: string }> {
    let repo: Repository;
    try {
      repo = await openEngineRepository(repoPath);
    } catch (error) {
      dir?.close();
      throw error;
    }
    const held = dir ?? holdPath(await mkdtemp(join(tmpdir(), 'diskline-mount-')));
    const path = held.name;
    let reading: PointReading | undefined;
    try {
      if (this.#mounts.has(path))
        throw new Error(`${path} already holds a mounted restore point; choose another directory.`);
      const pointId = await repo.resolvePointId(point);
      // Registered as read while mounted: a prune meanwhile keeps the point and all it needs.
      reading = await PointReading.start(repo.backend, pointId);
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
        held,
      );
      const entry = { repo, reading, mounted, dir: held, ownDir: !dir };
      this.#mounts.set(path, entry);
      // Someone ran umount themselves: stop serving and forget the mount.
      void mounted.whenUnmounted().then(() => {
        if (this.#mounts.get(path) === entry) void this.unmount(path).catch(() => {});
      });
      return { path };
    } catch (error) {
      await reading?.close().catch(() => {});
      await repo.close();
      held.close();
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
      await entry.reading.close().catch(() => {});
      await entry.repo.close();
      entry.dir.close();
      if (entry.ownDir) await rm(key, { recursive: true, force: true });
    }
  }

  async unmountAll(): Promise<void> {
    for (const path of [...this.#mounts.keys()]) await this.unmount(path).catch(() => {});
  }
}
