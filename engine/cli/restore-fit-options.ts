// The options `restore` takes to fit a point onto a target of another size (--plan, --grow, --resize, --size,
// --new-identity), the plan printed for people or as JSON, and what the restore job reports after it: the new
// identifiers and the boot check of a restored system disk.

import { parseByteSize } from '../../protocol/byte-size.ts';
import { RefusalError, UsageError } from '../../protocol/failure.ts';
import type { FitPlanView } from '../../protocol/restore-plan.ts';
import type { BootReport } from '../boot-check/check.ts';
import { describeBootReport } from '../boot-check/check.ts';
import { describeFitPlan } from '../partition/fit-layout.ts';

export const fitOptions = {
  plan: { type: 'boolean' },
  grow: { type: 'boolean' },
  resize: { type: 'string' },
  size: { type: 'string' },
  'new-identity': { type: 'boolean' },
} as const;

export const fitHelp = [
  '  --plan                 print the layout the restore would write onto T (JSON with --json); change nothing',
  '  --grow                 onto a bigger target: grow the last partition (or --resize N) and its file system',
  '  --resize N             the partition to shrink or grow instead of the last one',
  "  --size S               an image target's size (e.g. 2G); a device has its own",
  '  --new-identity         new disk/partition GUIDs and file-system UUIDs, and fstab/crypttab/GRUB fixed to match',
].join('\n');

export interface RestoreFitParams {
  grow?: boolean;
  resize?: number;
  targetSize?: number;
  newIdentity?: boolean;
}

export function fitParams(values: {
  grow?: boolean | undefined;
  resize?: string | undefined;
  size?: string | undefined;
  'new-identity'?: boolean | undefined;
}): RestoreFitParams {
  const params: RestoreFitParams = {};
  if (values.grow) params.grow = true;
  if (values['new-identity']) params.newIdentity = true;
  if (values.resize !== undefined) {
    const index = Number(values.resize);
    if (!Number.isInteger(index) || index < 1)
      throw new UsageError(`--resize takes a partition number, not '${values.resize}'`);
    params.resize = index;
  }
  if (values.size !== undefined) {
    const bytes = parseByteSize(values.size);
    if (!bytes || bytes % 512 !== 0)
      throw new UsageError(`--size takes a size in whole sectors such as 2G or 2048M, not '${values.size}'`);
    params.targetSize = bytes;
  }
  return params;
}

/** --plan: prints the plan; a plan the target cannot take is a refusal (exit 3), after it is printed. */
export function printPlan(
  plan: FitPlanView | null | undefined,
  target: string,
  json: boolean | undefined,
): void {
  if (!plan) throw new Error(`the engine could not read the point's layout to plan the restore to ${target}`);
  if (json) process.stdout.write(`${JSON.stringify(plan)}\n`);
  else process.stdout.write(`${describeFitPlan(plan).join('\n')}\n`);
  if (plan.refusal) throw new RefusalError(`${target} cannot take the point: ${plan.refusal.reason}`);
}

/** Before the confirmation: the layout a fitted restore writes, for the person about to confirm it. */
export function describePlanOnStderr(plan: FitPlanView | null | undefined): void {
  if (!plan || plan.mode === 'as-is') return;
  for (const line of describeFitPlan(plan)) process.stderr.write(`  ${line}\n`);
}

/** After a restore: the identifiers it changed and the boot check, as the job reported them. */
export function describeRestoreOutcome(result: Record<string, unknown>): void {
  const identity = result.identity as
    | { changes: { what: string; from: string; to: string }[]; fixedFiles: string[]; warnings: string[] }
    | undefined;
  if (identity) {
    for (const change of identity.changes)
      process.stderr.write(`  ${change.what}: ${change.from} -> ${change.to}\n`);
    for (const file of identity.fixedFiles) process.stderr.write(`  references fixed in ${file}\n`);
    for (const warning of identity.warnings) process.stderr.write(`warning: ${warning}\n`);
  }
  for (const warning of (result.warnings as string[] | undefined) ?? [])
    process.stderr.write(`warning: ${warning}\n`);
  const report = result.bootCheck as BootReport | undefined;
  if (report) {
    process.stderr.write(`boot check of ${report.disk}:\n${describeBootReport(report).join('\n')}\n`);
    if (report.problems.some((p) => p.fix))
      process.stderr.write(`apply the safe fixes with: diskline boot-check ${report.disk} --fix\n`);
  }
}
