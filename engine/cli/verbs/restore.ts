// `diskline restore <point> --repo R --to T`: writes a restore point to an image file or a device of the same
// size or bigger. Every refusal (mounted, attached, being backed up, too small, a device without --yes) happens
// before a single byte is written.
import { readdir, readFile, realpath, stat, truncate } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { SocketClient } from '../../api/client.ts';
import { deviceUses } from '../../device/busy.ts';
import { openWriter } from '../../device/open.ts';
import { kernelName, parentDisk, sysfsSize } from '../../device/sysfs.ts';
import { planRestore, restoreTargetSize } from '../../jobs/restore-plan.ts';
import { runningBackups } from '../../repository/locks.ts';
import { checkChunksPresent, restorePoint } from '../../repository/restore.ts';
import {
  callFailure,
  connectDaemon,
  followJob,
  jobFailure,
  notePassphrase,
  repoForDaemon,
} from '../daemon-jobs.ts';
import {
  formatBytes,
  openRepository,
  progressLine,
  repositoryHelp,
  repositoryOptions,
  requireRepo,
} from '../repository-access.ts';
import {
  bootCheckInProcess,
  fitHelp,
  fitOptions,
  fitParams,
  newIdentityInProcess,
  printPlan,
  type RestoreFitParams,
  restoreFittedInProcess,
} from '../restore-fit-options.ts';
import { ExitCode, ExitError, parseVerbArgs, UsageError, type Verb } from '../verb.ts';

async function sysText(path: string): Promise<string | null> {
  const text = await readFile(path, 'utf8').catch(() => null);
  return text?.trim() || null;
}

/** Loop devices whose backing file is `file` (an image attached is an image possibly mounted or tapped). */
async function loopDevicesBackedBy(file: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir('/sys/class/block').catch(() => [] as string[])) {
    if (!/^loop\d+$/.test(name)) continue;
    const backing = await sysText(`/sys/class/block/${name}/loop/backing_file`);
    if (backing && (backing === file || backing.replace(/ \(deleted\)$/, '') === file))
      found.push(`/dev/${name}`);
  }
  return found;
}

const refuse = (message: string) => new ExitError(message, ExitCode.refused);

