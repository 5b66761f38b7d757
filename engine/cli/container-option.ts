// The --container option of backup and schedule add: the text parsed by the protocol's one syntax, with a
// file or device path made absolute here (the engine that opens it may be a daemon with another cwd).
import { resolve } from 'node:path';
import { CONTAINER_SYNTAX, parseContainerText } from '../../protocol/container-text.ts';
import type { ContainerSpec } from '../../protocol/model.ts';

export { CONTAINER_SYNTAX };

export function containerOption(text: string): ContainerSpec {
  const spec = parseContainerText(text);
  return spec.path ? { ...spec, path: resolve(spec.path) } : spec;
}
