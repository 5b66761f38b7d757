// The engine API: one request/response pair per method and a stream of events, the same over the
// unix socket, the WebSocket of `diskline serve` and the Electron preload bridge.
import { z } from 'zod';
import {
  ContainerSpecSchema,
  DriveSchema,
  JobSchema,
  PlanSchema,
  PointSummarySchema,
  RetentionSchema,
} from './model.ts';
import { DiskProtectionSchema } from './protection.ts';
import { DrillBootSchema, FitPlanSchema, RestoreFitParamsSchema } from './restore-plan.ts';

export { CellState, MAX_MESSAGE_BYTES } from './constants.ts';

const repoRef = z.object({ repo: z.string().min(1) });

/** What the engine found at an S3 location (the add-repository form's connection test); never a secret. */
export const S3ConnectionReportSchema = z.object({
  ok: z.boolean(),
  location: z.string(),
  reachable: z.boolean(),
  authorized: z.boolean(),
  bucketExists: z.boolean(),
  repositoryFound: z.boolean(),
  prefixHoldsOtherObjects: z.boolean(),
  objectLock: z.object({ enabled: z.boolean(), mode: z.string().nullable(), days: z.number().nullable() }),
  problem: z.string().nullable(),
});
export type S3ConnectionReport = z.output<typeof S3ConnectionReportSchema>;
const pointRef = z.object({ repo: z.string().min(1), point: z.string().min(1) });

/** method name → [params schema, result schema]. */
export const methods = {
  'engine.status': [
    z.object({}),
    z.object({
      version: z.string(),
      privileged: z.boolean(),
      schedulesPaused: z.boolean(),
      nextRun: z.string().nullable(),
      /** The repository used when the user names none (`diskline serve --repo R`). */
      defaultRepo: z.string().nullable().optional(),
      /** Repositories known by name in the engine's config. */
      repositories: z.array(z.object({ name: z.string(), path: z.string() })).optional(),
    }),
  ],
  'drives.list': [z.object({}), z.array(DriveSchema)],
  'points.list': [repoRef, z.array(PointSummarySchema)],
  'repo.init': [repoRef.extend({ encrypted: z.boolean().default(true) }), z.object({ repo: z.string() })],
  'backup.start': [
    z.object({
      source: z.string().min(1),
      repo: z.string().min(1),
      container: ContainerSpecSchema.optional(),
      /** Attached volumes: shell commands run before the freeze and after the thaw (docs/consistent-points.md). */
      preHook: z.string().min(1).optional(),
      postHook: z.string().min(1).optional(),
      /** Start afresh: an interrupted backup of this source is not taken over (`backup --no-resume`). */
      noResume: z.boolean().optional(),
      /** Refuse a source whose used map cannot be trusted instead of copying it whole (docs/used-block-maps.md). */
      strict: z.boolean().optional(),
      /** Back up a device in use without the tap anyway (the point is recorded crash-consistent). */
      allowInconsistent: z.boolean().default(false),
    }),
    JobSchema,
  ],
  /** Says exactly what a restore would overwrite, and the token that confirms this very target. */
  'restore.preview': [
    pointRef.extend({ to: z.string().min(1) }).merge(RestoreFitParamsSchema),
    z.object({
      target: z.string(),
      targetKind: z.enum(['image', 'device']),
      targetSize: z.number(),
      targetDescription: z.string(),
      overwrites: z.array(z.string()),
      /** The typed confirmation a whole device needs (its name); null for an image file. */
      typedConfirmation: z.string().nullable(),
      confirmToken: z.string(),
      refusal: z.string().nullable(),
      /** The layout written onto a target of another size (null when it could not be read). */
      plan: FitPlanSchema.nullable().optional(),
    }),
  ],
  'restore.start': [
    pointRef
      .extend({ to: z.string().min(1), confirmToken: z.string(), instant: z.boolean().default(false) })
      .merge(RestoreFitParamsSchema),
    JobSchema,
  ],
  'verify.start': [
    repoRef.extend({
      readData: z.boolean().default(false),
      /** Read the data of a sample of the packs only: `N/M` (the N-th of M parts) or `P%` (verify.ts). */
      readDataSubset: z
        .string()
        .regex(/^(\d+\/\d+|\d+(\.\d+)?%)$/)
        .optional(),
    }),
    JobSchema,
  ],
  'prune.start': [
    repoRef.extend({ retention: RetentionSchema, dryRun: z.boolean().default(false) }),
    JobSchema,
  ],
  /** Checks each file system of the point restored; with `boot`, also boots it in a virtual machine. */
  'drill.start': [pointRef.extend({ boot: DrillBootSchema.optional() }), JobSchema],
  'mount.start': [pointRef.extend({ dir: z.string().optional() }), z.object({ path: z.string() })],
  'mount.stop': [z.object({ path: z.string() }), z.object({})],
  /**
   * Serves a disk or image through the tap (a loop device the user mounts instead of the disk), so backups of it
   * are consistent while it is in use. Kept across engine restarts until volumes.detach.
   */
  'volumes.attach': [
    z.object({ source: z.string().min(1) }),
    z.object({ source: z.string(), loopDevice: z.string(), notes: z.array(z.string()) }),
  ],
  /** Stops serving a volume; refused while its loop device is mounted. */
  'volumes.detach': [z.object({ source: z.string().min(1) }), z.object({})],
  'jobs.list': [z.object({}), z.array(JobSchema)],
  'jobs.cancel': [z.object({ id: z.string() }), z.object({})],
  'plans.list': [z.object({}), z.array(PlanSchema)],
  'plans.save': [PlanSchema.omit({ lastRun: true, nextRun: true, owner: true }), PlanSchema],
  'plans.delete': [z.object({ id: z.string() }), z.object({})],
  'plans.runNow': [z.object({ id: z.string() }), JobSchema],
  'schedules.setPaused': [z.object({ paused: z.boolean() }), z.object({ paused: z.boolean() })],
  /** Starts the event stream of block-map cells for a backup job (a 'blockmap' event with the full map first). */
  'blockmap.subscribe': [
    z.object({
      jobId: z.string(),
      cells: z
        .number()
        .int()
        .min(1)
        .max(1 << 20),
    }),
    z.object({}),
  ],
  /** Copies points into another repository, deduplicated against it (`diskline copy`). */
  'copy.start': [
    z.object({
      from: z.string().min(1),
      to: z.string().min(1),
      /** Point ids, unique prefixes or 'latest', as in the source. */
      points: z.array(z.string().min(1)).min(1),
    }),
    JobSchema,
  ],
  /** Read-only test of an S3 location; keys given here are used for this test only, never stored. */
  'repo.checkS3': [
    z.object({
      location: z.string().startsWith('s3:'),
      accessKeyId: z.string().min(1).optional(),
      secretAccessKey: z.string().min(1).optional(),
    }),
    S3ConnectionReportSchema,
  ],
  /** How each disk (or just `device`) is protected while in use, and what a restart will change. */
  'protection.list': [z.object({ device: z.string().min(1).optional() }), z.array(DiskProtectionSchema)],
  /**
   * Sets up device-mapper protection from the next restart on for a partition, or for every volume in use on a
   * disk. Changes how the machine boots, so `confirm` must name `device` again; refused with nothing changed.
   */
  'protection.protect': [
    z.object({
      device: z.string().min(1),
      confirm: z.string().optional(),
      /** Repositories besides the engine's own whose disks must not be protected (they would hold their own backups). */
      repos: z.array(z.string().min(1)).optional(),
      /** The copy-on-write store later backups use, when a file or partition: refused on the protected volume. */
      store: z.string().min(1).optional(),
    }),
    DiskProtectionSchema,
  ],
  /** Removes a partition (or every one of a disk) from the boot setup, from the next restart on. */
  'protection.unprotect': [
    z.object({ device: z.string().min(1), confirm: z.string().optional() }),
    DiskProtectionSchema,
  ],
} as const;