export const verb: Verb = {
  usage:
    'restore <point> --repo R --to T [--plan] [--grow] [--resize N] [--size S] [--new-identity] [--instant] [--yes] [--json]',
  summary: 'Write a restore point to an image file or a device (smaller when the data fits, or bigger)',
  help:
    `${repositoryHelp}\n  --to T                 target: an image file (created or emptied) or a block device\n` +
    '  --yes                  confirm overwriting a device (its identity is printed)\n' +
    `${fitHelp}\n` +
    '  --instant              serve T at once as a loop device (usable while it fills); runs until done and unmounted\n' +
    "  --json                 print {point, target, writtenBytes}\n  <point> may be an id, a unique prefix of one, or 'latest'",
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
    // --instant serves the target from this process until it is filled and unmounted, as it always has.
    const daemon = values.instant ? null : await connectDaemon();
    if (daemon) {
      try {
        return await restoreThroughDaemon(daemon, reference, values.to, requireRepo(values), {
          ...values,
          fit,
        });
      } finally {
        await daemon.close();
      }
    }
    const repo = await openRepository(values);
    try {
      const pointId = await repo.resolvePointId(reference);
      const manifest = await repo.loadManifest(pointId);
      if (!manifest.complete) {
        throw new ExitError(
          `restore point ${pointId} is incomplete (its backup was interrupted); run the backup again to finish it`,
          ExitCode.failed,
        );
      }
      // Missing or truncated packs are found before anything is written (or emptied).
      await checkChunksPresent(repo, manifest);
      const needed = manifest.source.size;
      const existing = await stat(values.to).catch(() => null);
      const target = existing ? await realpath(values.to) : values.to;
      const backedUp = (await runningBackups(repo.backend)).filter((b) => b.source === target);
      if (backedUp.length > 0)
        throw refuse(
          `refusing to restore to ${target}: it is being backed up right now (point ${backedUp[0]!.pointId})`,
        );
      const isDevice = existing?.isBlockDevice() ?? false;
      // The layout written onto this target (fitted when its size differs); --plan prints it and stops here.
      const plan = await planRestore(
        repo,
        pointId,
        await restoreTargetSize(target, needed, fit.targetSize),
        fit,
      );
      if (values.plan) return printPlan(plan, values.json);
      if (isDevice) {
        const name = await kernelName(target);
        const disk = await parentDisk(name);
        const size = (await sysfsSize(name)) ?? 0;
        const model = (await sysText(`/sys/class/block/${disk}/device/model`)) ?? 'unknown model';
        const serial = (await sysText(`/sys/class/block/${disk}/device/serial`)) ?? 'no serial';
        const identity = `${target} (${model}, ${serial}, ${formatBytes(size)})`;
        const uses = await deviceUses(target);
        if (uses.length > 0)
          throw refuse(
            `refusing to restore to ${identity}: it is in use (${uses.join('; ')}); unmount it first`,
          );
        if (plan.refusal) throw refuse(`refusing to restore to ${identity}: ${plan.refusal.reason}`);
        if (!values.yes) {
          throw refuse(
            `restoring point ${pointId} to ${identity} overwrites that device; check it is the right one and add --yes`,
          );
        }
      } else {
        if (existing && !existing.isFile())
          throw refuse(`refusing to restore to ${target}: it is neither an image file nor a block device`);
        const loops = existing ? await loopDevicesBackedBy(target) : [];
        if (loops.length > 0) {
          throw refuse(
            `refusing to restore to ${target}: the image is attached as ${loops.join(', ')} (it may be mounted); detach it first`,
          );
        }
      }
      if (plan.refusal) throw refuse(`refusing to restore to ${target}: ${plan.refusal.reason}`);
      if (plan.mode !== 'as-is') {
        if (values.instant)
          throw refuse(
            `--instant writes the point's layout as it is; ${target} needs it fitted (${plan.mode})`,
          );
        return await restoreFittedInProcess(repo, manifest, target, plan, isDevice, values.json, fit);
      }
      // Loaded only for --instant: the tap is much of what a restore would otherwise load at start.
      const instant = values.instant ? await import('../../tap/instant-restore.ts') : null;
      const instantPoint = values.instant ? await repo.openPoint(pointId) : null;
      // An interrupted instant restore of this point to this target resumes: the target is kept as it is.
      const resuming =
        instantPoint !== null && instant!.instantRestoreResumes(instantPoint, target, isDevice);
      if (!isDevice && !resuming) {
        // An image starts all zero so unused and all-zero units need no writes; a bigger image keeps its size.
        if (existing) await truncate(target, 0);
        if (existing) await truncate(target, Math.max(existing.size, needed));
      }
      if (instantPoint) {
        if (resuming && !values.json)
          process.stderr.write(`resuming the restore of point ${pointId} to ${target}\n`);
        return await instant!.runInstantRestoreInForeground(instantPoint, target, {
          targetIsZeroed: !isDevice && !resuming,
          json: values.json,
        });
      }
      if (!values.json) process.stderr.write(`restoring point ${pointId} (${manifest.time}) to ${target}\n`);
      const writer = await openWriter(target, { minSize: needed });
      const progress = values.json ? null : progressLine('restore');
      let result: Awaited<ReturnType<typeof restorePoint>>;
      const started = Date.now();
      try {
        result = await restorePoint(repo, manifest, writer, {
          targetIsZeroed: !isDevice,
          chunksChecked: true,
          onProgress: (p) => progress?.update(p.doneBytes, p.totalBytes),
        });
      } finally {
        progress?.end();
        await writer.close();
      }
      const identity = await newIdentityInProcess(target, fit, values.json);
      const bootCheck = await bootCheckInProcess(target, values.json);
      const seconds = (Date.now() - started) / 1000;
      if (values.json) {
        process.stdout.write(
          `${JSON.stringify({ point: pointId, target, writtenBytes: result.writtenBytes, usedBytes: result.usedBytes, seconds, ...(identity ? { identity } : {}), ...(bootCheck ? { bootCheck } : {}) })}\n`,
        );
      } else {
        process.stdout.write(
          `Restored point ${pointId} to ${target}: ${formatBytes(result.usedBytes)} used, ${formatBytes(result.writtenBytes)} written in ${seconds.toFixed(1)} s\n`,
        );
      }
      return ExitCode.ok;
    } finally {
      await repo.close();
    }
  },
};

