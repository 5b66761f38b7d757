// `diskline daemon`: the engine as a system service, its API on a unix socket checked by peer credentials.
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { EventData } from '../../../protocol/messages.ts';
import type { Job } from '../../../protocol/model.ts';
import type { Engine } from '../../api/engine.ts';
import { openEngine, untilSignal } from '../../api/host.ts';
import { socketPath, UnixServer } from '../../api/unix-server.ts';
import { recoverStaleTaps } from '../../tap/system-state.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

/** The gid of a group from /etc/group, or null when there is no such group. */
function groupId(name: string): number | null {
  const line = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((entry) => entry.split(':')[0] === name);
  return line ? Number(line.split(':')[2]) : null;
}

/** The primary gid of a uid (from /etc/passwd), or null. */
function primaryGid(uid: number): number | null {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.split(':')[2] === String(uid));
  return line ? Number(line.split(':')[3]) : null;
}

/** One log line (stderr, i.e. the journal) per job state change and plan outcome; progress is not logged. */
function logOutcomes(engine: Engine): void {
  const lastState = new Map<string, string>();
  engine.events.subscribe((event, data) => {
    if (event === 'job.updated') {
      const job = data as Job;
      if (lastState.get(job.id) === job.state) return;
      lastState.set(job.id, job.state);
      if (job.state !== 'queued' && job.state !== 'running') lastState.delete(job.id);
      process.stderr.write(
        `diskline daemon: job ${job.id} (${job.title}): ${job.state}${job.error ? ` — ${job.error}` : ''}\n`,
      );
    } else if (event === 'plan.ran') {
      const ran = data as EventData<'plan.ran'>;
      process.stderr.write(
        `diskline daemon: plan ${ran.name}: ${ran.ok ? 'ok' : 'FAILED'} — ${ran.message}\n`,
      );
    }
  });
}

export const verb: Verb = {
  usage: 'daemon [--socket PATH] [--group NAME]',
  summary: 'Run the engine as a service: API on a unix socket, schedules, jobs',
  help: `Options:
  --socket PATH  listen on PATH (default: DISKLINE_SOCKET, else /run/diskline/engine.sock)
  --group NAME   group owning the socket (default: 'diskline' if that group exists, else root)
The socket is mode 0660; each connection is also checked by its peer credentials: root, the daemon's own
user, uids listed in allowedUids of the state's config.json, and, when started through pkexec, the user
who started it. State lives in DISKLINE_STATE_DIR (default /var/lib/diskline).
Runs until SIGTERM or SIGINT; jobs running then are reported 'interrupted' at the next start. Attached
volumes stay attached and mounted (their tap helpers keep serving them) and the next daemon adopts them.`,
  async run(args) {
    const { values } = parseVerbArgs(args, { socket: { type: 'string' }, group: { type: 'string' } });
    let gid: number | undefined;
    if (values.group) {
      const found = groupId(values.group);
      if (found === null) throw new UsageError(`No group named '${values.group}' on this machine.`);
      gid = found;
    } else {
      gid = groupId('diskline') ?? undefined;
    }
    // pkexec tells the program who asked for it: that user's desktop shell is the client.
    const pkexecUid = process.env.PKEXEC_UID ? Number(process.env.PKEXEC_UID) : null;
    if (pkexecUid !== null && gid === undefined) gid = primaryGid(pkexecUid) ?? undefined;
    const path = values.socket ?? socketPath();
    // A daemon that crashed left its taps dead (loop devices answering I/O errors): clean them up before
    // the volumes are attached again.
    if (process.getuid?.() === 0) {
      const cleaned = await recoverStaleTaps().catch((error: Error) => [
        `could not look for stale taps: ${error.message}`,
      ]);
      for (const line of cleaned) process.stderr.write(`diskline daemon: ${line}\n`);
    }
    const engine = await openEngine();
    for (const note of engine.startNotes) process.stderr.write(`diskline daemon: ${note}\n`);
    for (const job of engine.interruptedAtStart) {
      process.stderr.write(`diskline daemon: job ${job.id} (${job.title}): interrupted — ${job.error}\n`);
    }
    logOutcomes(engine);
    const server = new UnixServer(engine, path);
    try {
      await server.listen({ gid, extraAllowedUids: pkexecUid !== null ? [pkexecUid] : [] });
    } catch (error) {
      await engine.stop();
      throw error;
    }
    process.stderr.write(
      `diskline daemon: listening on ${path} (user ${userInfo().username}, state in ${engine.state.dir})\n`,
    );
    // The socket goes last: until this process is done, a client learns a daemon is still here (stopping).
    // Attached volumes are released to their tap helpers and stay mounted; the next daemon adopts them.
    await untilSignal(async () => {
      await engine.stop();
      await server.close();
    });
    return;
  },
};
