// Where the keys for an S3 repository come from, in the order the AWS tools use: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the shared credentials file
// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE or "default"). Keys are never logged
// and never stored in a repository or a point.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { S3Credentials } from './signer.ts';

export class S3CredentialsError extends Error {}

export function loadS3Credentials(env: NodeJS.ProcessEnv = process.env): S3Credentials {
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    return {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
    };
  }
  const file = env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME || homedir(), '.aws', 'credentials');
  const profile = env.AWS_PROFILE || 'default';
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new S3CredentialsError(
      'no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE names another file)',
    );
  }
  const section = parseIni(text)[profile];
  if (!section?.aws_access_key_id || !section.aws_secret_access_key) {
    throw new S3CredentialsError(`the credentials file has no keys for profile '${profile}'`);
  }
  return {
    accessKeyId: section.aws_access_key_id,
    secretAccessKey: section.aws_secret_access_key,
    sessionToken: section.aws_session_token || undefined,
  };
}

function parseIni(text: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let current: Record<string, string> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = line.match(/^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/);
    if (header) {
      current = sections[header[1] as string] ??= {};
      continue;
    }
    const pair = line.match(/^([^=]+?)\s*=\s*(.*)$/);
    if (pair && current) current[(pair[1] as string).toLowerCase()] = pair[2] as string;
  }
  return sections;
}
