// What the NTFS master file table references: every in-use MFT record's non-resident attributes (file data,
// directory indexes, the MFT itself, $LogFile, …) and their data runs. The used map from $Bitmap must cover
// them all; records marked free, resident attributes and sparse runs reference nothing.
import type { MapCrossCheck, ReferenceCheck } from './map-check.ts';
import { applyFixups, decodeRuns, ntfsGeometry, unnamedData } from './ntfs.ts';
import { FilesystemDamagedError, type Volume } from './types.ts';

const mftRecord = 0;
const recordInUse = 0x1;
const attrEnd = 0xffffffff;
const attrFileName = 0x30;
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

export const ntfsCrossCheck: MapCrossCheck = {
  allocationRecord: '$Bitmap',
  repairTool: 'chkdsk',

  async run(volume, _map, check) {
    const geo = ntfsGeometry(await volume.read(0, 512));
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the NTFS boot sector is not valid`);
    const { runs, dataSize } = await unnamedData(volume, geo, mftRecord, '$MFT');
    const recordCount = Math.floor(dataSize / geo.recordSize);
    let number = 0;
    for (const run of runs) {
      if (number >= recordCount) break;
      if (run.lcn === null || !Number.isSafeInteger(run.lcn) || run.lcn < 0) {
        throw new FilesystemDamagedError(
          `${volume.name}: a data run of $MFT points at cluster ${run.lcn}; run chkdsk on it`,
        );
      }
      const runRecords = Math.min(
        recordCount - number,
        Math.floor((run.clusters * geo.clusterSize) / geo.recordSize),
      );
      const runStart = run.lcn * geo.clusterSize;
      for (let done = 0; done < runRecords; ) {
        const count = Math.min(runRecords - done, mftPieceBytes / geo.recordSize);
        const piece = await volume.read(runStart + done * geo.recordSize, count * geo.recordSize);
        for (let i = 0; i < count; i++) {
          const record = piece.subarray(i * geo.recordSize, (i + 1) * geo.recordSize);
          if (record.toString('latin1', 0, 4) !== 'FILE') continue;
          if (!(record.readUInt16LE(22) & recordInUse)) continue;
          referenceRecord(volume, record, number + done + i, geo.clusterSize, check);
        }
        done += count;
      }
      number += runRecords;
    }
    if (number < recordCount) {
      throw new FilesystemDamagedError(
        `${volume.name}: the data runs of $MFT end before its ${recordCount} records do; run chkdsk on it`,
      );
    }
  },
};
