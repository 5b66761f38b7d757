// The options `restore` takes to fit a point onto a target of another size (--plan, --grow, --resize, --size,
// --new-identity), the plan printed for people or as JSON, and the fitted restore run in this process.

import { parseByteSize } from '../../protocol/byte-size.ts';
import type { FitPlanView } from '../../protocol/restore-plan.ts';
import { type BootReport, checkRestoredSystem, describeBootReport } from '../boot-check/check.ts';
import { describeFitPlan, type FitPlan } from '../partition/fit-layout.ts';
import type { Manifest } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import { restoreFitted } from '../restore-fit/fitted-restore.ts';
import { giveNewIdentity, type NewIdentityResult } from '../restore-fit/new-identity.ts';
import { formatBytes, progressLine } from './repository-access.ts';
import { ExitCode, UsageError } from './verb.ts';

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

/** Prints the plan; exit code 3 when the target cannot take the point. */
export function printPlan(plan: FitPlan | FitPlanView, json: boolean | undefined): number {
  if (json) process.stdout.write(`${JSON.stringify(plan)}\n`);
  else process.stdout.write(`${describeFitPlan(plan).join('\n')}\n`);
  return plan.refusal ? ExitCode.refused : ExitCode.ok;
}

/** --new-identity after a restore in this process: gives the target new identifiers and says which. */
export async function newIdentityInProcess(
  target: string,
  fit: RestoreFitParams,
  json: boolean | undefined,
): Promise<NewIdentityResult | null> {
  if (!fit.newIdentity) return null;
  const identity = await giveNewIdentity(target);
  if (!json) {
    for (const change of identity.changes)
      process.stderr.write(`  ${change.what}: ${change.from} -> ${change.to}\n`);
    for (const file of identity.fixedFiles) process.stderr.write(`  references fixed in ${file}\n`);
    for (const warning of identity.warnings) process.stderr.write(`warning: ${warning}\n`);
  }
  return identity;
}

/** The boot check after a restore in this process, printed (problems on stderr) unless --json; null when the
 * disk holds no system. */
export async function bootCheckInProcess(
  target: string,
  json: boolean | undefined,
): Promise<BootReport | null> {
  const report = await checkRestoredSystem(target);
  if (report && !json) {
    process.stderr.write(`boot check of ${target}:\n${describeBootReport(report).join('\n')}\n`);
    if (report.problems.some((p) => p.fix))
      process.stderr.write(`apply the safe fixes with: diskline boot-check ${target} --fix\n`);
  }
  return report;
}

export async function restoreFittedInProcess(
  repo: Repository,
  manifest: Manifest,
  target: string,
  plan: FitPlan,
  isDevice: boolean,
  json: boolean | undefined,
  fit: RestoreFitParams = {},
): Promise<number> {
  if (!json) {
    process.stderr.write(`restoring point ${manifest.id} (${manifest.time}) to ${target}, fitted:\n`);
    for (const line of describeFitPlan(plan)) process.stderr.write(`  ${line}\n`);
  }
  const progress = json ? null : progressLine('restore');
  const started = Date.now();
  let result: Awaited<ReturnType<typeof restoreFitted>>;
  try {
    result = await restoreFitted(repo, manifest, target, plan, {
      isDevice,
      onProgress: (p) => progress?.update(p.doneBytes, p.totalBytes),
    });
  } finally {
    progress?.end();
  }
  const identity = await newIdentityInProcess(target, fit, json);
  const bootCheck = await bootCheckInProcess(target, json);
  const seconds = (Date.now() - started) / 1000;
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ point: manifest.id, target, plan, ...result, seconds, ...(identity ? { identity } : {}), ...(bootCheck ? { bootCheck } : {}) })}\n`,
    );
  } else {
    for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
    process.stdout.write(
      `Restored point ${manifest.id} to ${target} (${plan.mode}): ${formatBytes(result.usedBytes)} used, ${formatBytes(result.writtenBytes)} written in ${seconds.toFixed(1)} s\n`,
    );
  }
  return ExitCode.ok;
}
