// The engine's data as every client sees it: drives, restore points, jobs, plans. Runtime-neutral
// (no Node, no DOM) so the engine, the renderer and the Electron shell share one definition.
import { z } from 'zod';

export const PartitionSchema = z.object({
  index: z.number().int(),
  start: z.number(),
  size: z.number(),
  type: z.string(),
  filesystem: z.string().nullable(),
  blockSize: z.number(),
  usedBytes: z.number(),
});
export type Partition = z.infer<typeof PartitionSchema>;

export const DriveSchema = z.object({
  device: z.string(),
  description: z.string(),
  size: z.number(),
  isSystem: z.boolean(),
  isRemovable: z.boolean(),
  mountpoints: z.array(z.string()),
  partitionTable: z.enum(['gpt', 'mbr', 'none']).nullable(),
  partitions: z.array(PartitionSchema),
  /** Set when the drive is served through the tap (attached), e.g. /dev/loop3. */
  attachedAs: z.string().nullable().optional(),
});
export type Drive = z.infer<typeof DriveSchema>;

export const ConsistencySchema = z.enum(['frozen', 'crash-consistent', 'offline']);
export type Consistency = z.infer<typeof ConsistencySchema>;

export const PointSummarySchema = z.object({
  id: z.string(),
  repo: z.string(),
  time: z.string(),
  source: z.string(),
  sourceSize: z.number(),
  consistency: ConsistencySchema,
  parent: z.string().nullable(),
  /** Bytes of the source captured (used bytes). */
  usedBytes: z.number(),
  /** Bytes that differ from the parent point. */
  changedBytes: z.number(),
  /** Bytes this point added to the repository after dedup and compression. */
  storedBytes: z.number(),
  /** A point whose backup did not finish: listed so it can be resumed, never restored. */
  complete: z.boolean(),
  verify: z.enum(['unverified', 'ok', 'damaged']).default('unverified'),
  drill: z.object({ time: z.string(), ok: z.boolean(), detail: z.string() }).nullable().default(null),
});
export type PointSummary = z.infer<typeof PointSummarySchema>;

export const RetentionSchema = z.object({
  keepLast: z.number().int().nonnegative().optional(),
  keepHourly: z.number().int().nonnegative().optional(),
  keepDaily: z.number().int().nonnegative().optional(),
  keepWeekly: z.number().int().nonnegative().optional(),
  keepMonthly: z.number().int().nonnegative().optional(),
  keepYearly: z.number().int().nonnegative().optional(),
});
export type Retention = z.infer<typeof RetentionSchema>;

export const ContainerSpecSchema = z.object({
  kind: z.enum(['memory', 'file', 'device']),
  /** For file and device containers. */
  path: z.string().optional(),
  /** Most bytes it may hold; omitted: 64 MiB for memory and file, the whole partition for a device. */
  capacityBytes: z.number().positive().optional(),
  /** A file container: bytes preallocated at once (it grows in steps up to capacityBytes); default: all. */
  initialBytes: z.number().positive().optional(),
});
export type ContainerSpec = z.infer<typeof ContainerSpecSchema>;

export const PlanSchema = z.object({
  id: z.string(),
  name: z.string(),
  source: z.string(),
  repo: z.string(),
  /** Cron expression with seconds, or a preset: '@hourly', 'daily 02:30', 'weekly mon 03:00'. */
  schedule: z.string().nullable(),
  retention: RetentionSchema,
  container: ContainerSpecSchema,
  /** Start every backup afresh instead of taking over an interrupted one (its units are read again). */
  noResume: z.boolean().optional(),
  enabled: z.boolean(),
  lastRun: z.object({ time: z.string(), ok: z.boolean(), message: z.string() }).nullable(),
  nextRun: z.string().nullable(),
  /** The uid that saved it (the plan runs with that user's rights); null or absent: root's. */
  owner: z.number().int().nullable().optional(),
});
export type Plan = z.infer<typeof PlanSchema>;

export const JobKindSchema = z.enum(['backup', 'restore', 'verify', 'prune', 'mount', 'drill', 'copy']);
export type JobKind = z.infer<typeof JobKindSchema>;

export const JobStateSchema = z.enum([
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled',
  'interrupted',
]);

export const ContainerStateSchema = z.object({
  usedBytes: z.number(),
  capacityBytes: z.number(),
  highWatermark: z.number(),
  lowWatermark: z.number(),
  /** 'throttled': writers delayed; 'suspended': writers held until the copier drains below low. */
  pressure: z.enum(['normal', 'throttled', 'suspended']),
});
export type ContainerState = z.infer<typeof ContainerStateSchema>;

export const JobSchema = z.object({
  id: z.string(),
  kind: JobKindSchema,
  state: JobStateSchema,
  title: z.string(),
  startedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  /** Bytes done and total for the job's main phase. */
  doneBytes: z.number(),
  totalBytes: z.number(),
  bytesPerSecond: z.number(),
  etaSeconds: z.number().nullable(),
  container: ContainerStateSchema.nullable(),
  /** Units per state, for a backup. */
  units: z
    .object({ free: z.number(), pending: z.number(), preserved: z.number(), copied: z.number() })
    .nullable(),
  unitSize: z.number().nullable(),
  error: z.string().nullable(),
  /** Why a failed job failed: damage found, refused for safety, bad input, or a plain failure. */
  failureKind: z.enum(['damage', 'refusal', 'usage', 'failure']).nullable().default(null),
  result: z.record(z.string(), z.unknown()).nullable(),
  /** The uid that started it (only it and root see it); null or absent: root's. */
  owner: z.number().int().nullable().optional(),
});
export type Job = z.infer<typeof JobSchema>;
