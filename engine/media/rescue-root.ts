// The rescue system's root, as a directory tree about to be compressed: the programs of the Debian packages a
// restore calls (partitioning, file-system tools, mount, modprobe…) with every shared library they load, the
// kernel's modules, busybox for the rest, and Diskline itself — the Node binary the project runs on, the engine
// and protocol sources (Node runs TypeScript as is), the native addon and the production node_modules.
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../volume-files/loop-range.ts';

/** Debian packages whose programs (and /etc files) go into the root. */
export const ROOT_PACKAGES = [
  'bash',
  'dash',
  'coreutils',
  'util-linux',
  'mount',
  'fdisk',
  'gdisk',
  'e2fsprogs',
  'dosfstools',
  'mtools',
  'ntfs-3g',
  'btrfs-progs',
  'xfsprogs',
  'kmod',
  'dmsetup',
  'fuse3',
  'findutils',
  'grep',
  'sed',
  'gzip',
];
/** What of a package's files the root takes: its programs and configuration, not documentation. */
const KEPT_PACKAGE_PATH = /^\/(usr\/)?(s?bin|etc)\//;
const BUSYBOX = '/usr/bin/busybox';

export interface RootSources {
  /** The project's directory: bin/, engine/, protocol/, node_modules/, package.json. */
  projectRoot: string;
  /** The Node binary the project runs on. */
  node: string;
  /** lib/modules/<version> of the media's kernel. */
  modulesDir: string;
  /** The repository location to bake in (DEVICE[:PATH]), or none. */
  repo?: string;
  /** A passphrase file to bake in, or none. */
  keyFile?: string;
}

/** Why the root cannot be gathered here, or null. */
export function rootUnavailableReason(): string | null {
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} is missing (package busybox-static)`;
  for (const name of ['dpkg-query', 'ldd', 'tar']) {
    if (!['/usr/bin', '/bin', '/usr/sbin', '/sbin'].some((dir) => existsSync(join(dir, name))))
      return `${name} is missing`;
  }
  return null;
}

export async function gatherRoot(tree: string, sources: RootSources): Promise<void> {
  // Debian's merged /usr: /bin, /sbin and /lib lead into /usr, so a package's /bin/x and /usr/bin/x agree.
  await mkdir(tree, { recursive: true });
  for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64'])
    await mkdir(join(tree, dir), { recursive: true });
  for (const [link, target] of [
    ['bin', 'usr/bin'],
    ['sbin', 'usr/sbin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
  ] as const)
    await symlink(target, join(tree, link));
  for (const dir of ['etc', 'proc', 'sys', 'dev', 'run', 'tmp', 'root', 'mnt', 'var/lib/diskline', 'var/tmp'])
    await mkdir(join(tree, dir), { recursive: true });
  await chmod(join(tree, 'tmp'), 0o1777);
  await chmod(join(tree, 'root'), 0o700);

  await copyPackageFiles(tree);
  // /bin/sh runs bin/diskline and the engine's hooks; dash ships it as a link this machine may have replaced.
  if (!existsSync(join(tree, 'usr/bin/sh'))) await symlink('dash', join(tree, 'usr/bin/sh'));
  await copyDiskline(tree, sources);
  await copyKernelModules(tree, sources.modulesDir);
  await copySharedLibraries(tree);
  await installBusybox(tree);
  await writeRescueFiles(tree, sources);
  await warmCompileCache(tree);
}

/** Where the root keeps Node's compile cache (the rescue system points NODE_COMPILE_CACHE at it). */
export const COMPILE_CACHE = '/opt/diskline/compile-cache';

/**
 * Fills Node's compile cache by running a restore that stops at once (no such repository) inside the root, so
 * the modules are compiled at the paths the rescue system runs them from: under an emulated CPU, compiling the
 * engine is much of a start. It doubles as a check that the engine starts in the root. Needs root (chroot);
 * without it the media still works, its first start slower and unchecked.
 */
async function warmCompileCache(tree: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const warm = '/tmp/diskline-warm-up';
  const { stderr } = await runTool(
    'chroot',
    [
      tree,
      // The command the rescue program runs, as it runs it.
      '/opt/diskline/bin/diskline',
      'restore',
      'latest',
      '--repo',
      `${warm}/no-repository`,
      '--to',
      `${warm}/target.img`,
    ],
    {
      okExits: [1, 2, 3],
      env: {
        PATH: '/usr/sbin:/usr/bin',
        HOME: warm,
        NODE_COMPILE_CACHE: COMPILE_CACHE,
        DISKLINE_STATE_DIR: `${warm}/state`,
      },
    },
  );
  // The engine ran in the root and reached the repository: its programs, libraries and modules are complete.
  if (!stderr.includes('does not exist'))
    throw new Error(
      `the engine does not start in the rescue root: ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
    );
  await rm(join(tree, warm), { recursive: true, force: true });
}

