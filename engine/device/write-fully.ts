// Writing a whole buffer at an offset: write(2) may write less than asked (a signal, a full disk, a direct write
// cut at a boundary), so the rest is written again until done or until the kernel writes nothing.
import type { FileHandle } from 'node:fs/promises';

/** Writes `data` at `offset`, resuming after short writes; returns the bytes written (less only if stuck). */
export async function writeFully(handle: FileHandle, data: Buffer, offset: number): Promise<number> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
    if (bytesWritten === 0) break;
    done += bytesWritten;
  }
  return done;
}
