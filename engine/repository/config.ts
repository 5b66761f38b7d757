// The repository's config file: the fields docs/repository-format.md allows, and the check that a config read
// from disk holds exactly those before anything is derived from it (a hostile config must not pick the memory
// scrypt takes, the size of the buffers a backup allocates, or a key of the wrong length).
import type { EncryptionConfig } from './keys.ts';

/** The format this Diskline writes: 4, segmented points (format 3 repositories are upgraded by their next backup). */
export const FORMAT_VERSION = 4;
/** The oldest format a backup writes into (after upgrading its config): older ones bind no names to sealed files. */
export const OLDEST_WRITABLE_FORMAT = 3;
/** The oldest format it still reads (restores, lists, verifies and prunes; backs up only from format 3). */
export const OLDEST_READABLE_FORMAT = 2;
/** A config is a few hundred bytes of JSON; anything near this is not one. */
export const CONFIG_MAX_BYTES = 64 * 1024;

export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
/** A backup holds a few packs in memory, so the pack size is bounded; tests use small packs. */
export const MIN_PACK_SIZE = 64 * 1024;
export const MAX_PACK_SIZE = 1024 * 1024 * 1024;
/** scrypt takes 128 * N * r bytes: at most 1 GiB, and p rounds of it at most 16. */
const MAX_SCRYPT_N_R = 1 << 23;
const MAX_SCRYPT_P = 16;
const MIN_SCRYPT_N = 1 << 10;
const SALT_BYTES = 32;
/** nonce (12) | wrapped master key (64) | tag (16) */
const WRAPPED_KEY_BYTES = 92;
export const MASTER_KEY_BYTES = 64;

export interface RepositoryConfig {
  format: number;
  id: string;
  chunkSize: number;
  compression: 'zstd';
  packSize: number;
  encryption: EncryptionConfig | null;
  /** base64; only in an unencrypted repository */
  masterKey: string | null;
}

/** A chunk (and snapshot unit) size this format allows: a power of two within the bounds. */
export function isChunkSize(size: unknown): size is number {
  return (
    typeof size === 'number' &&
    Number.isInteger(size) &&
    size >= MIN_CHUNK_SIZE &&
    size <= MAX_CHUNK_SIZE &&
    (size & (size - 1)) === 0
  );
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const isIntegerIn = (value: unknown, low: number, high: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= low && value <= high;

/** Whether `value` is canonical base64 of exactly `bytes` bytes. */
function isBase64Of(value: unknown, bytes: number): boolean {
  if (typeof value !== 'string') return false;
  const decoded = Buffer.from(value, 'base64');
  return decoded.length === bytes && decoded.toString('base64') === value;
}

/** What is wrong with the encryption block, or null. */
function encryptionProblem(encryption: Record<string, unknown>): string | null {
  if (encryption.cipher !== 'aes-256-gcm') return `names cipher ${JSON.stringify(encryption.cipher)}`;
  const kdf = encryption.kdf;
  if (!isObject(kdf) || kdf.name !== 'scrypt') return 'names no scrypt key derivation';
  const { N, r, p } = kdf;
  if (!isIntegerIn(N, MIN_SCRYPT_N, MAX_SCRYPT_N_R) || (N & (N - 1)) !== 0)
    return `names scrypt N ${JSON.stringify(N)} (a power of two from ${MIN_SCRYPT_N})`;
  if (!isIntegerIn(r, 1, MAX_SCRYPT_N_R / N))
    return `names scrypt r ${JSON.stringify(r)} (N * r at most 2^23)`;
  if (!isIntegerIn(p, 1, MAX_SCRYPT_P)) return `names scrypt p ${JSON.stringify(p)} (1 to ${MAX_SCRYPT_P})`;
  if (!isBase64Of(kdf.salt, SALT_BYTES)) return `holds no ${SALT_BYTES}-byte salt`;
  if (!isBase64Of(encryption.wrappedKey, WRAPPED_KEY_BYTES))
    return `holds no wrapped key of ${WRAPPED_KEY_BYTES} bytes`;
  return null;
}

/** What is wrong with a parsed config, or null when it holds what the spec allows (any known format). */
function configProblem(config: Record<string, unknown>): string | null {
  if (!/^[0-9a-f]{32}$/.test(String(config.id))) return 'has no repository id of 32 hex digits';
  if (!isChunkSize(config.chunkSize)) return `names chunk size ${JSON.stringify(config.chunkSize)}`;
  if (config.compression !== 'zstd') return `names compression ${JSON.stringify(config.compression)}`;
  if (!isIntegerIn(config.packSize, MIN_PACK_SIZE, MAX_PACK_SIZE))
    return `names pack size ${JSON.stringify(config.packSize)} (${MIN_PACK_SIZE >> 10} KiB to ${MAX_PACK_SIZE >> 30} GiB)`;
  if (config.encryption === null) {
    if (!isBase64Of(config.masterKey, MASTER_KEY_BYTES)) return 'holds no key';
    return null;
  }
  if (!isObject(config.encryption)) return 'has an encryption field that is not an object';
  if (config.masterKey !== null) return 'holds both a wrapped and a plain master key';
  const problem = encryptionProblem(config.encryption);
  return problem && `encryption ${problem}`;
}

/**
 * The config in `bytes`, checked field by field. Throws a ConfigError saying what is wrong; `format` is checked
 * first and apart (a newer or older format is not damage but needs another Diskline).
 */
export function parseConfig(bytes: Buffer): RepositoryConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ConfigError('is not valid JSON');
  }
  if (!isObject(parsed)) throw new ConfigError('is not a JSON object');
  if (!isIntegerIn(parsed.format, 1, Number.MAX_SAFE_INTEGER)) throw new ConfigError('has no format version');
  if (parsed.format < OLDEST_READABLE_FORMAT || parsed.format > FORMAT_VERSION)
    throw new ConfigFormatError(parsed.format);
  const problem = configProblem(parsed);
  if (problem) throw new ConfigError(problem);
  return parsed as unknown as RepositoryConfig;
}

/** The config is damaged: its message completes "its config …". */
export class ConfigError extends Error {}

/** The config is of a format this Diskline does not read. */
export class ConfigFormatError extends Error {
  readonly format: number;
  constructor(format: number) {
    super(`format ${format}`);
    this.format = format;
  }
}
