// Opens the intermediate container a backup plan asks for (protocol ContainerSpec): memory, a new file, or a
// spare partition that is neither mounted nor part of the disk being backed up.

import type { ContainerSpec } from '../../protocol/model.ts';
import { DeviceContainer } from './device.ts';
import { FileContainer } from './file.ts';
import { MemoryContainer } from './memory.ts';
import { ContainerError, type IntermediateContainer } from './types.ts';

export interface OpenContainerOptions {
  /** The copy unit: every stored unit takes one slot of this size. */
  slotSize: number;
  /** The disk being backed up: a device container may be neither it nor one of its partitions. */
  sourcePath: string;
}

export async function openContainer(
  spec: ContainerSpec,
  options: OpenContainerOptions,
): Promise<IntermediateContainer> {
  const capacityBytes = Math.max(spec.capacityBytes, options.slotSize);
  switch (spec.kind) {
    case 'memory':
      return new MemoryContainer({ capacityBytes, slotSize: options.slotSize });
    case 'file':
      if (!spec.path)
        throw new ContainerError('a file container needs a path (e.g. /var/tmp/diskline.container)');
      return FileContainer.create({ path: spec.path, capacityBytes, slotSize: options.slotSize });
    case 'device':
      if (!spec.path) throw new ContainerError('a device container needs the path of a spare partition');
      return DeviceContainer.open({
        path: spec.path,
        capacityBytes,
        slotSize: options.slotSize,
        forbiddenPaths: [options.sourcePath],
      });
  }
}
