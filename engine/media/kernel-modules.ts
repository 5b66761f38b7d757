// The kernel modules an initramfs loads, with what each depends on, in load order: read from the kernel's
// modules.dep, so the list names only what is wanted (a driver, a file system) and never goes stale.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface KernelModule {
  /** As modprobe names it, e.g. virtio_blk. */
  name: string;
  /** The file under lib/modules/<version>/. */
  path: string;
}

const moduleName = (path: string) => basename(path).replace(/\.ko(\.[a-z]+)?$/, '');
/** modprobe treats - and _ alike. */
const canonical = (name: string) => name.replaceAll('-', '_');

/**
 * The wanted modules and their dependencies, dependencies first. A wanted module built into the kernel needs no
 * loading; one the kernel lacks altogether is named in `missing` — whether that matters is the caller's to say.
 */
export function moduleClosure(
  modulesDir: string,
  wanted: string[],
): { load: KernelModule[]; missing: string[] } {
  const deps = new Map<string, { path: string; needs: string[] }>();
  for (const line of readFileSync(join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const [path, rest] = line.split(':');
    if (!path || rest === undefined) continue;
    deps.set(canonical(moduleName(path)), {
      path,
      needs: rest.trim()
        ? rest
            .trim()
            .split(/\s+/)
            .map((p) => canonical(moduleName(p)))
        : [],
    });
  }
  const load: KernelModule[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const entry = deps.get(name);
    if (!entry) return;
    for (const need of entry.needs) visit(need);
    load.push({ name, path: entry.path });
  };
  const builtin = new Set(
    existsSync(join(modulesDir, 'modules.builtin'))
      ? readFileSync(join(modulesDir, 'modules.builtin'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((path) => canonical(moduleName(path)))
      : [],
  );
  const missing: string[] = [];
  for (const name of wanted) {
    if (deps.has(canonical(name))) visit(canonical(name));
    else if (!builtin.has(canonical(name))) missing.push(name);
  }
  return { load, missing };
}
