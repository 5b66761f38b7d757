// How smoothly the Live view's block map follows a fast event stream for a big disk: Diskline's canvas (fed by a
// store subscription, no React render per event) against a peer that keeps one DOM element per cell (the
// straightforward way), both in the same headless Chromium, same events. Prints frames per second, the 95th
// percentile frame interval and main-thread milliseconds per event, and the ratios.
// `npx node bench/ui-blockmap.ts [--size 2T] [--rate 20] [--seconds 4]` (needs `npm run build` and Chromium).
/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium, type Page } from 'playwright-core';
import { serveRendererDist } from '../e2e/static-server.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '2T' },
    rate: { type: 'string', default: '20' },
    seconds: { type: 'string', default: '4' },
  },
  allowPositionals: true,
  strict: false,
});

function parseSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === null) throw new Error(`--size ${text}: expected a size such as 256M, 4G or 2T`);
  return bytes;
}

const diskBytes = parseSize(String(values.size));
const rateHz = Number(values.rate);
const seconds = Number(values.seconds);
const unitSize = 64 * 1024;
const cellCount = 16_384;
const unitsPerCell = Math.max(1, Math.ceil(diskBytes / unitSize / cellCount));
/** Changed cells per event: the copier sweeping ahead plus scattered writes. */
const changesPerEvent = 400;

if (!existsSync(fileURLToPath(new URL('../renderer/dist/index.html', import.meta.url)))) {
  console.error('ui-blockmap: the renderer is not built; run `npm run build` first.');
  process.exit(1);
}
if (!existsSync('/usr/bin/chromium')) {
  console.error('ui-blockmap: no Chromium at /usr/bin/chromium; scripts/setup.sh installs it.');
  process.exit(1);
}

/** Runs in the page: an engine bridge whose backup streams block-map changes at `rate` Hz. */
function installStreamingBridge(config: {
  cellCount: number;
  unitsPerCell: number;
  rate: number;
  changes: number;
}) {
  const listeners = new Map<string, Set<(data: unknown) => void>>();
  const stats = { events: 0, dispatchMs: 0 };
  (globalThis as unknown as { benchStats: typeof stats }).benchStats = stats;
  const emit = (event: string, data: unknown) => {
    const started = performance.now();
    for (const listener of listeners.get(event) ?? []) listener(data);
    stats.dispatchMs += performance.now() - started;
  };
  let sweep = 0;
  const job = {
    id: 'bench',
    kind: 'backup',
    state: 'running',
    title: 'Back up a big disk',
    startedAt: new Date().toISOString(),
    endedAt: null,
    doneBytes: 0,
    totalBytes: config.cellCount * config.unitsPerCell * 65536,
    bytesPerSecond: 1e9,
    etaSeconds: 100,
    container: {
      usedBytes: 0,
      capacityBytes: 1e9,
      highWatermark: 8e8,
      lowWatermark: 4e8,
      pressure: 'normal',
    },
    units: null,
    unitSize: 65536,
    error: null,
    result: null,
  };
  const start = () => {
    const full = new Uint8Array(config.cellCount).fill(1);
    let text = '';
    for (const b of full) text += String.fromCharCode(b);
    emit('blockmap', {
      jobId: 'bench',
      cellCount: config.cellCount,
      unitsPerCell: config.unitsPerCell,
      full: true,
      cells: btoa(text),
    });
    setInterval(() => {
      const changes: number[] = [];
      for (let i = 0; i < config.changes; i++) {
        if (i % 4 === 3) changes.push(Math.floor(Math.random() * config.cellCount), 3 + (i % 2));
        else changes.push(sweep++ % config.cellCount, 2);
      }
      stats.events++;
      job.doneBytes = (sweep % config.cellCount) * config.unitsPerCell * 65536;
      job.container.usedBytes = (Math.sin(stats.events / 10) + 1) * 4e8;
      emit('job.updated', { ...job, container: { ...job.container } });
      emit('blockmap', {
        jobId: 'bench',
        cellCount: config.cellCount,
        unitsPerCell: config.unitsPerCell,
        full: false,
        changes,
      });
    }, 1000 / config.rate);
  };
  const handlers: Record<string, () => unknown> = {
    'engine.status': () => ({ version: 'bench', privileged: false, schedulesPaused: false, nextRun: null }),
    'drives.list': () => [],
    'plans.list': () => [],
    'jobs.list': () => [job],
    'blockmap.subscribe': () => {
      setTimeout(start, 0);
      return {};
    },
  };
  (globalThis as unknown as { diskline: unknown }).diskline = {
    call: async (method: string) => handlers[method]?.() ?? {},
    on: (event: string, listener: (data: unknown) => void) => {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(listener);
      return () => set.delete(listener);
    },
  };
}

