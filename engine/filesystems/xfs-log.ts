// Whether an XFS internal log is clean: its head (where the cycle number stamped on every 512-byte log
// block drops) sits right after an unmount record, or the log is covered (a frozen file system: from the
// tail on, only superblock updates). A dirty log holds metadata changes — allocations among them — that
// the free-space trees on disk do not show yet, so their map cannot be trusted.
// Record header (xlog_rec_header, big-endian): magic 0, cycle 4, version 8, len 12, lsn 16, tail lsn 24,
// crc 32, prev block 36, num_logops 40, cycle data 44..300, fmt 300, fs uuid 304, size 320.
import { FilesystemDamagedError, type Volume } from './types.ts';

const recordMagic = 0xfeedbabe;
const unmountTransaction = 0x20;
const bb = 512;
/** How far back from the head a record header is searched for (a log record is at most 256 KiB + headers). */
const maxRecordBlocks = 1024;
const headerCycleSize = 32 * 1024;

export interface XfsLogPlace {
  /** Byte offset of the log on the volume. */
  start: number;
  /** Length in 512-byte blocks. */
  blocks: number;
}

/** Where the internal log is: sb_logstart is an AG-encoded block number. Null for an external log. */
export function internalLog(sb: Buffer): XfsLogPlace | null {
  const logStart = sb.readBigUInt64BE(48);
  if (logStart === 0n) return null;
  const blockSize = sb.readUInt32BE(4);
  const agBlocks = sb.readUInt32BE(84);
  const agBlockLog = BigInt(sb[124]!);
  const ag = Number(logStart >> agBlockLog);
  const agBlock = Number(logStart & ((1n << agBlockLog) - 1n));
  return { start: (ag * agBlocks + agBlock) * blockSize, blocks: (sb.readUInt32BE(96) * blockSize) / bb };
}

/** Throws FilesystemDamagedError (saying the log is dirty or unreadable) unless the log ends in an unmount record. */
export async function assertCleanLog(volume: Volume, log: XfsLogPlace): Promise<void> {
  const dirty = (what: string) =>
    new FilesystemDamagedError(
      `${volume.name}: the XFS log ${what} (mounted, or not cleanly unmounted); its free-space trees may be stale`,
    );
  const readBlock = (index: number) => volume.read(log.start + index * bb, bb);
  const cycleOf = (block: Buffer) =>
    block.readUInt32BE(0) === recordMagic ? block.readUInt32BE(4) : block.readUInt32BE(0);
  const firstCycle = cycleOf(await readBlock(0));
  const lastCycle = cycleOf(await readBlock(log.blocks - 1));
  // Blocks before the head carry the current cycle, blocks from the head on the previous one.
  let head = 0;
  if (firstCycle !== lastCycle) {
    let low = 0;
    let high = log.blocks - 1;
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (cycleOf(await readBlock(middle)) === firstCycle) low = middle;
      else high = middle;
    }
    head = high;
  }
  // The last record header before the head.
  for (let back = 1; back <= Math.min(maxRecordBlocks, log.blocks); back++) {
    const index = (head - back + log.blocks) % log.blocks;
    const header = await readBlock(index);
    if (header.readUInt32BE(0) !== recordMagic) continue;
    // v2 logs with buffers over 32 KiB spread the header's cycle data over extra header blocks.
    const bufferSize = header.readUInt32BE(320);
    const headerBlocks =
      header.readUInt32BE(8) & 2 && bufferSize > headerCycleSize
        ? Math.ceil(bufferSize / headerCycleSize)
        : 1;
    const recordBlocks = Math.ceil(header.readUInt32BE(12) / bb);
    const afterRecord = (index + headerBlocks + recordBlocks) % log.blocks;
    if (afterRecord !== head % log.blocks) throw dirty('has records after its last complete one');
    if (header.readUInt32BE(40) === 1) {
      const firstOp = await readBlock((index + headerBlocks) % log.blocks);
      if (firstOp[9]! & unmountTransaction) return;
    }
    // Not unmounted: a frozen (or idle) file system "covers" its log — from the tail on, records only log the
    // superblock, so everything else is already written home and the trees on disk are current.
    const tail = Number(header.readBigUInt64BE(24) & 0xffffffffn);
    if (!(await onlySuperblockFrom(tail, head % log.blocks, readBlock, log.blocks))) {
      throw dirty('holds changes not yet written home');
    }
    return;
  }
  throw dirty('has no record header near its head');
}

const transHeaderMagic = 0x5452414e;
const bufItemType = 0x123c;
const continued = 0x4 | 0x8;

/**
 * True when every record from `tail` up to `head` holds only transactions that log the superblock buffer
 * (block 0). Log item formats are in the writer's byte order (little-endian here); op headers are big-endian.
 */
async function onlySuperblockFrom(
  tail: number,
  head: number,
  readBlock: (index: number) => Promise<Buffer>,
  logBlocks: number,
): Promise<boolean> {
  let at = tail;
  for (let records = 0; at !== head; records++) {
    if (records > 64) return false;
    const header = await readBlock(at);
    if (header.readUInt32BE(0) !== recordMagic) return false;
    const length = header.readUInt32BE(12);
    const dataBlocks = Math.ceil(length / bb);
    const bufferSize = header.readUInt32BE(320);
    const headerBlocks =
      header.readUInt32BE(8) & 2 && bufferSize > headerCycleSize
        ? Math.ceil(bufferSize / headerCycleSize)
        : 1;
    if (dataBlocks > 64) return false;
    const data = Buffer.alloc(dataBlocks * bb);
    for (let i = 0; i < dataBlocks; i++) {
      const block = await readBlock((at + headerBlocks + i) % logBlocks);
      block.copy(data, i * bb);
      // Each data block's first word was replaced by the cycle number; the header keeps the original.
      data.writeUInt32BE(header.readUInt32BE(44 + i * 4), i * bb);
    }
    let offset = 0;
    let regionsToSkip = 0;
    for (let op = 0; op < header.readUInt32BE(40); op++) {
      if (offset + 12 > length) return false;
      const opLength = data.readUInt32BE(offset + 4);
      const flags = data[offset + 9]!;
      const body = data.subarray(offset + 12, offset + 12 + opLength);
      offset += 12 + opLength;
      if (flags & continued) return false;
      if (opLength === 0) continue;
      if (regionsToSkip > 0) {
        regionsToSkip--;
        continue;
      }
      if (body.length >= 4 && body.readUInt32LE(0) === transHeaderMagic) continue;
      if (body.length < 16 || body.readUInt16LE(0) !== bufItemType || body.readBigInt64LE(8) !== 0n)
        return false;
      regionsToSkip = body.readUInt16LE(2) - 1;
    }
    at = (at + headerBlocks + dataBlocks) % logBlocks;
  }
  return true;
}
