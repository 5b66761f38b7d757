// A describe block of command-line tests against a real S3 store: before its tests a store and a temporary
// folder are started, after them both are gone; `env` lets the command line reach the store and keeps its
// engine state in the folder.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { type S3Store, startS3Store } from '../../testing/s3-store.ts';
import { type CliRun, runCli } from './run-cli.ts';

export interface S3CliSuite {
  /** Set once the suite's `before` has run. */
  readonly store: S3Store;
  readonly dir: string;
  /** The store's credentials, DISKLINE_STATE_DIR under `dir`, and the extra variables the suite was made with. */
  readonly env: Record<string, string>;
  /** Runs the command line with `env` (and `extraEnv` over it); fails the test unless it exits 0. */
  ok(args: string[], extraEnv?: Record<string, string>): Promise<CliRun>;
}

/** Call inside a `describe`: registers the suite's before and after hooks. */
export function s3CliSuite(tempPrefix: string, extraEnv: Record<string, string> = {}): S3CliSuite {
  let store: S3Store | undefined;
  let dir: string | undefined;
  let env: Record<string, string> = {};
  before(async () => {
    store = await startS3Store();
    dir = await mkdtemp(join(tmpdir(), tempPrefix));
    env = {
      AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
      DISKLINE_STATE_DIR: join(dir, 'state'),
      ...extraEnv,
    };
  });
  after(async () => {
    await store?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    get store() {
      if (!store) throw new Error('the S3 store is not started yet (use it inside a test)');
      return store;
    },
    get dir() {
      if (!dir) throw new Error('the temporary folder is not made yet (use it inside a test)');
      return dir;
    },
    get env() {
      return env;
    },
    async ok(args, more = {}) {
      const run = await runCli(args, { ...env, ...more });
      assert.equal(run.status, 0, `diskline ${args.join(' ')}: ${run.stderr}`);
      return run;
    },
  };
}
