// A mount's options as the kernel lists them in /proc/self/mountinfo (e.g. "rw,relatime"); '' when not mounted.
import { readFile } from 'node:fs/promises';

export async function mountOptions(mountPoint: string): Promise<string> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const line = mountinfo.split('\n').find((entry) => entry.split(' ')[4] === mountPoint);
  return line?.split(' ')[5] ?? '';
}
