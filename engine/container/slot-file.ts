// What file and partition containers share: units stored in fixed-size slots of one open file or device,
// read and written with positioned I/O. Subclasses decide how the store is opened, grown and released.

import type { FileHandle } from 'node:fs/promises';
import { SlotAllocator } from './slot-allocator.ts';
import { ContainerError, type ContainerKind, type IntermediateContainer } from './types.ts';

export abstract class SlotFileContainer implements IntermediateContainer {
  abstract readonly kind: ContainerKind;
  readonly description: string;
  readonly capacity: number;
  readonly slotSize: number;
  protected readonly handle: FileHandle;
  protected readonly slots: SlotAllocator;
  private readonly lengthOfUnit = new Map<number, number>();
  private closed = false;

  protected constructor(options: {
    handle: FileHandle;
    description: string;
    capacityBytes: number;
    slotSize: number;
    slotsReady: number;
  }) {
    this.handle = options.handle;
    this.description = options.description;
    this.slotSize = options.slotSize;
    this.capacity = Math.floor(options.capacityBytes / options.slotSize) * options.slotSize;
    if (this.capacity < this.slotSize) {
      throw new ContainerError(
        `${this.description} cannot hold one ${this.slotSize}-byte unit (capacity ${options.capacityBytes} bytes); give it more space`,
      );
    }
    this.slots = new SlotAllocator(options.slotsReady);
  }

  get usedBytes(): number {
    return this.slots.usedSlots * this.slotSize;
  }

  /** Makes more slots available when all ready ones are taken; returns false when none can be added. */
  protected async addSlots(): Promise<boolean> {
    return false;
  }

  async put(unit: number, data: Buffer): Promise<void> {
    if (this.closed) throw new ContainerError(`${this.description} is closed; unit ${unit} not stored`);
    if (data.length > this.slotSize) throw new ContainerError(`unit ${unit} is larger than a slot`);
    if (this.usedBytes + this.slotSize > this.capacity) {
      throw new ContainerError(
        `${this.description} is full (${this.capacity} bytes); unit ${unit} not stored`,
      );
    }
    let slot = this.slots.allocate(unit);
    while (slot < 0) {
      if (!(await this.addSlots())) {
        throw new ContainerError(`${this.description} has no free slot for unit ${unit}`);
      }
      slot = this.slots.allocate(unit);
    }
    this.lengthOfUnit.set(unit, data.length);
    try {
      const { bytesWritten } = await this.handle.write(data, 0, data.length, slot * this.slotSize);
      if (bytesWritten !== data.length)
        throw new Error(`short write (${bytesWritten} of ${data.length} bytes)`);
    } catch (error) {
      this.slots.release(unit);
      this.lengthOfUnit.delete(unit);
      throw new ContainerError(
        `could not store unit ${unit} in ${this.description}: ${(error as Error).message}; ` +
          'check that device or choose another container',
      );
    }
  }

  async take(unit: number): Promise<Buffer> {
    const slot = this.slots.slotOf(unit);
    const length = this.lengthOfUnit.get(unit);
    if (slot < 0 || length === undefined)
      throw new ContainerError(`${this.description} does not hold unit ${unit}`);
    const data = Buffer.allocUnsafe(length);
    try {
      const { bytesRead } = await this.handle.read(data, 0, length, slot * this.slotSize);
      if (bytesRead !== length) throw new Error(`short read (${bytesRead} of ${length} bytes)`);
    } catch (error) {
      throw new ContainerError(
        `could not read unit ${unit} back from ${this.description}: ${(error as Error).message}; ` +
          'the backup cannot complete; check that device or choose another container',
      );
    }
    return data;
  }

  free(unit: number): void {
    this.slots.release(unit);
    this.lengthOfUnit.delete(unit);
  }

  has(unit: number): boolean {
    return this.slots.slotOf(unit) >= 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
    await this.released();
  }

  /** After the handle is closed: e.g. delete the file. */
  protected async released(): Promise<void> {}
}
