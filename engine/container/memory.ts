// A container in RAM: the fastest, bounded by the capacity given (the session never exceeds it).

import { ContainerError, type IntermediateContainer } from './types.ts';

export class MemoryContainer implements IntermediateContainer {
  readonly kind = 'memory' as const;
  readonly description = 'memory';
  readonly capacity: number;
  readonly slotSize: number;
  private readonly held = new Map<number, Buffer>();

  constructor(options: { capacityBytes: number; slotSize: number }) {
    if (options.capacityBytes < options.slotSize) {
      throw new ContainerError(
        `memory container of ${options.capacityBytes} bytes cannot hold one ${options.slotSize}-byte unit; give it more`,
      );
    }
    this.slotSize = options.slotSize;
    this.capacity = Math.floor(options.capacityBytes / options.slotSize) * options.slotSize;
  }

  get usedBytes(): number {
    return this.held.size * this.slotSize;
  }

  async put(unit: number, data: Buffer): Promise<void> {
    if (data.length > this.slotSize) throw new ContainerError(`unit ${unit} is larger than a slot`);
    if (this.held.has(unit)) throw new ContainerError(`memory container already holds unit ${unit}`);
    if (this.usedBytes + this.slotSize > this.capacity) {
      throw new ContainerError(`memory container is full (${this.capacity} bytes); unit ${unit} not stored`);
    }
    this.held.set(unit, Buffer.from(data));
  }

  async take(unit: number): Promise<Buffer> {
    const data = this.held.get(unit);
    if (!data) throw new ContainerError(`memory container does not hold unit ${unit}`);
    return data; // never mutated after put, and free only drops the reference
  }

  free(unit: number): void {
    this.held.delete(unit);
  }

  has(unit: number): boolean {
    return this.held.has(unit);
  }

  async close(): Promise<void> {
    this.held.clear();
  }
}
