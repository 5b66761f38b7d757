// What the NTFS master file table references: every in-use MFT record's non-resident attributes (file data,
// directory indexes, the MFT itself, $LogFile, …) and their data runs. The used map from $Bitmap must cover
// them all; records marked free, resident attributes and sparse runs reference nothing. The MFT is read through
// its own runs (following $MFT's attribute list when it is fragmented), up to its initialized size.
import type { MapCrossCheck, ReferenceCheck } from './map-check.ts';
import { applyFixups, type DataRun, decodeRuns, type NtfsGeometry, ntfsGeometry } from './ntfs.ts';
import { FilesystemDamagedError, type Volume } from './types.ts';

const mftRecord = 0;
const recordInUse = 0x1;
const attrEnd = 0xffffffff;
const attrFileName = 0x30;
const attrList = 0x20;
const attrData = 0x80;
const attributeNames = new Map([
  [0x20, '$ATTRIBUTE_LIST'],
  [0x80, '$DATA'],
  [0xa0, '$INDEX_ALLOCATION'],
  [0xb0, '$BITMAP'],
  [0x100, '$LOGGED_UTILITY_STREAM'],
]);
/** The MFT is read in pieces of this many bytes (a multiple of every record size). */
const mftPieceBytes = 4 * 1024 * 1024;

/** The record's file name from its first $FILE_NAME attribute, for messages; '' when it has none. */
function recordFileName(record: Buffer): string {
  let at = record.readUInt16LE(20);
  while (at + 24 <= record.length) {
    const type = record.readUInt32LE(at);
    const length = record.readUInt32LE(at + 4);
    if (type === attrEnd || length < 24 || at + length > record.length) return '';
    if (type === attrFileName && record[at + 8] === 0) {
      const value = at + record.readUInt16LE(at + 20);
      const nameLength = record[value + 0x40] ?? 0;
      if (value + 0x42 + nameLength * 2 <= record.length) {
        return record.toString('utf16le', value + 0x42, value + 0x42 + nameLength * 2);
      }
    }
    at += length;
  }
  return '';
}

/** Hands every data run of every non-resident attribute of one in-use record to `check`. */
function referenceRecord(
  volume: Volume,
  record: Buffer,
  number: number,
  clusterSize: number,
  check: ReferenceCheck,
) {
  const what = `MFT record ${number}`;
  const damaged = (problem: string) =>
    new FilesystemDamagedError(`${volume.name}: ${what} ${problem}; run chkdsk on it`);
  applyFixups(record, volume.name, what);
  let at = record.readUInt16LE(20);
  while (true) {
    if (at + 8 > record.length) throw damaged('has no end-of-attributes marker');
    const type = record.readUInt32LE(at);
    if (type === attrEnd) return;
    const length = record.readUInt32LE(at + 4);
    if (length < 16 || at + length > record.length) throw damaged('has a bad attribute');
    if (record[at + 8] === 1) {
      if (length < 64) throw damaged('has a bad attribute');
      const runsOffset = record.readUInt16LE(at + 32);
      if (runsOffset >= length) throw damaged('has a bad attribute');
      const attribute = attributeNames.get(type) ?? `attribute 0x${type.toString(16)}`;
      const owner = () => {
        const name = recordFileName(record);
        return `the ${attribute} of ${what}${name ? ` ("${name}")` : ''}`;
      };
      const runs = decodeRuns(
        record.subarray(at + runsOffset, at + length),
        volume.name,
        `${attribute} of ${what}`,
      );
      for (const run of runs) {
        if (run.lcn !== null) check.reference(run.lcn * clusterSize, run.clusters * clusterSize, owner);
      }
    }
    at += length;
  }
}

/** Reads `length` bytes at byte `start` of an attribute whose clusters are `runs` (sparse runs read as zeros). */
async function readThroughRuns(
  volume: Volume,
  runs: readonly DataRun[],
  clusterSize: number,
  start: number,
  length: number,
  what: string,
): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let runStart = 0;
  let wanted = start;
  const end = start + length;
  for (const run of runs) {
    const runEnd = runStart + run.clusters * clusterSize;
    if (wanted < runEnd && wanted < end) {
      const pieceEnd = Math.min(runEnd, end);
      if (run.lcn === null) {
        pieces.push(Buffer.alloc(pieceEnd - wanted));
      } else {
        if (!Number.isSafeInteger(run.lcn) || run.lcn < 0) {
          throw new FilesystemDamagedError(
            `${volume.name}: a data run of ${what} points at cluster ${run.lcn}; run chkdsk on it`,
          );
        }
        pieces.push(await volume.read(run.lcn * clusterSize + (wanted - runStart), pieceEnd - wanted));
      }
      wanted = pieceEnd;
    }
    if (wanted >= end) break;
    runStart = runEnd;
  }
  if (wanted < end) {
    throw new FilesystemDamagedError(
      `${volume.name}: the data runs of ${what} end before its data does; run chkdsk on it`,
    );
  }
  return Buffer.concat(pieces);
}

interface DataSegment {
  lowestVcn: number;
  runs: DataRun[];
  initializedSize: number;
}

