// AWS Signature Version 4 for S3 requests: what every S3-compatible store checks. The payload's SHA-256 is
// signed (x-amz-content-sha256), so the store itself refuses a body damaged on the way.
import { createHash, createHmac } from 'node:crypto';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface SignableRequest {
  method: string;
  /** The absolute URL, query included; its path is already percent-encoded by uriEncodePath. */
  url: URL;
  /** Header names in lower case. host, x-amz-date and x-amz-content-sha256 are added. */
  headers: Record<string, string>;
  payloadSha256: string;
}

export function sha256Hex(data: Buffer | string | readonly Buffer[]): string {
  const hash = createHash('sha256');
  if (Array.isArray(data)) for (const part of data) hash.update(part);
  else hash.update(data as Buffer | string);
  return hash.digest('hex');
}

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters, '/' kept only in paths. */
export function uriEncode(value: string, keepSlash = false): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** A signing key is valid for one day, region and service: keep the last one rather than four HMACs a request. */
export class Signer {
  readonly #credentials: S3Credentials;
  readonly #region: string;
  #cachedDay = '';
  #cachedKey: Buffer = Buffer.alloc(0);

  constructor(credentials: S3Credentials, region: string) {
    this.#credentials = credentials;
    this.#region = region;
  }

  /** Returns the headers to send: the request's own plus the date, payload hash, token and Authorization. */
  sign(request: SignableRequest, now: Date): Record<string, string> {
    const amzDate = now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = {
      ...request.headers,
      host: request.url.host,
      'x-amz-date': amzDate,
      'x-amz-content-sha256': request.payloadSha256,
    };
    if (this.#credentials.sessionToken) headers['x-amz-security-token'] = this.#credentials.sessionToken;
    const names = Object.keys(headers)
      .map((name) => name.toLowerCase())
      .sort();
    const canonicalHeaders = names
      .map((name) => `${name}:${String(headers[name]).trim().replace(/\s+/g, ' ')}\n`)
      .join('');
    const signedHeaders = names.join(';');
    const query = [...request.url.searchParams.entries()]
      .map(([key, value]) => [uriEncode(key), uriEncode(value)] as const)
      .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
      .map(([key, value]) => `${key}=${value}`)
      .join('&');
    const canonicalRequest = [
      request.method,
      request.url.pathname,
      query,
      canonicalHeaders,
      signedHeaders,
      request.payloadSha256,
    ].join('\n');
    const scope = `${day}/${this.#region}/s3/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
    const signature = createHmac('sha256', this.#signingKey(day)).update(stringToSign).digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${this.#credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    delete headers.host; // fetch sets Host itself from the URL
    return headers;
  }

  #signingKey(day: string): Buffer {
    if (day !== this.#cachedDay) {
      const kDate = createHmac('sha256', `AWS4${this.#credentials.secretAccessKey}`).update(day).digest();
      const kRegion = createHmac('sha256', kDate).update(this.#region).digest();
      const kService = createHmac('sha256', kRegion).update('s3').digest();
      this.#cachedKey = createHmac('sha256', kService).update('aws4_request').digest();
      this.#cachedDay = day;
    }
    return this.#cachedKey;
  }
}
