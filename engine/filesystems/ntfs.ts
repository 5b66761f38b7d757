// NTFS used clusters from $Bitmap: the MFT record of $Bitmap (record 6, always inside the MFT's first
// extent) is read with its update-sequence fixups, its unnamed $DATA attribute's runs are decoded, and the
// bitmap read through them gives one bit per cluster. The backup boot sector past the last cluster is kept.
import { forEachSetRun, RangeBuilder } from '../device/ranges.ts';
import {
  allBlocksMap,
  FilesystemDamagedError,
  type FilesystemReader,
  type UsedMap,
  type Volume,
} from './types.ts';

const bitmapRecord = 6;
const attrData = 0x80;
const attrList = 0x20;
const attrEnd = 0xffffffff;

export interface NtfsGeometry {
  bytesPerSector: number;
  clusterSize: number;
  totalSectors: number;
  mftCluster: number;
  recordSize: number;
  serial: string;
}

export function ntfsGeometry(boot: Buffer): NtfsGeometry | null {
  if (boot.length < 512 || boot.toString('latin1', 3, 11) !== 'NTFS    ') return null;
  if (boot[510] !== 0x55 || boot[511] !== 0xaa) return null;
  const bytesPerSector = boot.readUInt16LE(11);
  const rawSpc = boot[13]!;
  // Values above 0x80 mean 2^(256 - value) sectors per cluster (clusters of 128 KiB and more).
  const sectorsPerCluster = rawSpc > 0x80 ? 2 ** (256 - rawSpc) : rawSpc;
  const clusterSize = bytesPerSector * sectorsPerCluster;
  const rawRecord = boot.readInt8(64);
  const recordSize = rawRecord < 0 ? 2 ** -rawRecord : rawRecord * clusterSize;
  if (![512, 1024, 2048, 4096].includes(bytesPerSector) || sectorsPerCluster < 1) return null;
  if (recordSize < 512 || recordSize > 65536) return null;
  return {
    bytesPerSector,
    clusterSize,
    totalSectors: Number(boot.readBigUInt64LE(40)),
    mftCluster: Number(boot.readBigUInt64LE(48)),
    recordSize,
    serial: boot.readBigUInt64LE(72).toString(16).padStart(16, '0').toUpperCase(),
  };
}

/** Applies the update sequence array: the last two bytes of each 512-byte stride were saved there. */
export function applyFixups(record: Buffer, name: string, what = 'the MFT record of $Bitmap'): void {
  const usaOffset = record.readUInt16LE(4);
  const usaCount = record.readUInt16LE(6);
  if (usaOffset + usaCount * 2 > record.length || usaCount < 1 || (usaCount - 1) * 512 > record.length) {
    throw new FilesystemDamagedError(
      `${name}: ${what} has a damaged update sequence array; run chkdsk on it`,
    );
  }
  const check = record.readUInt16LE(usaOffset);
  for (let i = 1; i < usaCount; i++) {
    const end = i * 512 - 2;
    if (record.readUInt16LE(end) !== check) {
      throw new FilesystemDamagedError(
        `${name}: ${what} is torn (update sequence mismatch in stride ${i}); run chkdsk on it`,
      );
    }
    record.writeUInt16LE(record.readUInt16LE(usaOffset + i * 2), end);
  }
}

export interface DataRun {
  /** Cluster number on the volume, or null for a sparse run. */
  lcn: number | null;
  clusters: number;
}

/** Decodes an attribute's mapping pairs (data runs); `owner` names the attribute in errors. */
export function decodeRuns(bytes: Buffer, name: string, owner = '$Bitmap'): DataRun[] {
  const runs: DataRun[] = [];
  let at = 0;
  let lcn = 0;
  while (at < bytes.length && bytes[at] !== 0) {
    const header = bytes[at]!;
    const lengthSize = header & 0x0f;
    const offsetSize = header >> 4;
    if (
      lengthSize === 0 ||
      lengthSize > 8 ||
      offsetSize > 8 ||
      at + 1 + lengthSize + offsetSize > bytes.length
    ) {
      throw new FilesystemDamagedError(`${name}: the data runs of ${owner} are damaged; run chkdsk on it`);
    }
    const clusters = Number(bytes.readUIntLE(at + 1, Math.min(lengthSize, 6)));
    if (offsetSize === 0) {
      runs.push({ lcn: null, clusters });
    } else {
      const delta = offsetSize <= 6 ? bytes.readIntLE(at + 1 + lengthSize, offsetSize) : Number.NaN;
      lcn += delta;
      runs.push({ lcn, clusters });
    }
    at += 1 + lengthSize + offsetSize;
  }
  return runs;
}

/** The runs and size of the unnamed $DATA attribute of MFT record `recordNumber` (one of the first 16). */
export async function unnamedData(
  volume: Volume,
  geo: NtfsGeometry,
  recordNumber: number,
  fileName: string,
): Promise<{ runs: DataRun[]; dataSize: number }> {
  const what = `the MFT record of ${fileName}`;
  const damaged = (problem: string) =>
    new FilesystemDamagedError(`${volume.name}: ${problem}; run chkdsk on it`);
  const record = await volume.read(
    geo.mftCluster * geo.clusterSize + recordNumber * geo.recordSize,
    geo.recordSize,
  );
  if (record.toString('latin1', 0, 4) !== 'FILE') throw damaged(`${what} has no FILE signature`);
  applyFixups(record, volume.name, what);
  let at = record.readUInt16LE(20);
  while (at + 8 <= record.length) {
    const type = record.readUInt32LE(at);
    if (type === attrEnd) break;
    const length = record.readUInt32LE(at + 4);
    if (length < 16 || at + length > record.length) throw damaged(`${what} has a bad attribute`);
    if (type === attrList) {
      throw damaged(`${fileName} is described by an attribute list, which Diskline does not follow`);
    }
    if (type === attrData && record[at + 9] === 0) {
      if (record[at + 8] !== 1) throw damaged(`${fileName} data is resident, which no valid NTFS volume has`);
      const runsOffset = record.readUInt16LE(at + 32);
      return {
        runs: decodeRuns(record.subarray(at + runsOffset, at + length), volume.name, fileName),
        dataSize: Number(record.readBigUInt64LE(at + 48)),
      };
    }
    at += length;
  }
  throw damaged(`${what} has no data attribute`);
}

