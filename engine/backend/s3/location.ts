// Where an S3 repository lives: `s3:https://host[:port]/bucket[/prefix]` (path-style addressing, what Ceph,
// MinIO and Garage serve by default) or `s3:https://bucket.s3.region.amazonaws.com[/prefix]` (virtual-host
// style, AWS's own). The location a user sees never carries credentials.

export interface S3Location {
  /** The endpoint's origin, e.g. `https://s3.example.com:7480`. */
  endpoint: string;
  bucket: string;
  /** Key prefix inside the bucket, '' or ending in '/'. */
  prefix: string;
  /** True when the bucket is part of the host name rather than the path. */
  virtualHost: boolean;
  /** The signing region: from the host name where AWS names it, else DISKLINE_S3_REGION or us-east-1. */
  region: string;
}

export class S3LocationError extends Error {}

export function isS3Location(location: string): boolean {
  return location.startsWith('s3:');
}

/** Parses `s3:…`; throws S3LocationError with what is wrong and the form expected. */
export function parseS3Location(location: string, env: NodeJS.ProcessEnv = process.env): S3Location {
  const form = 's3:https://host/bucket/prefix (or s3:https://bucket.s3.region.amazonaws.com/prefix)';
  if (!isS3Location(location))
    throw new S3LocationError(`'${location}' is not an S3 location: expected ${form}`);
  let url: URL;
  try {
    url = new URL(location.slice(3));
  } catch {
    throw new S3LocationError(`'${location}' is not an S3 location: expected ${form}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new S3LocationError(`'${location}': the endpoint must be http or https, not ${url.protocol}`);
  }
  if (url.username || url.password) {
    throw new S3LocationError(
      `'${redact(location)}': credentials do not belong in a repository location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a credentials file`,
    );
  }
  if (url.search || url.hash)
    throw new S3LocationError(`'${location}': a repository location takes no query or fragment`);
  const segments = url.pathname.split('/').filter((segment) => segment !== '');
  const aws = url.hostname.match(/^(?:(.+)\.)?s3[.-]([a-z0-9-]+)\.amazonaws\.com$/);
  const virtualBucket = aws?.[1];
  let bucket: string;
  let prefixSegments: string[];
  if (virtualBucket) {
    bucket = virtualBucket;
    prefixSegments = segments;
  } else {
    if (segments.length === 0) throw new S3LocationError(`'${location}' names no bucket: expected ${form}`);
    bucket = decodeURIComponent(segments[0] as string);
    prefixSegments = segments.slice(1);
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new S3LocationError(`'${location}': '${bucket}' is not a valid bucket name`);
  }
  const prefix = prefixSegments.map((segment) => decodeURIComponent(segment)).join('/');
  return {
    endpoint: url.origin,
    bucket,
    prefix: prefix ? `${prefix}/` : '',
    virtualHost: Boolean(virtualBucket),
    region:
      aws?.[2] && aws[2] !== 'external-1' ? aws[2] : env.DISKLINE_S3_REGION || env.AWS_REGION || 'us-east-1',
  };
}

/** The location as shown to a user: never with credentials, even if someone wrote them in. */
export function redact(location: string): string {
  return location.replace(/\/\/[^/@]*@/, '//');
}