async function copyPackageFiles(tree: string): Promise<void> {
  const files: string[] = [];
  for (const name of ROOT_PACKAGES) {
    const { stdout } = await runTool('dpkg-query', ['-L', name]).catch(() => {
      throw new Error(`the Debian package ${name} is not installed (scripts/setup.sh installs it)`);
    });
    for (const path of stdout.split('\n'))
      if (KEPT_PACKAGE_PATH.test(path) && !isDirectory(path)) files.push(path);
  }
  await tarCopy(files, tree, false);
}

/** A directory, or a path the package lists but this machine no longer has (a removed conffile). */
function isDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return true;
  }
}

/** Copies absolute paths from / to the same paths under tree (through its /usr links); `dereference` copies
 * what a link leads to under the link's name. */
async function tarCopy(paths: string[], tree: string, dereference: boolean): Promise<void> {
  if (paths.length === 0) return;
  const list = `${[...new Set(paths)].map((p) => p.slice(1)).join('\0')}\0`;
  await runTool(
    '/bin/sh',
    [
      '-c',
      `tar -C / --null --no-recursion ${dereference ? '-h' : ''} -cf - -T - | tar -C "$1" --keep-directory-symlink -xf -`,
      'sh',
      tree,
    ],
    { input: list },
  );
}

/** The production dependency tree of the project, as package directories. */
function productionPackages(projectRoot: string): string[] {
  const found = new Set<string>();
  const visit = (fromDir: string, name: string, optional: boolean) => {
    let dir = fromDir;
    for (;;) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) {
        if (found.has(candidate)) return;
        found.add(candidate);
        const manifest = JSON.parse(readFileSync(join(candidate, 'package.json'), 'utf8')) as {
          dependencies?: Record<string, string>;
          optionalDependencies?: Record<string, string>;
        };
        for (const dep of Object.keys(manifest.dependencies ?? {})) visit(candidate, dep, false);
        for (const dep of Object.keys(manifest.optionalDependencies ?? {})) visit(candidate, dep, true);
        return;
      }
      if (resolve(dir) === resolve(projectRoot) || dirname(dir) === dir) break;
      dir = dirname(dir);
      // Skip from inside a node_modules folder to the package that holds it.
      while (dir.endsWith(`${sep}node_modules`)) dir = dirname(dir);
    }
    if (!optional) throw new Error(`the engine's dependency ${name} is not installed (npm ci)`);
  };
  const manifest = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  for (const dep of Object.keys(manifest.dependencies ?? {})) visit(projectRoot, dep, false);
  return [...found];
}

/** Tests, test helpers and build by-products stay behind. */
function keptSource(path: string): boolean {
  const parts = path.split(sep);
  if (parts.includes('testing') || parts.includes('obj.target')) return false;
  return !/\.test\.tsx?$/.test(path);
}

