// A fake EngineClient for component tests: the client is our own process boundary, so tests answer its calls with
// handlers, record what was asked, and emit events as the engine would.
import type {
  EngineClient,
  EventData,
  EventName,
  MethodName,
  Params,
  Result,
} from '../../../protocol/messages.ts';
import type { ContainerState, Drive, Job, Plan, PointSummary } from '../../../protocol/model.ts';
import { EngineError } from '../engine/connection.ts';

type Handler<M extends MethodName> = (params: Params<M>) => Result<M> | Promise<Result<M>>;

export class FakeEngine implements EngineClient {
  readonly calls: { method: MethodName; params: unknown }[] = [];
  #handlers = new Map<MethodName, (params: unknown) => unknown>();
  #listeners = new Map<EventName, Set<(data: unknown) => void>>();

  handle<M extends MethodName>(method: M, handler: Handler<M>): this {
    this.#handlers.set(method, handler as (params: unknown) => unknown);
    return this;
  }

  /** Makes `method` fail the way the engine reports errors. */
  fail(method: MethodName, code: string, message: string): this {
    this.#handlers.set(method, () => {
      throw new EngineError(code, message);
    });
    return this;
  }

  async call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    this.calls.push({ method, params });
    const handler = this.#handlers.get(method);
    if (!handler) throw new EngineError('unknown-method', `The fake engine has no handler for ${method}.`);
    return (await handler(params)) as Result<M>;
  }

  on<E extends EventName>(event: E, listener: (data: EventData<E>) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    const entry = listener as (data: unknown) => void;
    set.add(entry);
    return () => set.delete(entry);
  }

  emit<E extends EventName>(event: E, data: EventData<E>): void {
    for (const listener of this.#listeners.get(event) ?? []) listener(data);
  }

  callsOf(method: MethodName): unknown[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.params);
  }
}

const GiB = 1024 ** 3;

export function makeDrive(overrides: Partial<Drive> = {}): Drive {
  return {
    device: '/dev/sdb',
    description: 'USB disk',
    size: 64 * GiB,
    isSystem: false,
    isRemovable: true,
    mountpoints: [],
    partitionTable: 'gpt',
    partitions: [
      {
        index: 1,
        start: 1 << 20,
        size: 64 * GiB - (2 << 20),
        type: 'Linux filesystem',
        filesystem: 'ext4',
        blockSize: 4096,
        usedBytes: 20 * GiB,
      },
    ],
    attachedAs: null,
    ...overrides,
  };
}

export function makePoint(overrides: Partial<PointSummary> = {}): PointSummary {
  return {
    id: 'point-a',
    repo: '/backups/r',
    time: '2026-11-20T10:00:00.000Z',
    source: '/dev/sda',
    sourceSize: 16 * GiB,
    consistency: 'frozen',
    parent: null,
    usedBytes: 4 * GiB,
    changedBytes: GiB,
    storedBytes: GiB / 2,
    complete: true,
    verify: 'unverified',
    drill: null,
    ...overrides,
  };
}

export function makeContainer(overrides: Partial<ContainerState> = {}): ContainerState {
  return {
    usedBytes: 0,
    capacityBytes: 256 * 1024 * 1024,
    highWatermark: 192 * 1024 * 1024,
    lowWatermark: 64 * 1024 * 1024,
    pressure: 'normal',
    ...overrides,
  };
}

export function makeJob(overrides: Partial<Job> = {}): Job {
  return {
    id: 'job-1',
    kind: 'backup',
    state: 'running',
    title: 'Back up /dev/sda',
    startedAt: '2026-11-25T10:00:00.000Z',
    endedAt: null,
    doneBytes: 0,
    totalBytes: 4 * GiB,
    bytesPerSecond: 0,
    etaSeconds: null,
    container: makeContainer(),
    units: null,
    unitSize: 65536,
    error: null,
    failureKind: null,
    result: null,
    ...overrides,
  };
}

export function makePlan(overrides: Partial<Plan> = {}): Plan {
  return {
    id: 'plan-1',
    name: 'Nightly',
    source: '/dev/sda',
    repo: '/backups/r',
    schedule: 'daily 02:30',
    retention: { keepDaily: 7 },
    container: { kind: 'memory', capacityBytes: 256 * 1024 * 1024 },
    enabled: true,
    lastRun: null,
    nextRun: '2026-11-26T02:30:00.000Z',
    ...overrides,
  };
}
