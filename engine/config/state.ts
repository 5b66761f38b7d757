// The engine's state on disk (DISKLINE_STATE_DIR): named repositories, image files registered as drives,
// uids allowed on the socket, plans, attached volumes and the job records that let a restarted daemon
// report what an earlier run left unfinished. Every file is JSON, validated on read, written atomically.
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { JobSchema, PlanSchema } from '../../protocol/model.ts';
import { writeFileAtomic } from './atomic-file.ts';

export const ConfigSchema = z.object({
  /** name → repository location (a directory). */
  repositories: z.record(z.string(), z.string()).default({}),
  /** The repository used when a request names none, e.g. `diskline serve --repo R`. */
  defaultRepo: z.string().nullable().default(null),
  /** Image files offered as drives (sources and restore targets) besides the machine's disks. */
  images: z.array(z.string()).default([]),
  /** Non-root uids allowed to talk to the daemon's socket. */
  allowedUids: z.array(z.number().int()).default([]),
  /** Block devices shared with a group (device path → group name): its members may back up and restore them. */
  deviceGroups: z.record(z.string(), z.string()).default({}),
  schedulesPaused: z.boolean().default(false),
  /** Volumes served through the tap, re-attached when the daemon starts. */
  attached: z
    .array(
      z.object({
        source: z.string(),
        container: z.record(z.string(), z.unknown()).nullable().default(null),
        /** The uid that attached it; null: root. */
        owner: z.number().int().nullable().default(null),
      }),
    )
    .default([]),
});
export type Config = z.infer<typeof ConfigSchema>;

const PlansSchema = z.array(PlanSchema);

/** What the engine learned about restore points by checking them (verify, restore drill), per repository. */
export const PointCheckSchema = z.object({
  verify: z.enum(['ok', 'damaged']).optional(),
  drill: z.object({ time: z.string(), ok: z.boolean(), detail: z.string() }).optional(),
});
const ChecksSchema = z.record(z.string(), z.record(z.string(), PointCheckSchema));
const JobsSchema = z.array(JobSchema);

/** Where state lives: DISKLINE_STATE_DIR, else /var/lib/diskline for root, else the user's state dir. */
export function defaultStateDir(): string {
  if (process.env.DISKLINE_STATE_DIR) return process.env.DISKLINE_STATE_DIR;
  if (process.getuid?.() === 0) return '/var/lib/diskline';
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'diskline');
}

async function readJson<T>(path: string, schema: z.ZodType<T>, empty: unknown): Promise<T> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return schema.parse(empty);
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `State file ${path} is not valid JSON (${(error as Error).message}); fix or remove it and start again.`,
    );
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new Error(`State file ${path} has unexpected content: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  return parsed.data;
}

/** Holds the state in memory and writes each part back atomically when it changes; writes are serialized. */
export class StateStore {
  readonly dir: string;
  config: Config = ConfigSchema.parse({});
  plans: z.infer<typeof PlansSchema> = [];
  jobs: z.infer<typeof JobsSchema> = [];
  /** repository path → point id → what checks found. */
  checks: z.infer<typeof ChecksSchema> = {};
  #writes: Promise<void> = Promise.resolve();
  /** Whether job records are written to disk; a one-shot engine that only borrows the state keeps them in memory. */
  readonly persistJobs: boolean;

  constructor(dir: string, options: { persistJobs?: boolean } = {}) {
    this.dir = dir;
    this.persistJobs = options.persistJobs ?? true;
  }

  static async open(dir: string, options: { persistJobs?: boolean } = {}): Promise<StateStore> {
    const store = new StateStore(dir, options);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    store.config = await readJson(join(dir, 'config.json'), ConfigSchema, {});
    store.plans = await readJson(join(dir, 'plans.json'), PlansSchema, []);
    store.jobs = await readJson(join(dir, 'jobs.json'), JobsSchema, []);
    store.checks = await readJson(join(dir, 'checks.json'), ChecksSchema, {});
    return store;
  }

  #enqueue(file: string, value: unknown): Promise<void> {
    const content = `${JSON.stringify(value, null, 2)}\n`;
    const write = this.#writes.then(() => writeFileAtomic(join(this.dir, file), content));
    this.#writes = write.catch(() => {});
    return write;
  }

  saveConfig(): Promise<void> {
    return this.#enqueue('config.json', this.config);
  }
  savePlans(): Promise<void> {
    return this.#enqueue('plans.json', this.plans);
  }
  saveJobs(): Promise<void> {
    if (!this.persistJobs) return Promise.resolve();
    return this.#enqueue('jobs.json', this.jobs);
  }
  saveChecks(): Promise<void> {
    return this.#enqueue('checks.json', this.checks);
  }
  /** Resolves when every write queued so far is on disk. */
  flush(): Promise<void> {
    return this.#writes;
  }
}
