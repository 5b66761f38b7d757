// `diskline restore <point> --repo R --to T`: writes a restore point to an image file or a device — onto one of
// another size with a fitted layout (--plan shows it and changes nothing) — through the engine's restore job. The engine's preview says what the target is and refuses
// (mounted, attached, being backed up, too small) before a single byte is written; a device also needs --yes.
// With --instant the engine serves the target at once as a loop device while it fills (the daemon when it runs,
// else this command until the restore is complete and the loop device unmounted).
import { resolve } from 'node:path';
import { RefusalError, UsageError } from '../../../protocol/failure.ts';
import { followJob, openEngineClient, repoForEngine, requireSucceeded } from '../engine-jobs.ts';
import { formatBytes, repositoryHelp, repositoryOptions, requireRepo } from '../repository-access.ts';
import {
  describePlanOnStderr,
  describeRestoreOutcome,
  fitHelp,
  fitOptions,
  fitParams,
  printPlan,
} from '../restore-fit-options.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage:
    'restore <point> --repo R --to T [--plan] [--grow] [--resize N] [--size S] [--new-identity] [--instant] [--yes] [--json]',
  summary: 'Write a restore point to an image file or a device (smaller when the data fits, or bigger)',
  help:
    `${repositoryHelp}\n  --to T                 target: an image file (created or emptied) or a block device\n` +
    '  --yes                  confirm overwriting a device (its identity is printed)\n' +
    `${fitHelp}\n` +
    '  --instant              serve T at once as a loop device (usable while it fills); runs until done and unmounted\n' +
    '  --json                 print {point, target, writtenBytes, usedBytes, seconds} ({point, target, loopDevice} first with --instant)\n' +
    "  <point> may be an id, a unique prefix of one, or 'latest'",
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      ...repositoryOptions,
      to: { type: 'string' },
      yes: { type: 'boolean' },
      json: { type: 'boolean' },
      instant: { type: 'boolean' },
      ...fitOptions,
    });
    const fit = fitParams(values);
    if (values.instant && (fit.newIdentity || fit.grow || fit.resize))
      throw new UsageError(
        '--instant writes the layout as it is: it takes no --grow, --resize or --new-identity',
      );
    const [reference, ...extra] = positionals;
    if (!reference) throw new UsageError('which restore point? give its id (see diskline points)');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    if (!values.to) throw new UsageError('--to is required: the image file or device to restore to');
    const repo = repoForEngine(requireRepo(values));
    const target = resolve(values.to);
    const instant = values.instant === true;
    const client = await openEngineClient(values);
    try {
      const preview = await client.call('restore.preview', { repo, point: reference, to: target, ...fit });
      if (values.plan) return printPlan(preview.plan, target, values.json);
      if (preview.refusal) throw new RefusalError(preview.refusal);
      if (!values.json) {
        process.stderr.write(`target: ${preview.targetDescription}\n`);
        for (const item of preview.overwrites) process.stderr.write(`  overwrites ${item}\n`);
        describePlanOnStderr(preview.plan);
      }
      if (preview.targetKind === 'device' && !values.yes) {
        throw new RefusalError(
          `restoring point ${reference} to ${preview.targetDescription} overwrites that device; check it is the right one and add --yes`,
        );
      }
      let announced = false;
      const job = await followJob(
        client,
        () =>
          client.call('restore.start', {
            repo,
            point: reference,
            to: target,
            confirmToken: preview.confirmToken,
            instant,
            ...fit,
          }),
        values.json || instant ? null : 'restore',
        (update) => {
          // An instant restore is usable from the moment its loop device exists: say so once.
          const loopDevice = update.result?.loopDevice;
          if (!instant || announced || typeof loopDevice !== 'string') return;
          announced = true;
          const point = String(update.result?.point);
          if (values.json) process.stdout.write(`${JSON.stringify({ point, target, loopDevice })}\n`);
          else
            process.stdout.write(
              `${target} is being restored from point ${point} and is usable now as ${loopDevice}; it stays served until complete and unmounted\n`,
            );
        },
      );
      requireSucceeded(`restore to ${target}`, job);
      if (instant) {
        if (!values.json)
          process.stdout.write(`restore complete: ${target} holds point ${String(job.result?.point)}\n`);
        return;
      }
      const result = job.result ?? {};
      const seconds =
        job.startedAt && job.endedAt ? (Date.parse(job.endedAt) - Date.parse(job.startedAt)) / 1000 : 0;
      const summary = {
        point: String(result.point),
        target: String(result.target ?? target),
        writtenBytes: Number(result.writtenBytes ?? 0),
        usedBytes: Number(result.usedBytes ?? 0),
        seconds,
        ...(result.plan ? { plan: result.plan } : {}),
        ...(result.identity ? { identity: result.identity } : {}),
        ...(result.bootCheck ? { bootCheck: result.bootCheck } : {}),
      };
      if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else describeRestoreOutcome(result);
      if (!values.json)
        process.stdout.write(
          `Restored point ${summary.point} to ${summary.target}: ${formatBytes(summary.usedBytes)} used, ${formatBytes(summary.writtenBytes)} written in ${seconds.toFixed(1)} s\n`,
        );
    } finally {
      await client.close();
    }
  },
};
