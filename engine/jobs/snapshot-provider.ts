// Which snapshot provider takes a disk's point: the tap when the disk is attached through it; device-mapper
// when the disk is a mapped device in use (an LVM volume, a LUKS mapping, a partition protected at boot);
// none for an image or an unused disk, which is read as it is.
import type { ContainerSpec } from '../../protocol/model.ts';
import { DEFAULT_STORE_BYTES } from '../device-mapper/cow-store.ts';
import { DeviceMapperProvider, mappedDeviceOf } from '../device-mapper/provider.ts';
import type { CopyProgress, SnapshotProvider } from '../snapshot/provider.ts';
import type { SnapshotSession } from '../snapshot/session.ts';
import type { AttachedVolume } from '../tap/attach.ts';
import { TapProvider } from '../tap/provider.ts';
import { checkUnprotectedSource } from './backup-source.ts';

/** The copy-on-write store a device-mapper point gets when the request names none. */
const DEFAULT_STORE: ContainerSpec = { kind: 'memory', capacityBytes: DEFAULT_STORE_BYTES };

export interface ProviderRequest {
  source: string;
  volume: AttachedVolume | null;
  container: ContainerSpec | undefined;
  preHook?: string | undefined;
  postHook?: string | undefined;
}

export async function providerFor(request: ProviderRequest): Promise<SnapshotProvider | null> {
  const hooks = {
    ...(request.preHook ? { preHook: request.preHook } : {}),
    ...(request.postHook ? { postHook: request.postHook } : {}),
  };
  if (request.volume) return TapProvider.open(request.volume, request.source, hooks);
  const mapped = await mappedDeviceOf(request.source).catch(() => null);
  if (!mapped) return null;
  // By its kernel name: a /dev/mapper node made without udev is not a link the device helpers can follow.
  const uses = await checkUnprotectedSource(`/dev/${mapped.kernel}`, true).catch(() => []);
  if (uses.length === 0) return null;
  return DeviceMapperProvider.open(request.source, { store: request.container ?? DEFAULT_STORE, ...hooks });
}

export function copyProgress(session: SnapshotSession): CopyProgress {
  return {
    remainingBytes: () => {
      const stats = session.stats();
      return stats.totalBytes - stats.bytesCopied;
    },
    bytesPerSecond: () => session.stats().bytesPerSecond,
  };
}
