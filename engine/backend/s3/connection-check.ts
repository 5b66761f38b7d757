// What the "add an S3 repository" form shows before anything is written: whether the endpoint answers, the keys
// are accepted, the bucket exists, a Diskline repository is already at the prefix (or the prefix is empty), and
// whether the bucket has Object Lock (S3ConnectionReport in protocol/messages.ts). Read-only: it never creates
// the bucket or writes an object.
import type { S3ConnectionReport } from '../../../protocol/messages.ts';
import { S3Backend } from './backend.ts';
import { S3RequestError, xmlValue } from './client.ts';
import { loadS3Credentials } from './credentials.ts';
import { parseS3Location, redact } from './location.ts';
import type { S3Credentials } from './signer.ts';

/** Checks a location with the given keys (else those of the environment or the credentials file). */
export async function checkS3Connection(
  location: string,
  credentials?: S3Credentials,
): Promise<S3ConnectionReport> {
  parseS3Location(location); // a malformed location is the caller's error, thrown as such
  let keys: S3Credentials;
  try {
    keys = credentials ?? loadS3Credentials();
  } catch (error) {
    return { ...emptyReport(redact(location)), problem: (error as Error).message };
  }
  const backend = new S3Backend(location, {
    credentials: keys,
    // A form waits for an answer: two tries, not ten with backoff.
    retry: {
      attempts: 2,
      baseDelayMs: 200,
      maxDelayMs: 1000,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      random: Math.random,
    },
    listPageSize: 2,
  });
  const report = emptyReport(backend.location);
  const bucket = backend.client.location.bucket;
  let probe: Awaited<ReturnType<typeof backend.client.send>>;
  try {
    probe = await backend.client.send({ method: 'HEAD', key: '' });
  } catch (error) {
    report.problem = `the store at ${backend.client.location.endpoint} does not answer: ${(error as Error).message}`;
    return report;
  }
  report.reachable = true;
  if (probe.status === 403 || probe.status === 401) {
    report.problem = `the store refused these keys for bucket ${bucket}: check the access key and secret`;
    return report;
  }
  report.authorized = true;
  if (probe.status === 404) {
    report.ok = true; // init creates the bucket
    return report;
  }
  report.bucketExists = true;
  try {
    const names = await backend.list('');
    report.repositoryFound = names.includes('config') || (await backend.size('config')) !== null;
    report.prefixHoldsOtherObjects = !report.repositoryFound && names.length > 0;
    const lock = await backend.client.send({ method: 'GET', key: '', query: { 'object-lock': '' } });
    if (lock.status === 200) {
      const xml = lock.body.toString('utf8');
      const days = Number(xmlValue(xml, 'Days') || Number.NaN);
      const years = Number(xmlValue(xml, 'Years') || Number.NaN);
      report.objectLock = {
        enabled: xmlValue(xml, 'ObjectLockEnabled') === 'Enabled',
        mode: xmlValue(xml, 'Mode') || null,
        days: Number.isFinite(days) ? days : Number.isFinite(years) ? years * 365 : null,
      };
    }
  } catch (error) {
    report.problem =
      error instanceof S3RequestError && error.status === 403
        ? `the keys may not list bucket ${bucket}: Diskline needs to list, read, write and delete under the prefix`
        : (error as Error).message;
    return report;
  }
  if (report.prefixHoldsOtherObjects) {
    report.problem = `objects that are not a Diskline repository are already at ${report.location}: choose another prefix`;
    return report;
  }
  report.ok = true;
  return report;
}

function emptyReport(location: string): S3ConnectionReport {
  return {
    ok: false,
    location,
    reachable: false,
    authorized: false,
    bucketExists: false,
    repositoryFound: false,
    prefixHoldsOtherObjects: false,
    objectLock: { enabled: false, mode: null, days: null },
    problem: null,
  };
}
