// How a restored system names its disks: fstab lines, and the identifiers (UUID, PARTUUID, LABEL, PARTLABEL,
// /dev/disk/by-… links) that must lead to a partition of the restored disk for it to mount its file systems.

export interface VolumeIdentity {
  index: number;
  uuid: string | null;
  label: string | null;
  partuuid: string | null;
  partlabel: string | null;
  type: string | null;
}

export interface FstabEntry {
  line: number;
  spec: string;
  mountPoint: string;
  type: string;
  options: string[];
}

/** Types that name no device: nothing to resolve. */
const VIRTUAL_TYPES = new Set([
  'proc',
  'sysfs',
  'tmpfs',
  'devpts',
  'devtmpfs',
  'cgroup',
  'cgroup2',
  'securityfs',
  'debugfs',
  'efivarfs',
  'nfs',
  'nfs4',
  'cifs',
  'smb3',
  'fuse',
  'overlay',
  'none',
  'bind',
]);

export function parseFstab(text: string): FstabEntry[] {
  const entries: FstabEntry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    const [spec, mountPoint, type, options] = line.split(/\s+/);
    if (!spec || !mountPoint) continue;
    entries.push({
      line: i + 1,
      spec: spec.replace(/\\040/g, ' '),
      mountPoint,
      type: type ?? 'auto',
      options: (options ?? 'defaults').split(','),
    });
  }
  return entries;
}

/** True when the entry names a device that must be found (not a virtual file system, a bind or a network share). */
export function namesDevice(entry: FstabEntry): boolean {
  if (VIRTUAL_TYPES.has(entry.type) || entry.options.includes('bind')) return false;
  if (/^[^/=]+:/.test(entry.spec) || entry.spec.startsWith('//')) return false;
  return /^(UUID|PARTUUID|LABEL|PARTLABEL)=/i.test(entry.spec) || entry.spec.startsWith('/dev/');
}

const unquote = (value: string) => value.replace(/^"(.*)"$/, '$1');

/**
 * The partition a device name leads to on the restored disk: 'found', 'missing', or 'unknown' for a kernel name
 * (/dev/sda2, /dev/mapper/…) whose target depends on the machine.
 */
export function resolveDeviceName(
  name: string,
  volumes: VolumeIdentity[],
): { state: 'found'; volume: VolumeIdentity } | { state: 'missing' | 'unknown' } {
  const equal = (a: string | null, b: string) => a !== null && a.toLowerCase() === b.toLowerCase();
  let match: ((v: VolumeIdentity) => boolean) | null = null;
  const tagged = /^(UUID|PARTUUID|LABEL|PARTLABEL)=(.*)$/i.exec(name);
  const linked = /^\/dev\/disk\/by-(uuid|partuuid|label|partlabel)\/(.+)$/.exec(name);
  const [tag, value] = tagged
    ? [tagged[1]!.toUpperCase(), unquote(tagged[2]!)]
    : linked
      ? [linked[1]!.toUpperCase(), linked[2]!.replace(/\\x2f/g, '/')]
      : [null, ''];
  if (tag === 'UUID') match = (v) => equal(v.uuid, value);
  else if (tag === 'PARTUUID') match = (v) => equal(v.partuuid, value);
  else if (tag === 'LABEL') match = (v) => v.label === value;
  else if (tag === 'PARTLABEL') match = (v) => v.partlabel === value;
  if (!match) return { state: 'unknown' };
  const volume = volumes.find(match);
  return volume ? { state: 'found', volume } : { state: 'missing' };
}

/** The boot entries of a grub.cfg: each menuentry's search target, kernel and initrds, and root= argument. */
export interface GrubEntry {
  title: string;
  searchUuid: string | null;
  kernel: string | null;
  initrds: string[];
  rootArgument: string | null;
}

export function parseGrubEntries(text: string): GrubEntry[] {
  const entries: GrubEntry[] = [];
  let current: GrubEntry | null = null;
  let globalSearch: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const title = /^menuentry\s+(?:'([^']*)'|"([^"]*)"|(\S+))/.exec(line);
    if (title) {
      current = {
        title: title[1] ?? title[2] ?? title[3] ?? '',
        searchUuid: globalSearch,
        kernel: null,
        initrds: [],
        rootArgument: null,
      };
      entries.push(current);
      continue;
    }
    const search =
      /^search\b.*--fs-uuid.*?\s([0-9a-fA-F-]{8,})\s*$/.exec(line) ?? /^search\.fs_uuid\s+(\S+)/.exec(line);
    if (search) {
      if (current) current.searchUuid = search[1]!;
      else globalSearch = search[1]!;
      continue;
    }
    if (!current) continue;
    const linux = /^linux(?:16|efi)?\s+(\S+)(.*)$/.exec(line);
    if (linux) {
      current.kernel = linux[1]!;
      current.rootArgument = /(?:^|\s)root=(\S+)/.exec(linux[2]!)?.[1] ?? null;
      continue;
    }
    const initrd = /^initrd(?:16|efi)?\s+(.+)$/.exec(line);
    if (initrd) current.initrds.push(...initrd[1]!.split(/\s+/));
  }
  return entries;
}

/** A systemd-boot entry (loader/entries/*.conf): its kernel, initrds and root= argument. */
export function parseLoaderEntry(text: string): {
  kernel: string | null;
  initrds: string[];
  rootArgument: string | null;
} {
  let kernel: string | null = null;
  const initrds: string[] = [];
  let rootArgument: string | null = null;
  for (const raw of text.split('\n')) {
    const [key, ...rest] = raw.trim().split(/\s+/);
    const value = rest.join(' ');
    if (key === 'linux') kernel = value;
    else if (key === 'initrd') initrds.push(value);
    else if (key === 'options') rootArgument = /(?:^|\s)root=(\S+)/.exec(value)?.[1] ?? rootArgument;
  }
  return { kernel, initrds, rootArgument };
}
