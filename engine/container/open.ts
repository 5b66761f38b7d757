// Opens the intermediate container a backup asks for (protocol ContainerSpec, the same from the CLI, a plan or
// the API): memory, a new file, or a spare partition that is neither mounted, nor part of the disk being
// backed up, nor on the repository's disk, and big enough. One default when none is named.

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
  /** The repository's directory: a device container may not be on its disk. */
  repositoryPath?: string;
}

/** The container when a backup names none: memory. */
export const DEFAULT_CONTAINER: ContainerSpec = { kind: 'memory' };
/** Capacity of a memory or file container that names none: 64 MiB of preserved units. */
export const DEFAULT_CONTAINER_BYTES = 64 << 20;
/** Fewest units a container must hold: fewer and writers would be suspended all the time. */
export const MINIMUM_CONTAINER_UNITS = 16;

export async function openContainer(
  spec: ContainerSpec = DEFAULT_CONTAINER,
  options: OpenContainerOptions,
): Promise<IntermediateContainer> {
  const capacityBytes = Math.max(spec.capacityBytes ?? DEFAULT_CONTAINER_BYTES, options.slotSize);
  switch (spec.kind) {
    case 'memory':
      return new MemoryContainer({ capacityBytes, slotSize: options.slotSize });
    case 'file':
      if (!spec.path)
        throw new ContainerError('a file container needs a path (e.g. /var/tmp/diskline.container)');
      return FileContainer.create({
        path: spec.path,
        capacityBytes,
        ...(spec.initialBytes ? { initialBytes: Math.min(spec.initialBytes, capacityBytes) } : {}),
        slotSize: options.slotSize,
      });
    case 'device':
      if (!spec.path) throw new ContainerError('a device container needs the path of a spare partition');
      return DeviceContainer.open({
        path: spec.path,
        ...(spec.capacityBytes ? { capacityBytes } : {}),
        slotSize: options.slotSize,
        forbiddenPaths: [options.sourcePath],
        ...(options.repositoryPath ? { repositoryPath: options.repositoryPath } : {}),
        minimumBytes: MINIMUM_CONTAINER_UNITS * options.slotSize,
      });
  }
}
