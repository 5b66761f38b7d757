// A file system image on disk as the map reader sees it: its used map read through a real reader, and a copy
// of only the mapped ranges — what a backup of that map would restore.
import { openReader, openWriter } from '../../device/open.ts';
import type { ByteRange } from '../../device/types.ts';
import { type MapOptions, usedMapOf } from '../index.ts';
import type { UsedMap } from '../types.ts';
import { partitionVolume } from '../volume.ts';

/** The used map of the file system filling `image` (no partition table), as a volume called `name`. */
export async function usedMapOfImage(
  image: string,
  options: MapOptions = {},
  name = image,
): Promise<UsedMap> {
  const reader = await openReader(image);
  try {
    return await usedMapOf(partitionVolume(reader, 0, reader.size, name), options);
  } finally {
    await reader.close();
  }
}

/** Copies only `ranges` of `from` into `to` (made at least `size` bytes). */
export async function copyRanges(from: string, to: string, ranges: ByteRange[], size: number): Promise<void> {
  const reader = await openReader(from);
  const writer = await openWriter(to, { minSize: size });
  try {
    for (const r of ranges) await writer.write(r.start, await reader.read(r.start, r.length));
    await writer.flush();
  } finally {
    await reader.close();
    await writer.close();
  }
}
