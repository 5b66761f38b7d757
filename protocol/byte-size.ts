// Sizes as people type them ("512M", "4G", "2T", "1.5GiB"): binary units, for CLI options, plans and benchmarks.

const UNIT_POWERS: Record<string, number> = { '': 0, k: 1, m: 2, g: 3, t: 4 };

/** Bytes in `text`, or null when it is not a size. Units are powers of 1024; a bare number is bytes. */
export function parseByteSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!match) return null;
  return Math.round(Number(match[1]) * 1024 ** UNIT_POWERS[match[2]!.toLowerCase()]!);
}
