// Containers Diskline recognises but cannot see into: LUKS encryption, LVM physical volumes, md RAID
// members, BitLocker. Named in the layout (so the user sees what the partition is), copied whole.
import { allBlocksMap, type FilesystemReader, type UsedMap, type Volume } from './types.ts';

interface Signature {
  name: string;
  what: string;
  matches(volume: Volume): Promise<boolean>;
}

const at = async (volume: Volume, offset: number, text: string) =>
  volume.size >= offset + text.length && (await volume.read(offset, text.length)).toString('latin1') === text;

const signatures: Signature[] = [
  { name: 'crypto_LUKS', what: 'LUKS-encrypted', matches: (v) => at(v, 0, 'LUKS\xba\xbe') },
  { name: 'LVM2_member', what: 'an LVM physical volume', matches: (v) => at(v, 512 + 24, 'LVM2 001') },
  { name: 'BitLocker', what: 'BitLocker-encrypted', matches: (v) => at(v, 3, '-FVE-FS-') },
  {
    name: 'linux_raid_member',
    what: 'an md RAID member',
    // md superblock 1.1 / 1.2 at 0 or 4 KiB, magic a92b4efc little-endian.
    matches: async (v) => (await at(v, 0, '\xfc\x4e\x2b\xa9')) || (await at(v, 4096, '\xfc\x4e\x2b\xa9')),
  },
];

async function signatureOf(volume: Volume): Promise<Signature | null> {
  for (const signature of signatures) if (await signature.matches(volume)) return signature;
  return null;
}

export const opaqueReader: FilesystemReader = {
  family: 'opaque',

  async detect(volume) {
    return (await signatureOf(volume)) !== null;
  },

  async usedMap(volume): Promise<UsedMap> {
    const signature = await signatureOf(volume);
    const name = signature?.name ?? 'unknown';
    return allBlocksMap(
      name,
      volume,
      4096,
      `${volume.name} is ${signature?.what ?? 'not readable'}: Diskline cannot see which blocks are used inside, ` +
        'so every block is copied',
    );
  },
};
