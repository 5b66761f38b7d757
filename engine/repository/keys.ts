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

export async function unwrapMasterKey(config: EncryptionConfig, passphrase: string): Promise<Buffer> {
  const kek = await scryptKey(passphrase, config.kdf);
  const wrapped = Buffer.from(config.wrappedKey, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, 12));
  decipher.setAAD(WRAP_AAD);
  decipher.setAuthTag(wrapped.subarray(wrapped.length - 16));
  try {
    return Buffer.concat([decipher.update(wrapped.subarray(12, wrapped.length - 16)), decipher.final()]);
  } catch {
    throw new WrongPassphraseError('wrong passphrase');
  }
}
