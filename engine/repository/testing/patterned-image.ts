// Plain images for repository tests that need no root: a mix of random (incompressible), text-like
// (compressible), repeated (deduplicable) and zero units, made deterministically from a seed.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';

function seededBytes(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  let counter = 0;
  for (let at = 0; at < length; at += 32) {
    createHash('sha256').update(`${seed}:${counter++}`).digest().copy(out, at);
  }
  return out;
}

/** An image of `units` units of `unitSize` bytes (plus `tail` extra bytes), content by unit index. */
export function patternedImage(seed: string, units: number, unitSize: number, tail = 0): Buffer {
  const image = Buffer.alloc(units * unitSize + tail);
  const repeated = seededBytes(`${seed}:repeated`, unitSize);
  for (let unit = 0; unit < units; unit++) {
    const at = unit * unitSize;
    switch (unit % 5) {
      case 0:
        seededBytes(`${seed}:${unit}`, unitSize).copy(image, at);
        break;
      case 1:
        image.fill(`unit ${unit} of ${seed}: some text that compresses well. `, at, at + unitSize);
        break;
      case 2:
        repeated.copy(image, at);
        break;
      case 3:
        break; // zeros
      default:
        seededBytes(`${seed}:${unit}`, unitSize / 2).copy(image, at);
    }
  }
  if (tail > 0) seededBytes(`${seed}:tail`, tail).copy(image, units * unitSize);
  return image;
}

export async function writeImage(path: string, bytes: Buffer): Promise<string> {
  await writeFile(path, bytes);
  return path;
}

/** Overwrites `units` (by index) with fresh random content; returns the changed byte ranges. */
export function changeUnits(
  image: Buffer,
  unitSize: number,
  units: number[],
  seed: string,
): { start: number; length: number }[] {
  for (const unit of units) seededBytes(`${seed}:changed:${unit}`, unitSize).copy(image, unit * unitSize);
  return units.map((unit) => ({ start: unit * unitSize, length: unitSize }));
}
