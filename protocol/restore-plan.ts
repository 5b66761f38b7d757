// The layout a restore writes onto a target of another size, as the engine plans it and the UI shows it before
// the typed confirmation: where each partition comes from and goes, which one is shrunk or grown and by what
// tool, and, when the target cannot take the point, why and how big a target would do.
import { z } from 'zod';

const placeSchema = z.object({ start: z.number(), size: z.number() });

export const PlannedPartitionSchema = z.object({
  index: z.number(),
  filesystem: z.string().nullable(),
  usedBytes: z.number(),
  from: placeSchema,
  to: placeSchema,
  change: z.enum(['kept', 'shrunk', 'grown', 'moved']),
  resizeWith: z.string().optional(),
});

export const FitPlanSchema = z.object({
  table: z.enum(['gpt', 'mbr', 'none']),
  sectorSize: z.number(),
  sourceSize: z.number(),
  targetSize: z.number(),
  /** as-is: written as it was; table-moved: partitions in place, the table fitted to the size; shrink; grow. */
  mode: z.enum(['as-is', 'table-moved', 'shrink', 'grow']),
  partitions: z.array(PlannedPartitionSchema),
  refusal: z.object({ reason: z.string(), neededBytes: z.number() }).nullable(),
  warnings: z.array(z.string()),
});

export type FitPlanView = z.infer<typeof FitPlanSchema>;

/** How a restore fits its target: the options `restore` takes (--grow, --resize, --size, --new-identity). */
export const RestoreFitParamsSchema = z.object({
  /** Onto a bigger target: grow the last (or chosen) partition and its file system to fill it. */
  grow: z.boolean().optional(),
  /** The partition (by number) to shrink or grow instead of the last one. */
  resize: z.number().int().positive().optional(),
  /** An image target's size in bytes (a device has its own). */
  targetSize: z.number().int().positive().optional(),
  /** New disk and partition GUIDs and file-system UUIDs, with the references to them fixed (a clone). */
  newIdentity: z.boolean().optional(),
});

/** The restore drill's boot proof: which firmwares, the console marker, a scratch disk of another size. */
export const DrillBootSchema = z.object({
  firmware: z.array(z.enum(['uefi', 'bios'])).optional(),
  /** Text the console shows once the system is up; default a login prompt. */
  marker: z.string().min(1).optional(),
  timeoutMs: z.number().int().positive().optional(),
  targetSize: z.number().int().positive().optional(),
  grow: z.boolean().optional(),
});