async function copyDiskline(tree: string, sources: RootSources): Promise<void> {
  const { projectRoot } = sources;
  const home = join(tree, 'opt/diskline');
  await mkdir(home, { recursive: true });
  for (const file of ['package.json', 'bin/diskline']) await cp(join(projectRoot, file), join(home, file));
  for (const dir of ['engine', 'protocol']) {
    await cp(join(projectRoot, dir), join(home, dir), {
      recursive: true,
      filter: (source) => keptSource(relative(projectRoot, source)),
    });
  }
  for (const pkg of productionPackages(projectRoot))
    await cp(pkg, join(home, relative(projectRoot, pkg)), { recursive: true, verbatimSymlinks: true });
  // bin/diskline runs node_modules/node/bin/node.
  await mkdir(join(home, 'node_modules/node/bin'), { recursive: true });
  await cp(sources.node, join(home, 'node_modules/node/bin/node'));
}

async function copyKernelModules(tree: string, modulesDir: string): Promise<void> {
  const version = modulesDir.split(sep).pop()!;
  await cp(modulesDir, join(tree, 'usr/lib/modules', version), { recursive: true, verbatimSymlinks: true });
  // build/ and source/ point into a kernel source tree the media does not carry.
  for (const name of ['build', 'source'])
    await runTool('rm', ['-f', join(tree, 'usr/lib/modules', version, name)]);
}

async function isElf(path: string): Promise<boolean> {
  const handle = await open(path, 'r').catch(() => null);
  if (!handle) return false;
  try {
    const head = Buffer.alloc(4);
    await handle.read(head, 0, 4, 0);
    return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    await handle.close();
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

/** Every shared library the root's programs and addons load (ldd on the host, where they came from). */
async function copySharedLibraries(tree: string): Promise<void> {
  const candidates = [
    ...(await filesUnder(join(tree, 'usr/bin'))),
    ...(await filesUnder(join(tree, 'usr/sbin'))),
    ...(await filesUnder(join(tree, 'opt/diskline'))).filter(
      (path) => path.endsWith('.node') || path.endsWith('/node') || path.endsWith('diskline-tap-helper'),
    ),
  ];
  const libraries = new Set<string>();
  for (const file of candidates) {
    if (!(await isElf(file))) continue;
    const { stdout } = await runTool('ldd', [file], { okExits: [1] });
    for (const line of stdout.split('\n')) {
      const match = line.match(/(?:=>\s*)?(\/\S+)\s+\(0x/);
      if (match?.[1]) libraries.add(match[1]);
    }
  }
  await tarCopy([...libraries], tree, true);
}

async function installBusybox(tree: string): Promise<void> {
  const dir = join(tree, 'usr/lib/diskline-rescue/busybox');
  await mkdir(dir, { recursive: true });
  await cp(BUSYBOX, join(dir, 'busybox'));
  const { stdout } = await runTool(BUSYBOX, ['--list']);
  for (const applet of stdout
    .split('\n')
    .filter((name) => /^[a-z0-9_.[-]+$/.test(name) && name !== 'busybox'))
    await symlink('busybox', join(dir, applet));
}

async function writeRescueFiles(tree: string, sources: RootSources): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const lib = join(tree, 'usr/lib/diskline-rescue');
  await cp(join(here, 'rescue-start.sh'), join(lib, 'start'));
  await cp(join(here, 'rescue.sh'), join(lib, 'rescue'));
  await chmod(join(lib, 'start'), 0o755);
  await chmod(join(lib, 'rescue'), 0o755);
  await mkdir(join(tree, 'opt/diskline/bin'), { recursive: true });
  await chmod(join(tree, 'opt/diskline/bin/diskline'), 0o755);
  await writeFile(join(tree, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  await writeFile(join(tree, 'etc/group'), 'root:x:0:\ndisk:x:6:\n');
  await writeFile(join(tree, 'etc/hostname'), 'diskline-rescue\n');
  const config = join(tree, 'etc/diskline-rescue');
  await mkdir(config, { recursive: true, mode: 0o700 });
  if (sources.repo) await writeFile(join(config, 'repo'), `${sources.repo}\n`);
  if (sources.keyFile) {
    await writeFile(join(config, 'key'), await readFile(sources.keyFile), { mode: 0o600 });
  }
}
