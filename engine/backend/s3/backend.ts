// A repository backend on S3-compatible object storage. Objects are written once under their final key (an S3
// PUT or a completed multipart upload is atomic: a reader sees the whole object or none), big ones in parts
// sent in parallel; `create` is a conditional PUT (If-None-Match: *), the basis of locks.
import { type Backend, type ListedFile, UnsafeFileError } from '../types.ts';
import { type RetryPolicy, S3Client, type S3Response, xmlValue, xmlValues } from './client.ts';
import { loadS3Credentials } from './credentials.ts';
import { parseS3Location, redact } from './location.ts';
import type { S3Credentials } from './signer.ts';

/**
 * Objects larger than this go up in parts. A pack (32 MiB by default) goes in one PUT: measured against radosgw
 * here (bench/s3-vs-local.ts, 1 GiB image), one PUT per pack sent 39 requests against 139 in 8 MiB parts and was
 * as fast or faster (16.8 s against 18.2 s); the backup's own parallel pack writes keep the link busy. Bigger
 * packs (init --pack-size) go in parts.
 */
const MULTIPART_THRESHOLD = 64 << 20;
const PART_SIZE = 16 << 20;
/** S3 refuses parts smaller than 5 MiB (EntityTooSmall), the last excepted. */
const MIN_PART_SIZE = 5 << 20;
const PARTS_IN_FLIGHT = 4;

/** How big objects are sent; chosen by bench/s3-vs-local.ts. */
export interface UploadShape {
  multipartThreshold: number;
  partSize: number;
  partsInFlight: number;
}

export interface S3BackendOptions {
  credentials?: S3Credentials;
  retry?: RetryPolicy;
  /** Names per listing request (S3's most is 1000; tests use fewer to cross pages). */
  listPageSize?: number;
  upload?: Partial<UploadShape>;
}

export class S3Backend implements Backend {
  readonly location: string;
  /** Pack PUTs at once: each waits on the network (chosen by bench/s3-vs-local.ts against radosgw). */
  readonly writesInFlight = 4;
  readonly client: S3Client;
  readonly #prefix: string;
  readonly #listPageSize: number;
  readonly #upload: UploadShape;

