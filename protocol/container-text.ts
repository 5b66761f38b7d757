// The intermediate container written as text, as `backup --container` takes it: memory[:SIZE],
// file:PATH[:SIZE[:MAX]] or device:PATH. Parsed into the ContainerSpec that plans and the API carry.
import { parseByteSize } from './byte-size.ts';
import { UsageError } from './failure.ts';
import type { ContainerSpec } from './model.ts';

export const CONTAINER_SYNTAX = 'memory[:SIZE] | file:PATH[:SIZE[:MAX]] | device:PATH';

function size(text: string, what: string, whole: string): number {
  const bytes = parseByteSize(text);
  if (bytes === null || bytes <= 0) {
    throw new UsageError(`--container ${whole}: ${what} '${text}' is not a size (e.g. 256M, 4G)`);
  }
  return bytes;
}

/** The spec `text` names; a UsageError saying what is wrong otherwise. */
export function parseContainerText(text: string): ContainerSpec {
  const colon = text.indexOf(':');
  const kind = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? '' : text.slice(colon + 1);
  if (kind === 'memory') {
    return rest ? { kind, capacityBytes: size(rest, 'SIZE', text) } : { kind };
  }
  if (kind === 'file') {
    // A path may hold colons: sizes are taken from the end, only where they parse as sizes.
    const parts = rest.split(':');
    const sizes: number[] = [];
    while (parts.length > 1 && sizes.length < 2 && parseByteSize(parts.at(-1)!) !== null) {
      sizes.unshift(size(parts.pop()!, 'SIZE', text));
    }
    const path = parts.join(':');
    if (!path) throw new UsageError(`--container ${text}: give the file's path (file:PATH[:SIZE[:MAX]])`);
    const [first, max] = sizes;
    if (first !== undefined && max !== undefined) {
      if (max < first) throw new UsageError(`--container ${text}: MAX is smaller than SIZE`);
      return { kind, path, initialBytes: first, capacityBytes: max };
    }
    return first === undefined ? { kind, path } : { kind, path, capacityBytes: first };
  }
  if (kind === 'device') {
    if (!rest) throw new UsageError(`--container ${text}: give the spare partition (device:PATH)`);
    return { kind, path: rest };
  }
  throw new UsageError(`--container '${text}' is not a container; use ${CONTAINER_SYNTAX}`);
}