export type MethodName = keyof typeof methods;
export type Params<M extends MethodName> = z.input<(typeof methods)[M][0]>;
export type Result<M extends MethodName> = z.output<(typeof methods)[M][1]>;

export const eventSchemas = {
  'job.updated': JobSchema,
  'points.changed': z.object({ repo: z.string() }),
  'plans.changed': z.object({}),
  'plan.ran': z.object({
    planId: z.string(),
    name: z.string(),
    ok: z.boolean(),
    message: z.string(),
    time: z.string(),
  }),
  /** Full map when `full`, otherwise changed cells as flat [cellIndex, state, cellIndex, state, ...]. */
  blockmap: z.object({
    jobId: z.string(),
    cellCount: z.number(),
    unitsPerCell: z.number(),
    full: z.boolean(),
    /** full: one state per cell, base64 of a byte array. */
    cells: z.string().optional(),
    changes: z.array(z.number()).optional(),
  }),
  'drives.changed': z.object({}),
} as const;
export type EventName = keyof typeof eventSchemas;
export type EventData<E extends EventName> = z.output<(typeof eventSchemas)[E]>;

export const RequestSchema = z.object({
  type: z.literal('request'),
  id: z.number().int(),
  method: z.string(),
  params: z.unknown(),
});
export type Request = z.infer<typeof RequestSchema>;

export type ErrorCode =
  | 'bad-request'
  | 'unknown-method'
  | 'not-found'
  | 'refused'
  | 'busy'
  | 'failed'
  | 'forbidden'
  | 'damaged';
export type Response =
  | { type: 'response'; id: number; ok: true; result: unknown }
  | { type: 'response'; id: number; ok: false; error: { code: ErrorCode; message: string } };
export type EventMessage = { type: 'event'; event: EventName; data: unknown };
export type ServerMessage = Response | EventMessage;

/** The one client interface both transports implement (Electron bridge, WebSocket). */
export interface EngineClient {
  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>>;
  /** Returns the function that unsubscribes. */
  on<E extends EventName>(event: E, listener: (data: EventData<E>) => void): () => void;
}