/** Runs in the page: the peer, one <div> per cell whose class changes with each event. */
function installDomGridPeer() {
  const grid = document.createElement('div');
  grid.style.cssText = 'display:grid;grid-template-columns:repeat(256,4px);gap:1px;width:1300px';
  const colours = ['#e7eaef', '#9fb3cf', '#2f9e6a', '#e6a23c', '#d9453b'];
  const cells: HTMLDivElement[] = [];
  document.body.replaceChildren(grid);
  const bridge = (
    globalThis as unknown as {
      diskline: { on(e: string, l: (d: never) => void): void; call(m: string, p: unknown): void };
    }
  ).diskline;
  bridge.on('blockmap', (event: { full: boolean; cellCount: number; cells?: string; changes?: number[] }) => {
    if (event.full) {
      const states = atob(event.cells ?? '');
      for (let i = 0; i < event.cellCount; i++) {
        const cell = document.createElement('div');
        cell.style.cssText = `height:4px;background:${colours[states.charCodeAt(i)]}`;
        cells.push(cell);
      }
      grid.append(...cells);
      return;
    }
    const changes = event.changes ?? [];
    for (let i = 0; i + 1 < changes.length; i += 2) {
      const cell = cells[changes[i]!];
      if (cell) cell.style.background = colours[changes[i + 1]!]!;
    }
  });
  bridge.call('blockmap.subscribe', {});
}

interface Figures {
  fps: number;
  p95FrameMs: number;
  msPerEvent: number;
  events: number;
}

async function measure(page: Page): Promise<Figures> {
  return page.evaluate(async (durationMs: number) => {
    const stats = (globalThis as unknown as { benchStats: { events: number; dispatchMs: number } })
      .benchStats;
    const frames: number[] = [];
    const eventsBefore = stats.events;
    const dispatchBefore = stats.dispatchMs;
    let renderMs = 0;
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) renderMs += entry.duration;
    });
    try {
      observer.observe({ type: 'long-animation-frame', buffered: false } as PerformanceObserverInit);
    } catch {
      // Older Chromium: dispatch time alone.
    }
    const started = performance.now();
    await new Promise<void>((resolve) => {
      const tick = (now: number) => {
        frames.push(now);
        if (now - started < durationMs) requestAnimationFrame(tick);
        else resolve();
      };
      requestAnimationFrame(tick);
    });
    observer.disconnect();
    const intervals = frames.slice(1).map((t, i) => t - frames[i]!);
    intervals.sort((a, b) => a - b);
    const events = stats.events - eventsBefore;
    return {
      fps: (frames.length - 1) / ((frames[frames.length - 1]! - frames[0]!) / 1000),
      p95FrameMs: intervals[Math.floor(intervals.length * 0.95)] ?? 0,
      msPerEvent: (stats.dispatchMs - dispatchBefore + renderMs) / Math.max(1, events),
      events,
    };
  }, seconds * 1000);
}

const { url, server } = await serveRendererDist();
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
});
const config = { cellCount, unitsPerCell, rate: rateHz, changes: changesPerEvent };
try {
  const diskline = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  await diskline.addInitScript(installStreamingBridge, config);
  await diskline.goto(url);
  await diskline.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Live job' }).click();
  await diskline.getByRole('img', { name: 'Block map' }).waitFor();
  await diskline.waitForTimeout(500);
  const ours = await measure(diskline);
  await diskline.close();

  const peer = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  await peer.addInitScript(installStreamingBridge, config);
  await peer.goto('about:blank');
  await peer.evaluate(installDomGridPeer);
  await peer.waitForTimeout(500);
  const theirs = await measure(peer);
  await peer.close();

  const gib = diskBytes / 1024 ** 3;
  console.log(
    `block map: ${gib >= 1024 ? `${(gib / 1024).toFixed(1)} TiB` : `${gib.toFixed(1)} GiB`} disk, ${cellCount} cells ` +
      `(${unitsPerCell} units of 64 KiB each), ${rateHz} events/s with ${changesPerEvent} changed cells, ${seconds} s`,
  );
  const row = (name: string, f: Figures) =>
    console.log(
      `  ${name.padEnd(26)} ${f.fps.toFixed(1).padStart(6)} fps   p95 frame ${f.p95FrameMs.toFixed(1).padStart(6)} ms   ` +
        `${f.msPerEvent.toFixed(2).padStart(7)} ms main thread/event   (${f.events} events)`,
    );
  row('Diskline canvas', ours);
  row('peer: one DOM node per cell', theirs);
  console.log(
    `  ratio (peer / Diskline): main thread per event ${(theirs.msPerEvent / Math.max(0.001, ours.msPerEvent)).toFixed(1)}×, ` +
      `p95 frame ${(theirs.p95FrameMs / Math.max(0.001, ours.p95FrameMs)).toFixed(2)}×`,
  );
} finally {
  await browser.close();
  server.close();
}