  constructor(location: string, options: S3BackendOptions = {}) {
    this.#listPageSize = options.listPageSize ?? 1000;
    this.#upload = {
      multipartThreshold: MULTIPART_THRESHOLD,
      partSize: PART_SIZE,
      partsInFlight: PARTS_IN_FLIGHT,
      ...options.upload,
    };
    this.#upload.partSize = Math.max(MIN_PART_SIZE, this.#upload.partSize);
    const parsed = parseS3Location(location);
    this.location = redact(location);
    this.#prefix = parsed.prefix;
    this.client = new S3Client(parsed, options.credentials ?? loadS3Credentials(), options.retry);
  }

  #key(name: string): string {
    if (name.includes('..') || name.startsWith('/'))
      throw new Error(`invalid repository file name '${name}'`);
    return this.#prefix + name;
  }

  async get(name: string, maxBytes: number): Promise<Buffer> {
    const response = await this.client.expect(
      { method: 'GET', key: this.#key(name), maxBodyBytes: maxBytes },
      [200, 404],
    );
    if (response.status === 404) throw missing(name);
    if (response.body.length > maxBytes) {
      throw new UnsafeFileError(
        name,
        `holds ${response.body.length} bytes, more than such a file may (${maxBytes})`,
      );
    }
    return response.body;
  }

  async getRange(name: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (length === 0) return into ? into.subarray(0, 0) : Buffer.alloc(0);
    const response = await this.client.expect(
      { method: 'GET', key: this.#key(name), headers: { range: `bytes=${offset}-${offset + length - 1}` } },
      [200, 206, 404, 416],
    );
    if (response.status === 404) throw missing(name);
    if (response.status === 416) return into ? into.subarray(0, 0) : Buffer.alloc(0);
    // A store that ignores Range answers 200 with the whole object.
    const bytes = response.status === 200 ? response.body.subarray(offset, offset + length) : response.body;
    if (!into) return bytes;
    bytes.copy(into);
    return into.subarray(0, bytes.length);
  }

  async put(name: string, data: Buffer | readonly Buffer[]): Promise<void> {
    const parts = Buffer.isBuffer(data) ? [data] : data;
    const total = parts.reduce((sum, part) => sum + part.length, 0);
    if (total <= this.#upload.multipartThreshold) {
      await this.client.expect({ method: 'PUT', key: this.#key(name), body: parts }, [200]);
      return;
    }
    await this.#multipart(this.#key(name), parts, total);
  }

  async create(name: string, data: Buffer): Promise<void> {
    const exists = () => Object.assign(new Error(`${name} exists in ${this.location}`), { code: 'EEXIST' });
    if (await this.#versioned()) {
      // Measured on radosgw 16: a versioned bucket (every Object Lock bucket is one) ignores If-None-Match and
      // takes the second create too. So: look first, write, and read back — the one whose bytes are there holds
      // it. Two creators can still both win when one writes after the other read back: a window of one round
      // trip, for the prune lock only.
      if ((await this.size(name)) !== null) throw exists();
      await this.client.expect({ method: 'PUT', key: this.#key(name), body: data }, [200]);
      const stored = await this.client.expect({ method: 'GET', key: this.#key(name) }, [200, 404]);
      if (stored.status !== 200 || !stored.body.equals(data)) throw exists();
      return;
    }
    const response = await this.client.expect(
      { method: 'PUT', key: this.#key(name), headers: { 'if-none-match': '*' }, body: data },
      [200, 409, 412],
    );
    if (response.status !== 200) throw exists();
  }

  #versioning: Promise<boolean> | null = null;

  /** Whether the bucket keeps versions (asked once). */
  #versioned(): Promise<boolean> {
    this.#versioning ??= this.client
      .expect({ method: 'GET', key: '', query: { versioning: '' } }, [200])
      .then((response) => xmlValue(response.body.toString('utf8'), 'Status') === 'Enabled');
    return this.#versioning;
  }

  /** The Object Lock retention of the object's current version, when it lasts beyond now. */
  async retainedUntil(name: string): Promise<number | null> {
    const response = await this.client.expect({ method: 'HEAD', key: this.#key(name) }, [200, 404]);
    const until = Date.parse(response.headers.get('x-amz-object-lock-retain-until-date') ?? '');
    return response.status === 200 && Number.isFinite(until) && until > Date.now() ? until : null;
  }

  async delete(name: string): Promise<void> {
    await this.client.expect({ method: 'DELETE', key: this.#key(name) }, [200, 204, 404]);
  }

  async list(prefix: string): Promise<string[]> {
    return (await this.listSizes(prefix)).map((object) => object.name);
  }

  /** Every name under `prefix` with its size, from the same listing requests (no HEAD per object). */
  async listSizes(prefix: string): Promise<{ name: string; size: number }[]> {
    return this.listVersions(prefix);
  }

  /** Every name under `prefix` with its size and version (the ETag: it changes whenever the object is written). */
  async listVersions(prefix: string): Promise<ListedFile[]> {
    const objects: ListedFile[] = [];
    let token = '';
    do {
      const query: Record<string, string> = {
        'list-type': '2',
        prefix: this.#key(prefix),
        'max-keys': String(this.#listPageSize),
      };
      if (token) query['continuation-token'] = token;
      const response = await this.client.expect({ method: 'GET', key: '', query }, [200]);
      const xml = response.body.toString('utf8');
      for (const entry of xmlValues(xml, 'Contents', true)) {
        objects.push({
          name: xmlValue(entry, 'Key').slice(this.#prefix.length),
          size: Number(xmlValue(entry, 'Size')),
          version: xmlValue(entry, 'ETag').replace(/"/g, ''),
        });
      }
      token = xmlValue(xml, 'IsTruncated') === 'true' ? xmlValue(xml, 'NextContinuationToken') : '';
    } while (token);
    return objects;
  }

  async size(name: string): Promise<number | null> {
    const response = await this.client.expect({ method: 'HEAD', key: this.#key(name) }, [200, 404]);
    if (response.status === 404) return null;
    return Number(response.headers.get('content-length'));
  }

  async modifiedAt(name: string): Promise<number | null> {
    const response = await this.client.expect({ method: 'HEAD', key: this.#key(name) }, [200, 404]);
    if (response.status === 404) return null;
    const stamp = Date.parse(response.headers.get('last-modified') ?? '');
    return Number.isNaN(stamp) ? null : stamp;
  }

  /** An object store has no directory to lose: the repository checks that its config is still there. */
  async ensureHeld(): Promise<void> {}

  async close(): Promise<void> {}

  /** Creates the bucket when it does not exist yet (init does, as restic's does); an existing one is kept. */
  async ensureBucket(): Promise<void> {
    const probe = await this.client.send({ method: 'HEAD', key: '' });
    if (probe.status === 200) return;
    if (probe.status !== 404) {
      throw new Error(
        `bucket ${this.client.location.bucket} at ${this.client.location.endpoint} answered ${probe.status}`,
      );
    }
    await this.client.expect({ method: 'PUT', key: '' }, [200, 409]);
  }

  async #multipart(key: string, parts: readonly Buffer[], total: number): Promise<void> {
    const started = await this.client.expect({ method: 'POST', key, query: { uploads: '' } }, [200]);
    const uploadId = xmlValue(started.body.toString('utf8'), 'UploadId');
    if (!uploadId) throw new Error(`the store started no multipart upload for ${key}`);
    try {
      const pieces = slices(parts, total, this.#upload.partSize);
      const etags: string[] = new Array(pieces.length);
      let next = 0;
      const worker = async () => {
        while (next < pieces.length) {
          const index = next++;
          const response: S3Response = await this.client.expect(
            {
              method: 'PUT',
              key,
              query: { partNumber: String(index + 1), uploadId },
              body: pieces[index] as Buffer[],
            },
            [200],
          );
          etags[index] = response.headers.get('etag') ?? '';
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.#upload.partsInFlight, pieces.length) }, worker));
      const manifest = `<CompleteMultipartUpload>${etags
        .map(
          (etag, index) =>
            `<Part><PartNumber>${index + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`,
        )
        .join('')}</CompleteMultipartUpload>`;
      const completed = await this.client.expect(
        { method: 'POST', key, query: { uploadId }, body: Buffer.from(manifest) },
        [200],
      );
      // S3 may answer 200 and put the failure in the body.
      const failure = xmlValue(completed.body.toString('utf8'), 'Code');
      if (failure) throw new Error(`the store did not complete the upload of ${key}: ${failure}`);
    } catch (error) {
      await this.client.send({ method: 'DELETE', key, query: { uploadId } }).catch(() => undefined);
      throw error;
    }
  }
}

function missing(name: string): Error {
  return Object.assign(new Error(`${name} does not exist`), { code: 'ENOENT' });
}

/** Cuts a list of buffers into pieces of `size` bytes (the last shorter), as views, without copying. */
function slices(parts: readonly Buffer[], total: number, size: number): Buffer[][] {
  const pieces: Buffer[][] = [];
  let piece: Buffer[] = [];
  let room = size;
  for (const part of parts) {
    let offset = 0;
    while (offset < part.length) {
      const take = Math.min(room, part.length - offset);
      piece.push(part.subarray(offset, offset + take));
      offset += take;
      room -= take;
      if (room === 0) {
        pieces.push(piece);
        piece = [];
        room = size;
      }
    }
  }
  if (piece.length > 0 || total === 0) pieces.push(piece);
  return pieces;
}

function escapeXml(text: string): string {
  return text.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] as string,
  );
}
