// The ext3/4 journal (jbd2), read but never written: finds the committed transactions not yet checkpointed
// and gives a view of the volume as a journal replay would leave it, so the used map of a mounted or
// uncleanly stopped file system includes what its journal has already committed (bitmaps among it).
import type { BlockRun } from './ext-inode-blocks.ts';
import { FilesystemDamagedError, type Volume } from './types.ts';

const jbdMagic = 0xc03b3998;
const blockType = { descriptor: 1, commit: 2, superblockV1: 3, superblockV2: 4, revoke: 5 };
const tagFlag = { escape: 1, sameUuid: 2, lastTag: 8 };
const jbdIncompat = {
  revoke: 0x1,
  is64bit: 0x2,
  asyncCommit: 0x4,
  csumV2: 0x8,
  csumV3: 0x10,
  fastCommit: 0x20,
};

interface JournalCopy {
  /** Volume block holding the journaled content. */
  source: number;
  /** The content's first four bytes were the jbd2 magic and are stored zeroed. */
  escaped: boolean;
}

/**
 * Home block → the latest committed copy of it in the journal, as jbd2's replay would write it (revoked
 * copies left out). Empty when the journal is clean. Throws FilesystemDamagedError for a journal it cannot
 * read (damaged, or fast-commit records, which are not block copies).
 */
export async function journalCopies(
  volume: Volume,
  blockSize: number,
  journalRuns: BlockRun[],
): Promise<Map<number, JournalCopy>> {
  const damaged = (what: string) => new FilesystemDamagedError(`${volume.name}: the journal ${what}`);
  const physicalOf = (journalBlock: number) => {
    for (const run of journalRuns) {
      if (journalBlock >= run.logical && journalBlock < run.logical + run.count) {
        return run.physical + journalBlock - run.logical;
      }
    }
    throw damaged(`has no block ${journalBlock}`);
  };
  const readJournal = async (journalBlock: number) =>
    volume.read(physicalOf(journalBlock) * blockSize, blockSize);
  const jsb = await readJournal(0);
  const type = jsb.readUInt32BE(4);
  if (
    jsb.readUInt32BE(0) !== jbdMagic ||
    (type !== blockType.superblockV1 && type !== blockType.superblockV2)
  ) {
    throw damaged('superblock has no jbd2 signature');
  }
  if (jsb.readUInt32BE(12) !== blockSize) throw damaged('block size differs from the file system');
  const maxLength = jsb.readUInt32BE(16);
  const first = jsb.readUInt32BE(20);
  let sequence = jsb.readUInt32BE(24);
  const start = jsb.readUInt32BE(28);
  const copies = new Map<number, JournalCopy>();
  if (start === 0) return copies;
  const features = type === blockType.superblockV2 ? jsb.readUInt32BE(40) : 0;
  if (features & jbdIncompat.fastCommit) throw damaged('uses fast commits, which Diskline does not replay');
  const is64 = (features & jbdIncompat.is64bit) !== 0;
  const csumV3 = (features & jbdIncompat.csumV3) !== 0;
  const csumV2 = (features & jbdIncompat.csumV2) !== 0;
  const tagBytes = csumV3 ? 16 : (csumV2 ? 14 : 12) - (is64 ? 0 : 4);
  const tailBytes = csumV2 || csumV3 ? 4 : 0;
  const next = (block: number) => (block + 1 >= maxLength ? first : block + 1);

  const transactions: { sequence: number; tags: { home: number; copy: JournalCopy }[] }[] = [];
  const revoked = new Map<number, number>();
  let pending: { home: number; copy: JournalCopy }[] = [];
  let block = start;
  for (let steps = 0; steps < maxLength; steps++) {
    const header = await readJournal(block);
    if (header.readUInt32BE(0) !== jbdMagic || header.readUInt32BE(8) !== sequence) break;
    const kind = header.readUInt32BE(4);
    if (kind === blockType.descriptor) {
      for (let at = 12; at + tagBytes <= blockSize - tailBytes; ) {
        const low = header.readUInt32BE(at);
        const flags = csumV3 ? header.readUInt32BE(at + 4) : header.readUInt16BE(at + 6);
        const high = is64 ? header.readUInt32BE(at + 8) : 0;
        block = next(block);
        steps++;
        pending.push({
          home: high * 2 ** 32 + low,
          copy: { source: physicalOf(block), escaped: !!(flags & tagFlag.escape) },
        });
        at += tagBytes + (flags & tagFlag.sameUuid ? 0 : 16);
        if (flags & tagFlag.lastTag) break;
      }
    } else if (kind === blockType.commit) {
      transactions.push({ sequence, tags: pending });
      pending = [];
      sequence++;
    } else if (kind === blockType.revoke) {
      const used = Math.min(header.readUInt32BE(12), blockSize);
      const size = is64 ? 8 : 4;
      for (let at = 16; at + size <= used; at += size) {
        const home = is64 ? Number(header.readBigUInt64BE(at)) : header.readUInt32BE(at);
        revoked.set(home, Math.max(revoked.get(home) ?? 0, sequence));
      }
    } else {
      break;
    }
    block = next(block);
  }
  for (const transaction of transactions) {
    for (const tag of transaction.tags) {
      const revokedAt = revoked.get(tag.home);
      if (revokedAt !== undefined && revokedAt >= transaction.sequence) continue;
      copies.set(tag.home, tag.copy);
    }
  }
  return copies;
}

/** The volume as replaying `copies` would leave it; reads are copies, the volume is never written. */
export function replayedVolume(volume: Volume, blockSize: number, copies: Map<number, JournalCopy>): Volume {
  return {
    name: volume.name,
    size: volume.size,
    async read(offset, length) {
      const data = Buffer.from(await volume.read(offset, length));
      const firstBlock = Math.floor(offset / blockSize);
      const endBlock = Math.ceil((offset + length) / blockSize);
      for (let home = firstBlock; home < endBlock; home++) {
        const copy = copies.get(home);
        if (!copy) continue;
        const content = Buffer.from(await volume.read(copy.source * blockSize, blockSize));
        if (copy.escaped) content.writeUInt32BE(jbdMagic, 0);
        const from = Math.max(offset, home * blockSize);
        const to = Math.min(offset + length, (home + 1) * blockSize);
        content.copy(data, from - offset, from - home * blockSize, to - home * blockSize);
      }
      return data;
    },
  };
}
