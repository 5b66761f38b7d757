// The "add an S3 repository" form: endpoint, bucket and prefix make the location; a connection test (run by the
// engine, read-only) says whether the store answers, the keys work, the bucket exists and what is at the prefix
// before the location is added. Keys typed here are sent for the test only and never kept by the window; the
// engine's own keys (environment or credentials file) are used for backups.
import { useState } from 'react';
import type { S3ConnectionReport } from '../../../protocol/messages.ts';

export interface S3RepositoryFormProps {
  check(params: {
    location: string;
    accessKeyId?: string;
    secretAccessKey?: string;
  }): Promise<S3ConnectionReport | null>;
  onAdd(location: string): void;
}

/** `s3:https://host/bucket/prefix` from the form's fields, or null when one is missing or malformed. */
export function s3Location(endpoint: string, bucket: string, prefix: string): string | null {
  const origin = endpoint.trim().replace(/\/+$/, '');
  if (!/^https?:\/\/[^/\s]+$/.test(origin) || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket.trim()))
    return null;
  const path = prefix.trim().replace(/^\/+|\/+$/g, '');
  return `s3:${origin}/${bucket.trim()}${path ? `/${path}` : ''}`;
}

function describe(report: S3ConnectionReport): string {
  if (!report.ok) return report.problem ?? 'The store cannot be used.';
  const what = !report.bucketExists
    ? 'The bucket does not exist yet: creating the repository makes it.'
    : report.repositoryFound
      ? 'A Diskline repository is already here: adding it shows its points.'
      : 'The prefix is empty: create the repository after adding it.';
  const lock = report.objectLock.enabled
    ? ` Object Lock is on${report.objectLock.mode ? ` (${report.objectLock.mode.toLowerCase()}${report.objectLock.days ? `, ${report.objectLock.days} days` : ''})` : ''}: points are kept at least that long.`
    : '';
  return `Connected. ${what}${lock}`;
}

export function S3RepositoryForm({ check, onAdd }: S3RepositoryFormProps) {
  const [endpoint, setEndpoint] = useState('');
  const [bucket, setBucket] = useState('');
  const [prefix, setPrefix] = useState('');
  const [accessKeyId, setAccessKeyId] = useState('');
  const [secretAccessKey, setSecretAccessKey] = useState('');
  const [report, setReport] = useState<{ location: string; result: S3ConnectionReport } | null>(null);
  const [testing, setTesting] = useState(false);
  const location = s3Location(endpoint, bucket, prefix);
  const tested = report && report.location === location ? report.result : null;
  const test = async () => {
    if (!location) return;
    setTesting(true);
    try {
      const keys = accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : {};
      const result = await check({ location, ...keys });
      if (result) setReport({ location, result });
    } finally {
      setTesting(false);
    }
  };
  return (
    <form
      className="stack"
      aria-label="Add an S3 repository"
      onSubmit={(e) => {
        e.preventDefault();
        if (location && tested?.ok) {
          onAdd(location);
          setReport(null);
          setSecretAccessKey('');
        }
      }}
    >
      <input
        aria-label="Endpoint"
        value={endpoint}
        onChange={(e) => setEndpoint(e.target.value)}
        placeholder="https://s3.example.com"
      />
      <div className="row">
        <input
          className="grow"
          aria-label="Bucket"
          value={bucket}
          onChange={(e) => setBucket(e.target.value)}
          placeholder="bucket"
        />
        <input
          className="grow"
          aria-label="Prefix"
          value={prefix}
          onChange={(e) => setPrefix(e.target.value)}
          placeholder="prefix (e.g. laptop)"
        />
      </div>
      <div className="row">
        <input
          className="grow"
          aria-label="Access key (for the test only)"
          value={accessKeyId}
          onChange={(e) => setAccessKeyId(e.target.value)}
          autoComplete="off"
          placeholder="access key (optional)"
        />
        <input
          className="grow"
          type="password"
          aria-label="Secret key (for the test only)"
          value={secretAccessKey}
          onChange={(e) => setSecretAccessKey(e.target.value)}
          autoComplete="off"
          placeholder="secret key (optional)"
        />
      </div>
      <div className="row">
        <span className="mono grow small">{location ?? 'Endpoint and bucket make the location'}</span>
        <button type="button" disabled={!location || testing} onClick={() => void test()}>
          {testing ? 'Testing…' : 'Test connection'}
        </button>
        <button type="submit" disabled={!tested?.ok}>
          Add
        </button>
      </div>
      {tested && (
        <p role="status" className={tested.ok ? 'small' : 'small error'}>
          {describe(tested)}
        </p>
      )}
    </form>
  );
}
