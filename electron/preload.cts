// The preload bridge: the renderer's only way out of its sandbox. It exposes `window.diskline`, an
// EngineClient with one call per protocol method and one subscription per event, and never ipcRenderer
// itself. A sandboxed preload is a single CommonJS file that may require only 'electron', so the method and
// event names are listed here; electron/preload.test.ts fails when they drift from protocol/messages.ts.

import type { EventName, MethodName } from '../protocol/messages.ts' with { 'resolution-mode': 'import' };
import type { DisklineBridge } from './bridge.ts' with { 'resolution-mode': 'import' };
import type { CallAnswer } from './ipc-policy.ts' with { 'resolution-mode': 'import' };

const { contextBridge, ipcRenderer } = require('electron') as typeof import('electron');

const callChannel = 'diskline:call';
const eventChannel = 'diskline:event';

const methodList = [
  'engine.status',
  'drives.list',
  'points.list',
  'repo.init',
  'backup.start',
  'restore.preview',
  'restore.start',
  'verify.start',
  'prune.start',
  'drill.start',
  'mount.start',
  'mount.stop',
  'volumes.attach',
  'volumes.detach',
  'jobs.list',
  'jobs.cancel',
  'plans.list',
  'plans.save',
  'plans.delete',
  'plans.runNow',
  'schedules.setPaused',
  'blockmap.subscribe',
  'repo.checkS3',
  'copy.start',
  'protection.list',
  'protection.protect',
  'protection.unprotect',
] as const satisfies readonly MethodName[];

const eventList = [
  'job.updated',
  'points.changed',
  'plans.changed',
  'plan.ran',
  'blockmap',
  'drives.changed',
] as const satisfies readonly EventName[];

// A method or event added to the protocol but not listed here fails the type-check, naming it.
type Unlisted =
  | Exclude<MethodName, (typeof methodList)[number]>
  | Exclude<EventName, (typeof eventList)[number]>;
const everyNameListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyNameListed;

const methodNames: ReadonlySet<string> = new Set(methodList);
const eventNames: ReadonlySet<string> = new Set(eventList);

type Listener = (data: unknown) => void;
const listeners = new Map<string, Set<Listener>>();

// One IPC listener for all events; the renderer's listeners get the data only, never the IPC event.
ipcRenderer.on(eventChannel, (_event, message: { event: string; data: unknown }) => {
  for (const listener of listeners.get(message?.event) ?? []) {
    try {
      listener(message.data);
    } catch (error) {
      console.error(`diskline: a listener of '${message.event}' threw`, error);
    }
  }
});

const bridge: DisklineBridge = {
  call(method, params) {
    if (!methodNames.has(method)) {
      return Promise.reject(new Error(`Diskline has no engine method '${String(method)}'.`));
    }
    return ipcRenderer.invoke(callChannel, { method, params }).then((answer: CallAnswer) => {
      if (answer.ok) return answer.result as never;
      throw Object.assign(new Error(answer.error.message), { name: 'EngineError', code: answer.error.code });
    });
  },
  on(event, listener) {
    if (!eventNames.has(event)) throw new Error(`Diskline has no engine event '${String(event)}'.`);
    if (typeof listener !== 'function') throw new TypeError('A listener must be a function.');
    let set = listeners.get(event);
    if (!set) listeners.set(event, (set = new Set()));
    const wrapped = listener as Listener;
    set.add(wrapped);
    return () => {
      set.delete(wrapped);
    };
  },
};

contextBridge.exposeInMainWorld('diskline', bridge);
