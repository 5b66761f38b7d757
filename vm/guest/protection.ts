// Run inside a test bed guest or a booted system: the engine's boot-time protection (device-mapper/protection.ts)
// called as the engine calls it, with the system at DISKLINE_SYSTEM_ROOT and its update-initramfs on PATH.
// `protect DEVICE` and `unprotect DEVICE` confirm by naming the device (the test is the user); `status DEVICE`
// prints the per-volume state as JSON.
import { protect, protectionStatus, unprotect } from '../../engine/device-mapper/protection.ts';

const [action, device] = process.argv.slice(2);
if (!device) throw new Error('usage: protection.ts protect|unprotect|status DEVICE');
if (action === 'protect') {
  const status = await protect({ device, confirm: device, repositories: [] });
  process.stdout.write(`${status.device}: ${status.detail}\n`);
} else if (action === 'unprotect') {
  await unprotect({ device, confirm: device });
  process.stdout.write(`${device}: unprotected from the next restart on\n`);
} else if (action === 'status') {
  process.stdout.write(`${JSON.stringify(await protectionStatus(device))}\n`);
} else {
  throw new Error(`unknown action ${action}`);
}
