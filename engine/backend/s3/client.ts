// Signed requests to one bucket, retried the way S3 asks clients to: on network errors, 5xx, 429 and SlowDown,
// with exponential backoff and full jitter, a body resent whole each time. Waiting goes through an injected
// sleep so tests drive it.
import { redact, type S3Location } from './location.ts';
import { type S3Credentials, Signer, sha256Hex, uriEncode } from './signer.ts';

export interface S3Request {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  /** The object key inside the bucket ('' for the bucket itself). */
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer | readonly Buffer[];
  /** A response body larger than this is not read: the result's body holds this many bytes plus one, at most. */
  maxBodyBytes?: number;
}

export interface S3Response {
  status: number;
  headers: Headers;
  body: Buffer;
}

export interface RetryPolicy {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  sleep(ms: number): Promise<void>;
  random(): number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 10,
  baseDelayMs: 100,
  maxDelayMs: 20_000,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** A request the store answered with an error it will not take back by retrying. */
export class S3RequestError extends Error {
  readonly status: number;
  readonly s3Code: string;
  constructor(message: string, status: number, s3Code: string) {
    super(message);
    this.status = status;
    this.s3Code = s3Code;
  }
}

const EMPTY_SHA256 = sha256Hex('');

export class S3Client {
  readonly location: S3Location;
  readonly #signer: Signer;
  readonly #retry: RetryPolicy;
  /** Requests sent, retries included: the cost a paid store bills. */
  requests = 0;

  constructor(location: S3Location, credentials: S3Credentials, retry: RetryPolicy = DEFAULT_RETRY) {
    this.location = location;
    this.#signer = new Signer(credentials, location.region);
    this.#retry = retry;
  }

  /** Sends the request, retrying what may succeed later; other error statuses are returned, not thrown. */
  async send(request: S3Request): Promise<S3Response> {
    const url = this.#url(request);
    const parts =
      request.body === undefined ? [] : Buffer.isBuffer(request.body) ? [request.body] : request.body;
    const payloadSha256 = parts.length === 0 ? EMPTY_SHA256 : sha256Hex(parts);
    const body =
      parts.length === 0 ? undefined : parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
    let lastFailure = '';
    for (let attempt = 0; attempt < this.#retry.attempts; attempt++) {
      if (attempt > 0) {
        const ceiling = Math.min(this.#retry.maxDelayMs, this.#retry.baseDelayMs * 2 ** (attempt - 1));
        await this.#retry.sleep(Math.floor(this.#retry.random() * ceiling));
      }
      const headers = this.#signer.sign(
        { method: request.method, url, headers: { ...(request.headers ?? {}) }, payloadSha256 },
        new Date(),
      );
      this.requests++;
      let response: Response;
      try {
        response = await fetch(url, { method: request.method, headers, body: body as BodyInit | undefined });
      } catch (error) {
        lastFailure = `the store did not answer (${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message})`;
        continue;
      }
      const responseBody =
        request.method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await response.arrayBuffer());
      if (retryable(response.status, responseBody)) {
        lastFailure = `the store answered ${response.status} ${errorCode(responseBody) || response.statusText}`;
        continue;
      }
      return { status: response.status, headers: response.headers, body: responseBody };
    }
    throw new S3RequestError(
      `${request.method} ${redact(this.#display(request.key))} failed after ${this.#retry.attempts} attempts: ${lastFailure}`,
      0,
      'RetriesExhausted',
    );
  }

  /** Like send, but any status outside `expected` is an error naming the object and the store's code. */
  async expect(request: S3Request, expected: readonly number[]): Promise<S3Response> {
    const response = await this.send(request);
    if (!expected.includes(response.status)) {
      const code = errorCode(response.body) || String(response.status);
      const message = xmlValue(response.body.toString('utf8'), 'Message');
      throw new S3RequestError(
        `${request.method} ${this.#display(request.key)}: the store answered ${response.status} ${code}${message ? ` (${message})` : ''}`,
        response.status,
        code,
      );
    }
    return response;
  }

  #display(key: string): string {
    return `s3:${this.location.endpoint}/${this.location.bucket}/${key}`;
  }

  #url(request: S3Request): URL {
    const { endpoint, bucket, virtualHost } = this.location;
    const path = virtualHost
      ? `/${uriEncode(request.key, true)}`
      : `/${bucket}/${uriEncode(request.key, true)}`;
    const url = new URL(path, endpoint);
    for (const [key, value] of Object.entries(request.query ?? {})) url.searchParams.set(key, value);
    // URLSearchParams encodes spaces as '+', which SigV4 does not: write the query as the signer canonicalises it.
    url.search = [...url.searchParams.entries()].map(([k, v]) => `${uriEncode(k)}=${uriEncode(v)}`).join('&');
    return url;
  }
}

function retryable(status: number, body: Buffer): boolean {
  if (status === 429 || status >= 500) return true;
  if (status === 400 && /<Code>(RequestTimeout|SlowDown)<\/Code>/.test(body.toString('utf8'))) return true;
  return false;
}

function errorCode(body: Buffer): string {
  return xmlValue(body.toString('utf8'), 'Code');
}

/** The text of the first <tag>…</tag>, XML entities decoded; S3's answers are flat enough for this. */
export function xmlValue(xml: string, tag: string): string {
  const match = xml.match(new RegExp(`<${tag}>([^<]*)</${tag}>`));
  return match ? decodeXml(match[1] as string) : '';
}

/** Every <tag>…</tag> text in order; with `raw`, the inner XML of each (elements holding elements), undecoded. */
export function xmlValues(xml: string, tag: string, raw = false): string[] {
  const pattern = raw ? `<${tag}>([\\s\\S]*?)</${tag}>` : `<${tag}>([^<]*)</${tag}>`;
  return [...xml.matchAll(new RegExp(pattern, 'g'))].map((match) =>
    raw ? (match[1] as string) : decodeXml(match[1] as string),
  );
}

function decodeXml(text: string): string {
  return text.replace(
    /&(lt|gt|amp|quot|apos|#(\d+)|#x([0-9a-fA-F]+));/g,
    (_, name: string, dec?: string, hex?: string) => {
      if (dec) return String.fromCodePoint(Number(dec));
      if (hex) return String.fromCodePoint(Number.parseInt(hex, 16));
      return { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }[name] as string;
    },
  );
}