/** The unnamed $DATA extents of one MFT record (fixups applied), and its attribute list's bytes if it has one. */
async function dataSegments(
  volume: Volume,
  record: Buffer,
  clusterSize: number,
  what: string,
): Promise<{ segments: DataSegment[]; attributeList: Buffer | null }> {
  const damaged = (problem: string) =>
    new FilesystemDamagedError(`${volume.name}: ${what} ${problem}; run chkdsk on it`);
  const segments: DataSegment[] = [];
  let attributeList: Buffer | null = null;
  let at = record.readUInt16LE(20);
  while (true) {
    if (at + 8 > record.length) throw damaged('has no end-of-attributes marker');
    const type = record.readUInt32LE(at);
    if (type === attrEnd) break;
    const length = record.readUInt32LE(at + 4);
    if (length < 24 || at + length > record.length) throw damaged('has a bad attribute');
    const nonResident = record[at + 8] === 1;
    if (nonResident && length < 64) throw damaged('has a bad attribute');
    if (type === attrData && record[at + 9] === 0 && nonResident) {
      segments.push({
        lowestVcn: Number(record.readBigUInt64LE(at + 16)),
        runs: decodeRuns(record.subarray(at + record.readUInt16LE(at + 32), at + length), volume.name, what),
        initializedSize: Number(record.readBigUInt64LE(at + 56)),
      });
    } else if (type === attrList) {
      if (nonResident) {
        const runs = decodeRuns(
          record.subarray(at + record.readUInt16LE(at + 32), at + length),
          volume.name,
          what,
        );
        const size = Number(record.readBigUInt64LE(at + 48));
        if (size > 1 << 24) throw damaged(`has an attribute list of ${size} bytes`);
        attributeList = await readThroughRuns(
          volume,
          runs,
          clusterSize,
          0,
          size,
          `the attribute list of ${what}`,
        );
      } else {
        const valueAt = at + record.readUInt16LE(at + 20);
        attributeList = record.subarray(
          valueAt,
          Math.min(at + length, valueAt + record.readUInt32LE(at + 16)),
        );
      }
    }
    at += length;
  }
  return { segments, attributeList };
}

/**
 * Where the MFT itself is: the runs of record 0's unnamed $DATA, gathered from its extension records when an
 * attribute list spreads them (a heavily fragmented MFT), and how many bytes of it are initialized.
 */
async function mftLayout(volume: Volume, geo: NtfsGeometry): Promise<{ runs: DataRun[]; bytes: number }> {
  const what = 'the MFT record of $MFT';
  const record = await volume.read(geo.mftCluster * geo.clusterSize, geo.recordSize);
  if (record.toString('latin1', 0, 4) !== 'FILE') {
    throw new FilesystemDamagedError(`${volume.name}: ${what} has no FILE signature; run chkdsk on it`);
  }
  applyFixups(record, volume.name, what);
  const base = await dataSegments(volume, record, geo.clusterSize, what);
  const first = base.segments.find((segment) => segment.lowestVcn === 0);
  if (!first)
    throw new FilesystemDamagedError(`${volume.name}: ${what} has no data attribute; run chkdsk on it`);
  const segments = [...base.segments];
  const list = base.attributeList;
  if (list) {
    // Entries: type, length, name length, lowest VCN, and the record holding that piece of the attribute.
    const extensions = new Set<number>();
    for (let at = 0; at + 26 <= list.length; ) {
      const length = list.readUInt16LE(at + 4);
      if (length < 26) break;
      const holder = list.readUIntLE(at + 16, 6);
      if (list.readUInt32LE(at) === attrData && list[at + 6] === 0 && holder !== mftRecord)
        extensions.add(holder);
      at += length;
    }
    for (const number of extensions) {
      // Extension records of $MFT lie in the part of the MFT its base record maps.
      const extension = await readThroughRuns(
        volume,
        first.runs,
        geo.clusterSize,
        number * geo.recordSize,
        geo.recordSize,
        '$MFT',
      );
      const extensionWhat = `MFT record ${number} (an extension of $MFT)`;
      if (extension.toString('latin1', 0, 4) !== 'FILE') {
        throw new FilesystemDamagedError(
          `${volume.name}: ${extensionWhat} has no FILE signature; run chkdsk on it`,
        );
      }
      applyFixups(extension, volume.name, extensionWhat);
      segments.push(...(await dataSegments(volume, extension, geo.clusterSize, extensionWhat)).segments);
    }
  }
  segments.sort((a, b) => a.lowestVcn - b.lowestVcn);
  return { runs: segments.flatMap((segment) => segment.runs), bytes: first.initializedSize };
}

export const ntfsCrossCheck: MapCrossCheck = {
  allocationRecord: '$Bitmap',
  repairTool: 'chkdsk',

  async run(volume, _map, check) {
    const geo = ntfsGeometry(await volume.read(0, 512));
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the NTFS boot sector is not valid`);
    const mft = await mftLayout(volume, geo);
    const recordCount = Math.floor(mft.bytes / geo.recordSize);
    const recordsPerRead = Math.max(1, Math.floor(mftPieceBytes / geo.recordSize));
    for (let first = 0; first < recordCount; first += recordsPerRead) {
      const count = Math.min(recordsPerRead, recordCount - first);
      const piece = await readThroughRuns(
        volume,
        mft.runs,
        geo.clusterSize,
        first * geo.recordSize,
        count * geo.recordSize,
        '$MFT',
      );
      for (let i = 0; i < count; i++) {
        const record = piece.subarray(i * geo.recordSize, (i + 1) * geo.recordSize);
        if (record.toString('latin1', 0, 4) !== 'FILE') continue;
        if (!(record.readUInt16LE(22) & recordInUse)) continue;
        referenceRecord(volume, record, first + i, geo.clusterSize, check);
      }
    }
  },
};
