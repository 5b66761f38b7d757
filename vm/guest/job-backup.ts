// Run inside the test bed's guest: the engine's backup job (engine/jobs/backup.ts) on a source, exactly as the
// daemon runs it — the provider is chosen per disk (device-mapper for a mapped device in use) — into a real
// repository. Prints the job's result as one JSON line ({"event":"result",…}).
import { runBackup } from '../../engine/jobs/backup.ts';

const [source, repo, store, preHook, postHook] = process.argv.slice(2);
if (!source || !repo) throw new Error('usage: job-backup.ts SOURCE REPO [memory:BYTES [PRE-HOOK POST-HOOK]]');
const controller = new AbortController();
let lastFill = '';
const result = await runBackup(
  {
    source,
    repo,
    container: store ? { kind: 'memory', capacityBytes: Number(store.split(':')[1]) } : undefined,
    volume: null,
    preHook,
    postHook,
  },
  {
    id: 'guest',
    signal: controller.signal,
    progress(update) {
      const fill = JSON.stringify(update.container ?? null);
      if (fill !== lastFill) lastFill = fill;
    },
  },
  () => {},
);
process.stdout.write(
  `${JSON.stringify({ event: 'result', ...result, lastFill: JSON.parse(lastFill || 'null') })}\n`,
);