const logFileRecord = 2;
const noClient = 0xffff;
const volumeIsClean = 0x0002;

/**
 * Throws FilesystemDamagedError when $LogFile holds changes not yet written home (Windows did not shut down
 * cleanly, or hibernated): then $Bitmap may be stale. An empty log (all 0xFF, as mkntfs and ntfs-3g leave it)
 * is clean.
 */
async function assertCleanLogFile(volume: Volume, geo: NtfsGeometry): Promise<void> {
  const { runs } = await unnamedData(volume, geo, logFileRecord, '$LogFile');
  const first = runs[0];
  if (!first || first.lcn === null) return;
  const pages = await volume.read(
    first.lcn * geo.clusterSize,
    Math.min(8192, first.clusters * geo.clusterSize),
  );
  for (const pageStart of [0, 4096]) {
    if (pageStart + 4096 > pages.length) break;
    const page = Buffer.from(pages.subarray(pageStart, pageStart + 4096));
    const magic = page.toString('latin1', 0, 4);
    if (magic !== 'RSTR' && magic !== 'CHKD') continue;
    const pageSize = page.readUInt32LE(0x10);
    if (pageSize !== 4096) continue;
    applyFixups(page, volume.name, 'the $LogFile restart page');
    const area = page.readUInt16LE(0x18);
    if (area + 16 > page.length) continue;
    const clientsInUse = page.readUInt16LE(area + 12);
    const flags = page.readUInt16LE(area + 14);
    if (clientsInUse !== noClient && !(flags & volumeIsClean)) {
      throw new FilesystemDamagedError(
        `${volume.name}: the NTFS journal ($LogFile) holds changes not yet written home (Windows was not shut down ` +
          'cleanly, or hibernated with Fast Startup); its $Bitmap may be stale',
      );
    }
  }
}

export const ntfsReader: FilesystemReader = {
  family: 'ntfs',

  async detect(volume) {
    if (volume.size < 512) return false;
    return ntfsGeometry(await volume.read(0, 512)) !== null;
  },

  async usedMap(volume: Volume): Promise<UsedMap> {
    const geo = ntfsGeometry(await volume.read(0, 512));
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the NTFS boot sector is not valid`);
    const damaged = (what: string) => new FilesystemDamagedError(`${volume.name}: ${what}; run chkdsk on it`);
    const clusterCount = Math.floor((geo.totalSectors * geo.bytesPerSector) / geo.clusterSize);
    if (geo.totalSectors * geo.bytesPerSector > volume.size) {
      throw new FilesystemDamagedError(
        `${volume.name}: the NTFS file system says it has ${geo.totalSectors} sectors, more than the ` +
          `${volume.size}-byte partition holds; the partition or image is truncated`,
      );
    }
    try {
      await assertCleanLogFile(volume, geo);
    } catch (error) {
      if (!(error instanceof FilesystemDamagedError)) throw error;
      return allBlocksMap(
        'ntfs',
        volume,
        geo.clusterSize,
        `${error.message}, so every block is copied. Shut Windows down fully (no Fast Startup) for a used-blocks-only backup`,
      );
    }
    const { runs, dataSize } = await unnamedData(volume, geo, bitmapRecord, '$Bitmap');
    if (dataSize * 8 < clusterCount)
      throw damaged(`$Bitmap holds ${dataSize * 8} bits for ${clusterCount} clusters`);
    const bitmap = Buffer.alloc(Math.ceil(clusterCount / 8));
    let filled = 0;
    for (const run of runs) {
      if (filled >= bitmap.length) break;
      const bytes = Math.min(run.clusters * geo.clusterSize, bitmap.length - filled);
      if (run.lcn !== null) {
        if (!Number.isSafeInteger(run.lcn) || run.lcn < 0 || run.lcn + run.clusters > clusterCount) {
          throw damaged(`a data run of $Bitmap points at cluster ${run.lcn}, outside the volume`);
        }
        (await volume.read(run.lcn * geo.clusterSize, bytes)).copy(bitmap, filled);
      }
      filled += bytes;
    }
    if (filled < bitmap.length) throw damaged('the data runs of $Bitmap end before the bitmap does');
    const used = new RangeBuilder();
    forEachSetRun(bitmap, clusterCount, (first, count) =>
      used.add(first * geo.clusterSize, count * geo.clusterSize),
    );
    // The backup boot sector is the volume's last sector, after the last whole cluster.
    used.add(clusterCount * geo.clusterSize, volume.size - clusterCount * geo.clusterSize);
    // Cluster 0 holds the boot sector, the boot code, and is always marked; keep it even if a bitmap says otherwise.
    used.add(0, Math.min(8192, volume.size));
    return {
      filesystem: 'ntfs',
      blockSize: geo.clusterSize,
      usedRanges: used.finish(),
      allBlocks: false,
      uuid: geo.serial,
      warnings: [],
    };
  },
};
