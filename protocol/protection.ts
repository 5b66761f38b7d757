// How each disk can have consistent points while it is in use, as the engine reports it (protection.list) and
// as protect / unprotect answer: through the tap, through device-mapper, from the next restart on, not yet
// (and what to do), or not at all (why) — and what the next restart will change.
import { z } from 'zod';

export const ProtectionKindSchema = z.enum([
  'tap',
  'device-mapper',
  'needs-restart',
  'unprotected',
  'cannot',
]);
export type ProtectionKind = z.output<typeof ProtectionKindSchema>;

/** One volume (partition, or the whole disk when it has none). */
export const VolumeProtectionSchema = z.object({
  device: z.string(),
  kind: ProtectionKindSchema,
  detail: z.string(),
  inUse: z.boolean(),
  /** In the boot setup's list: protected from the next restart on, or still (unprotect would remove it). */
  protectedAtBoot: z.boolean(),
  /** What the next restart changes for this volume; null when nothing. */
  afterRestart: z.string().nullable(),
});
export type VolumeProtection = z.output<typeof VolumeProtectionSchema>;

export const DiskProtectionSchema = z.object({
  /** The disk or image as drives.list names it; protect / unprotect want exactly this name as confirmation. */
  disk: z.string(),
  kind: ProtectionKindSchema,
  /** Why the disk is in this state, and what the user can do. */
  detail: z.string(),
  /** What the next restart changes for the disk; null when nothing. */
  afterRestart: z.string().nullable(),
  /** protection.protect would change something: a volume in use that the boot setup can protect. */
  canProtect: z.boolean(),
  /** protection.unprotect would change something: a volume is in the boot setup. */
  canUnprotect: z.boolean(),
  volumes: z.array(VolumeProtectionSchema),
});
export type DiskProtection = z.output<typeof DiskProtectionSchema>;
