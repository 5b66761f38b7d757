// `diskline mount <point> --repo R <dir>`: mounts a restore point's file systems read-only at <dir> (or
// <dir>/partN per partition), served on the fly from the repository through the FUSE tap and a read-only
// loop device. Stays in the foreground while mounted; `umount <dir>` or Ctrl-C ends it cleanly.
import { HeldPathError, holdPath } from '../../handles/held-path.ts';
import { mountPointReadOnly } from '../../tap/serve-point.ts';
import { openRepository, repositoryHelp, repositoryOptions } from '../repository-access.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'mount <point> --repo R <dir> [--json]',
  summary: 'Mount a restore point read-only (files are read from the repository on demand)',
  help:
    `${repositoryHelp}\n  <dir>                  an existing empty directory; partitions are mounted at <dir>/part1, …\n` +
    '  --json                 print {point, loopDevice, mounts} once mounted\n' +
    "  Runs until the mounts are unmounted (umount <dir>) or it is interrupted; <point> may be an id, a prefix or 'latest'",
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, { ...repositoryOptions, json: { type: 'boolean' } });
    const [reference, dir, ...extra] = positionals;
    if (!reference || !dir) throw new UsageError('give the restore point and the directory to mount it on');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    let heldDir: ReturnType<typeof holdPath> | null = null;
    try {
      heldDir = holdPath(dir, process.getuid?.() ?? null);
    } catch (error) {
      if (!(error instanceof HeldPathError) || error.code !== 'ENOENT') throw error;
    }
    if (!heldDir?.stats.isDirectory()) {
      heldDir?.close();
      throw new UsageError(`${dir} is not a directory; create it first`);
    }
    const repo = await openRepository(values);
    const pointId = await repo.resolvePointId(reference);
    const point = await repo.openPoint(pointId);
    if (!point.manifest.complete)
      throw new Error(`restore point ${pointId} is incomplete (its backup was interrupted)`);
    const mounted = await mountPointReadOnly(
      point,
      point.manifest.source.size,
      `restore point ${pointId}`,
      heldDir,
    );
    const summary = {
      point: pointId,
      loopDevice: mounted.served.loopDevice,
      mounts: mounted.mounts.map((m) => ({ dir: m.dir, type: m.type })),
    };
    if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else {
      for (const m of mounted.mounts)
        process.stdout.write(`mounted ${m.type} of point ${pointId} read-only at ${m.dir}\n`);
      process.stdout.write(
        `unmount with: umount ${mounted.mounts.map((m) => m.dir).join(' ')}  (or Ctrl-C here)\n`,
      );
    }
    let interrupted = false;
    const onSignal = () => {
      interrupted = true;
      mounted.unmount().then(
        () => process.exit(0),
        (error: Error) =>
          process.stderr.write(`diskline mount: ${error.message}; unmount ${dir} and try again\n`),
      );
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await mounted.whenUnmounted();
    if (!interrupted) await mounted.unmount();
    heldDir.close();
    await repo.close();
    return;
  },
};
