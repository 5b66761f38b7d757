// Backs up an image file through the library (PointWriter fed by the offline copier), for repository tests
// that exercise options the command line does not expose (parents with changed ranges, small packs, checkpoints).
import { openReader } from '../../device/open.ts';
import type { BlockReader, ByteRange } from '../../device/types.ts';
import type { Manifest } from '../manifest.ts';
import { PointWriter, type PointWriterOptions } from '../point-writer.ts';
import type { Repository } from '../repository.ts';
import { copyRangesOffline } from './offline-copy.ts';

export interface ImageBackupOptions extends Partial<PointWriterOptions> {
  /** Wraps the reader (e.g. to count or fail reads). */
  wrapReader?: (reader: BlockReader) => BlockReader;
}

export async function backupImage(
  repo: Repository,
  image: string,
  options: ImageBackupOptions = {},
): Promise<Manifest> {
  const opened = await openReader(image);
  const reader = options.wrapReader ? options.wrapReader(opened) : opened;
  try {
    const writer = await PointWriter.create(repo, {
      source: { path: image, model: null, serial: null, size: reader.size, partitionTable: null },
      partitions: [],
      usedRanges: null,
      consistency: 'offline',
      ...options,
    });
    try {
      await copyRangesOffline(reader, writer.rangesToRead(), writer.unitSize, writer);
      await writer.finish();
    } catch (error) {
      await writer.abort(error as Error);
      throw error;
    }
    return writer.result;
  } finally {
    await opened.close();
  }
}

/** A reader that records every byte range read. */
export function countingReader(reader: BlockReader, reads: ByteRange[]): BlockReader {
  return {
    path: reader.path,
    size: reader.size,
    logicalSectorSize: reader.logicalSectorSize,
    async read(offset, length) {
      reads.push({ start: offset, length });
      return reader.read(offset, length);
    },
    close: () => reader.close(),
  };
}

/** The whole point read through the read API (what mount and instant restore see). */
export async function readWholePoint(repo: Repository, pointId: string): Promise<Buffer> {
  const point = await repo.openPoint(pointId);
  return point.read(0, point.manifest.source.size);
}
