// Repository keys: a random master key, wrapped under a passphrase with scrypt + AES-256-GCM, and the keys
// derived from it (data key for chunks and sealed files, id key for chunk ids). See docs/repository-format.md.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scrypt } from 'node:crypto';

export interface ScryptParameters {
  name: 'scrypt';
  N: number;
  r: number;
  p: number;
  /** base64 */
  salt: string;
}

export interface EncryptionConfig {
  cipher: 'aes-256-gcm';
  kdf: ScryptParameters;
  /** base64 of nonce (12) | ciphertext | tag (16) */
  wrappedKey: string;
}

/** The two keys everything else uses. `encrypted` false: chunks and sealed files are not secret, only checked. */
export interface RepositoryKeys {
  encrypted: boolean;
  dataKey: Buffer;
  idKey: Buffer;
}

export const DEFAULT_SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;
const WRAP_AAD = Buffer.from('diskline-config-1');

/** Thrown when the passphrase does not unwrap the master key. */
export class WrongPassphraseError extends Error {}

/** The shortest passphrase init accepts (without --insecure-weak-passphrase), and how varied it must be. */
export const MIN_PASSPHRASE_LENGTH = 10;
const MIN_DISTINCT_CHARACTERS = 5;

/**
 * Why a passphrase is too weak to guard a repository whose config anyone with read access may copy and attack
 * offline, or null. A floor, not a meter: length first, and not one or two characters repeated.
 */
export function passphraseWeakness(passphrase: string): string | null {
  const characters = [...passphrase];
  if (characters.length < MIN_PASSPHRASE_LENGTH)
    return `it has ${characters.length} characters; use at least ${MIN_PASSPHRASE_LENGTH} (a few unrelated words are easy to remember)`;
  if (new Set(characters).size < MIN_DISTINCT_CHARACTERS)
    return `it repeats ${new Set(characters).size === 1 ? 'one character' : 'a few characters'}; use at least ${MIN_DISTINCT_CHARACTERS} different ones`;
  return null;
}

export function newMasterKey(): Buffer {
  return randomBytes(64);
}

export function deriveKeys(masterKey: Buffer, repositoryId: string, encrypted: boolean): RepositoryKeys {
  const salt = Buffer.from(repositoryId, 'hex');
  return {
    encrypted,
    dataKey: Buffer.from(hkdfSync('sha256', masterKey, salt, 'diskline data', 32)),
    idKey: Buffer.from(hkdfSync('sha256', masterKey, salt, 'diskline chunk-id', 32)),
  };
}

function scryptKey(passphrase: string, kdf: Omit<ScryptParameters, 'name'>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const maxmem = 256 * kdf.N * kdf.r + (16 << 20);
    scrypt(
      passphrase,
      Buffer.from(kdf.salt, 'base64'),
      32,
      { N: kdf.N, r: kdf.r, p: kdf.p, maxmem },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

export async function wrapMasterKey(
  masterKey: Buffer,
  passphrase: string,
  cost: { N: number; r: number; p: number } = DEFAULT_SCRYPT,
): Promise<EncryptionConfig> {
  const kdf: ScryptParameters = { name: 'scrypt', ...cost, salt: randomBytes(32).toString('base64') };
  const kek = await scryptKey(passphrase, kdf);
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(WRAP_AAD);
  const body = Buffer.concat([cipher.update(masterKey), cipher.final()]);
  return {
    cipher: 'aes-256-gcm',
    kdf,
    wrappedKey: Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64'),
  };
}

/** The master key; a WrongPassphraseError when the tag check fails (the config is checked before, see config.ts). */
export async function unwrapMasterKey(config: EncryptionConfig, passphrase: string): Promise<Buffer> {
  const kek = await scryptKey(passphrase, config.kdf);
  const wrapped = Buffer.from(config.wrappedKey, 'base64');
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, 12));
    decipher.setAAD(WRAP_AAD);
    decipher.setAuthTag(wrapped.subarray(wrapped.length - 16));
    return Buffer.concat([decipher.update(wrapped.subarray(12, wrapped.length - 16)), decipher.final()]);
  } catch {
    throw new WrongPassphraseError('wrong passphrase');
  }
}