/** restore.preview (its refusal and the target's identity), then restore.start with the preview's token. */
async function restoreThroughDaemon(
  daemon: SocketClient,
  reference: string,
  to: string,
  repoText: string,
  values: {
    yes?: boolean | undefined;
    json?: boolean | undefined;
    'password-file'?: string | undefined;
    plan?: boolean | undefined;
    fit: RestoreFitParams;
  },
): Promise<number> {
  notePassphrase(values);
  const repo = repoForDaemon(repoText);
  const target = resolve(to);
  // The engine API takes an id or a prefix of one; 'latest' is the newest complete point, as in-process.
  if (reference === 'latest') {
    const points = await daemon
      .call('points.list', { repo })
      .catch((error: unknown) => callFailure('restore', error));
    const newest = points
      .filter((point) => point.complete)
      .sort((a, b) => a.time.localeCompare(b.time))
      .at(-1);
    if (!newest) throw new ExitError(`repository ${repo} has no complete restore point`, ExitCode.failed);
    reference = newest.id;
  }
  const preview = await daemon
    .call('restore.preview', { repo, point: reference, to: target, ...values.fit })
    .catch((error: unknown) => callFailure('restore', error));
  if (values.plan) {
    if (!preview.plan)
      throw new ExitError(`the engine could not plan the restore to ${target}`, ExitCode.failed);
    return printPlan(preview.plan, values.json);
  }
  if (preview.refusal) throw refuse(preview.refusal);
  if (!values.json) {
    process.stderr.write(`target: ${preview.targetDescription}\n`);
    for (const item of preview.overwrites) process.stderr.write(`  overwrites ${item}\n`);
  }
  if (preview.targetKind === 'device' && !values.yes) {
    throw refuse(
      `restoring point ${reference} to ${preview.targetDescription} overwrites that device; check it is the right one and add --yes`,
    );
  }
  const job = await followJob(
    daemon,
    () =>
      daemon
        .call('restore.start', {
          repo,
          point: reference,
          to: target,
          confirmToken: preview.confirmToken,
          ...values.fit,
        })
        .catch((error: unknown) => callFailure('restore', error)),
    values.json ? null : 'restore',
  );
  if (job.state !== 'succeeded') throw jobFailure(`restore to ${target}`, job);
  const result = job.result ?? {};
  const seconds =
    job.startedAt && job.endedAt ? (Date.parse(job.endedAt) - Date.parse(job.startedAt)) / 1000 : 0;
  const pointId = String(result.point);
  const writtenBytes = Number(result.writtenBytes ?? 0);
  const usedBytes = Number(result.usedBytes ?? 0);
  const writtenTo = String(result.target ?? target);
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ point: pointId, target: writtenTo, writtenBytes, usedBytes, seconds })}\n`,
    );
  } else {
    process.stdout.write(
      `Restored point ${pointId} to ${writtenTo}: ${formatBytes(usedBytes)} used, ${formatBytes(writtenBytes)} written in ${seconds.toFixed(1)} s\n`,
    );
  }
  return ExitCode.ok;
}
