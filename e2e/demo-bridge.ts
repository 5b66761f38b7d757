// A demonstration engine that runs inside the page as `window.diskline` (the bridge's shape), for screenshots of
// the UI with realistic data while it is being designed. Never used by the end-to-end tests, which drive the real
// engine. It is a function serialised into the page, so it must be self-contained.
export function installDemoBridge(): void {
  const GiB = 1024 ** 3;
  const now = Date.now();
  const hour = 3_600_000;
  const listeners = new Map<string, Set<(data: unknown) => void>>();
  const emit = (event: string, data: unknown) => {
    for (const listener of listeners.get(event) ?? []) listener(data);
  };
  const drives = [
    {
      device: '/dev/nvme0n1',
      description: 'Samsung SSD 980 PRO 2TB',
      size: 2000 * GiB,
      isSystem: true,
      isRemovable: false,
      mountpoints: ['/', '/boot/efi'],
      partitionTable: 'gpt',
      attachedAs: '/dev/loop3',
      partitions: [
        {
          index: 1,
          start: 1 << 20,
          size: 0.5 * GiB,
          type: 'EFI System',
          filesystem: 'vfat',
          blockSize: 4096,
          usedBytes: 0.06 * GiB,
        },
        {
          index: 2,
          start: 0.5 * GiB + (1 << 20),
          size: 1900 * GiB,
          type: 'Linux filesystem',
          filesystem: 'ext4',
          blockSize: 4096,
          usedBytes: 812 * GiB,
        },
        {
          index: 3,
          start: 1900.6 * GiB,
          size: 99 * GiB,
          type: 'Linux swap',
          filesystem: null,
          blockSize: 4096,
          usedBytes: 0,
        },
      ],
    },
    {
      device: '/dev/sdb',
      description: 'WD Elements 25A2 (USB)',
      size: 4000 * GiB,
      isSystem: false,
      isRemovable: true,
      mountpoints: [],
      partitionTable: 'gpt',
      partitions: [
        {
          index: 1,
          start: 1 << 20,
          size: 4000 * GiB - (2 << 20),
          type: 'Microsoft basic data',
          filesystem: 'ntfs',
          blockSize: 4096,
          usedBytes: 1310 * GiB,
        },
      ],
    },
  ];
  const points = Array.from({ length: 28 }, (_, i) => {
    const age = i < 10 ? i * 6 * hour : i < 20 ? (i - 8) * 24 * hour : (i - 16) * 7 * 24 * hour;
    return {
      id: `p${String(i).padStart(3, '0')}${'a'.repeat(50)}`,
      repo: '/srv/backups/laptop',
      time: new Date(now - age - 3 * hour).toISOString(),
      source: '/dev/nvme0n1',
      sourceSize: 2000 * GiB,
      consistency: i === 5 ? 'crash-consistent' : 'frozen',
      parent: null,
      usedBytes: 812 * GiB - i * GiB,
      changedBytes: (1 + ((i * 7) % 11)) * 0.9 * GiB,
      storedBytes: (1 + ((i * 7) % 11)) * 0.4 * GiB,
      complete: i !== 3,
      verify: i === 12 ? 'damaged' : i % 4 === 0 ? 'ok' : 'unverified',
      drill: i === 0 ? { time: new Date(now - hour).toISOString(), ok: true, detail: 'fsck clean' } : null,
    };
  });
  const plan = {
    id: 'plan-1',
    name: 'Laptop system disk',
    source: '/dev/nvme0n1',
    repo: '/srv/backups/laptop',
    schedule: 'daily 02:30',
    retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
    container: { kind: 'file', path: '/var/tmp/diskline.container', capacityBytes: 4 * GiB },
    enabled: true,
    lastRun: {
      time: new Date(now - 3 * hour).toISOString(),
      ok: true,
      message: '23.1 GiB changed, 9.8 GiB stored',
    },
    nextRun: new Date(now + 18 * hour).toISOString(),
  };
  const cellCount = 16384;
  const cells = new Uint8Array(cellCount);
  for (let i = 0; i < cellCount; i++) cells[i] = (i * 2654435761) % 100 < 42 ? 1 : 0;
  let copiedUpTo = 0;
  const job = {
    id: 'job-7',
    kind: 'backup',
    state: 'running',
    title: 'Back up Samsung SSD 980 PRO 2TB',
    startedAt: new Date(now - 240_000).toISOString(),
    endedAt: null,
    doneBytes: 0,
    totalBytes: 812 * GiB,
    bytesPerSecond: 0,
    etaSeconds: null as number | null,
    container: {
      usedBytes: 0,
      capacityBytes: 4 * GiB,
      highWatermark: 3.2 * GiB,
      lowWatermark: 1.6 * GiB,
      pressure: 'normal',
    },
    units: null,
    unitSize: 65536,
    error: null,
    failureKind: null,
    result: null,
  };
  let tick = 0;
  setInterval(() => {
    tick++;
    const changes: number[] = [];
    for (let step = 0; step < 60 && copiedUpTo < cellCount; copiedUpTo++) {
      if (cells[copiedUpTo] === 1 || cells[copiedUpTo] === 3) {
        cells[copiedUpTo] = 2;
        changes.push(copiedUpTo, 2);
        step++;
      }
    }
    for (let w = 0; w < 6; w++) {
      const at = (tick * 977 + w * 4099) % cellCount;
      if (cells[at] === 1) {
        cells[at] = 3;
        changes.push(at, 3);
      } else if (cells[at] === 2) {
        changes.push(at, 4);
      }
    }
    job.doneBytes = Math.min(job.totalBytes, (copiedUpTo / cellCount) * job.totalBytes);
    job.bytesPerSecond = (1.1 + 0.3 * Math.sin(tick / 9) + 0.1 * Math.sin(tick * 1.7)) * GiB;
    job.etaSeconds = (job.totalBytes - job.doneBytes) / job.bytesPerSecond;
    const used = (1.5 + 1.4 * Math.sin(tick / 25)) * GiB;
    job.container = {
      ...job.container,
      usedBytes: used,
      pressure: used > job.container.highWatermark ? 'throttled' : 'normal',
    };
    emit('job.updated', { ...job });
    emit('blockmap', { jobId: job.id, cellCount, unitsPerCell: 1616, full: false, changes });
  }, 100);
  const toBase64 = (bytes: Uint8Array) => {
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  };
  const results: Record<string, (params: Record<string, unknown>) => unknown> = {
    'engine.status': () => ({
      version: '0.1.0',
      privileged: true,
      schedulesPaused: false,
      nextRun: plan.nextRun,
    }),
    'drives.list': () => drives,
    'points.list': () => points,
    'plans.list': () => [plan],
    'jobs.list': () => [job],
    'blockmap.subscribe': () => {
      setTimeout(
        () =>
          emit('blockmap', {
            jobId: job.id,
            cellCount,
            unitsPerCell: 1616,
            full: true,
            cells: toBase64(cells),
          }),
        0,
      );
      return {};
    },
    'restore.preview': (params) => ({
      target: params.to,
      targetKind: String(params.to).startsWith('/dev/') ? 'device' : 'image',
      targetSize: 4000 * GiB,
      targetDescription: 'WD Elements 25A2 (USB)',
      overwrites: ['Partition 1: NTFS "Media", 1.28 TiB used', 'The partition table (GPT)'],
      typedConfirmation: String(params.to).startsWith('/dev/') ? 'sdb' : null,
      confirmToken: 'demo',
      refusal: null,
    }),
  };
  (globalThis as unknown as { diskline: unknown }).diskline = {
    call: async (method: string, params: Record<string, unknown>) => {
      const result = results[method];
      if (!result) throw new Error(`The demo engine does not do ${method}.`);
      return result(params);
    },
    on: (event: string, listener: (data: unknown) => void) => {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(listener);
      return () => set.delete(listener);
    },
  };
}
