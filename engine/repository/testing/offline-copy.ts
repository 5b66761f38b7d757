// For tests: feeds a UnitSink from a source nothing writes to (an image file made by the test), reading the
// given byte ranges in large sequential reads and handing them over unit by unit, so repository tests need no
// snapshot session. The engine itself always copies through a session (engine/jobs/backup.ts).
import type { BlockReader, ByteRange } from '../../device/types.ts';
import type { UnitSink } from '../../snapshot/types.ts';

const READ_BYTES = 4 * 1024 * 1024;

/** Copies the units covering `ranges` (unit-aligned by the caller) into `sink`; does not call finish. */
export async function copyRangesOffline(
  reader: BlockReader,
  ranges: readonly ByteRange[],
  unitSize: number,
  sink: UnitSink,
): Promise<void> {
  const readBytes = Math.max(unitSize, Math.floor(READ_BYTES / unitSize) * unitSize);
  // One read ahead while the previous block is handed to the sink.
  let ahead: Promise<{ offset: number; data: Buffer }> | null = null;
  const steps: { offset: number; length: number }[] = [];
  for (const range of ranges) {
    const start = Math.floor(range.start / unitSize) * unitSize;
    const end = Math.min(reader.size, Math.ceil((range.start + range.length) / unitSize) * unitSize);
    for (let offset = start; offset < end; offset += readBytes) {
      steps.push({ offset, length: Math.min(readBytes, end - offset) });
    }
  }
  const read = (step: { offset: number; length: number }) =>
    reader.read(step.offset, step.length).then((data) => ({ offset: step.offset, data }));
  for (let i = 0; i < steps.length; i++) {
    const current = ahead ?? read(steps[i]!);
    ahead = i + 1 < steps.length ? read(steps[i + 1]!) : null;
    // A failed read ahead is reported when its turn comes (or not at all if an earlier step fails first).
    ahead?.catch(() => undefined);
    const { offset, data } = await current;
    for (let at = 0; at < data.length; at += unitSize) {
      await sink.writeUnit(offset + at, data.subarray(at, Math.min(at + unitSize, data.length)));
    }
  }
}
