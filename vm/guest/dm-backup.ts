// Run inside the test bed's guest: one backup of a mapped device through the device-mapper provider and the
// snapshot core, the copy written to a raw target device (standing in for the repository: the tests compare
// bytes). Prints one JSON line per event ("point", "fill", "done") for the test to read. A slow sink
// (--sink-bytes-per-second) stands in for a slow repository link: it makes a writer faster than the copier.
import { open } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { MemoryContainer } from '../../engine/container/memory.ts';
import { DeviceMapperProvider } from '../../engine/device-mapper/provider.ts';
import { describeSource } from '../../engine/repository/point-source.ts';
import { SnapshotSession } from '../../engine/snapshot/session.ts';
import type { UnitSink } from '../../engine/snapshot/types.ts';
import type { ContainerSpec } from '../../protocol/model.ts';

const { values } = parseArgs({
  options: {
    source: { type: 'string' },
    store: { type: 'string' },
    out: { type: 'string' },
    'sink-bytes-per-second': { type: 'string' },
    'high-watermark': { type: 'string' },
    'pre-hook': { type: 'string' },
    'post-hook': { type: 'string' },
  },
});
if (!values.source || !values.store || !values.out) throw new Error('--source, --store and --out are needed');

function parseStore(text: string): ContainerSpec {
  const [kind, a, b] = text.split(':');
  if (kind === 'memory') return { kind, capacityBytes: Number(a) };
  if (kind === 'file') return { kind, path: a!, capacityBytes: Number(b) };
  if (kind === 'device') return { kind, path: a!, capacityBytes: Number(b ?? Number.MAX_SAFE_INTEGER) };
  throw new Error(`unknown store ${text}`);
}

const say = (event: string, data: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, at: Date.now() / 1000, ...data })}\n`);

const out = await open(values.out, 'r+');
const sinkRate = Number(values['sink-bytes-per-second'] ?? 0);
let sinkBusyUntil = 0;
const sink: UnitSink = {
  async writeUnit(offset, data) {
    if (sinkRate > 0) {
      sinkBusyUntil = Math.max(sinkBusyUntil, performance.now()) + (data.length / sinkRate) * 1000;
      const wait = sinkBusyUntil - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    await out.write(data, 0, data.length, offset);
  },
  async finish() {
    await out.sync();
  },
  async abort() {},
};

const provider = await DeviceMapperProvider.open(values.source, {
  store: parseStore(values.store),
  ...(values['high-watermark'] ? { highWatermark: Number(values['high-watermark']) } : {}),
  ...(values['pre-hook'] ? { preHook: values['pre-hook'] } : {}),
  ...(values['post-hook'] ? { postHook: values['post-hook'] } : {}),
});
say('opened', { watchdog: provider.watchdogPid, store: provider.storeDescription });
const unitSize = 64 * 1024;
const session = new SnapshotSession({
  reader: provider.reader,
  usedRanges: [{ start: 0, length: provider.reader.size }],
  unitSize,
  // Writes never reach the session under device-mapper: its container stays empty.
  container: new MemoryContainer({ capacityBytes: unitSize, slotSize: unitSize }),
  sink,
});
let peak = 0;
const states = new Set<string>();
const watch = new AbortController();
try {
  const point = await provider.takePoint(session);
  say('point', { ...point });
  // As the backup job does: the used blocks, listed from the point itself.
  const described = await describeSource(values.source, session.snapshotReader(), { strict: false });
  if (described.usedRanges) session.restrictTo(described.usedRanges);
  const watching = provider
    .watch(
      {
        remainingBytes: () => {
          const stats = session.stats();
          return stats.totalBytes - stats.bytesCopied;
        },
        bytesPerSecond: () => session.stats().bytesPerSecond,
      },
      watch.signal,
    )
    .catch((error: Error) => {
      session.cancel(error.message);
      throw error;
    });
  const fillReport = setInterval(() => {
    const store = provider.store();
    if (!store) return;
    peak = Math.max(peak, store.usedBytes);
    if (!states.has(store.pressure)) say('fill', { ...store });
    states.add(store.pressure);
  }, 50);
  try {
    const result = await session.run();
    watch.abort();
    await watching;
    say('done', { bytesCopied: result.bytesCopied, peakStoreBytes: peak, pressure: [...states] });
  } finally {
    clearInterval(fillReport);
    watch.abort();
  }
} finally {
  await provider.release();
  await out.close();
  say('released');
}
