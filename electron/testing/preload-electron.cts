// The `electron` module as a sandboxed preload sees it (contextBridge, ipcRenderer), recording what the
// preload exposes and sends; preload.test.ts routes require('electron') here with a module hook.
type IpcListener = (event: unknown, message: unknown) => void;

const exposed: Record<string, unknown> = {};
const invocations: { channel: string; payload: unknown }[] = [];
const ipcListeners = new Map<string, IpcListener[]>();

module.exports = {
  contextBridge: {
    exposeInMainWorld(key: string, api: unknown) {
      exposed[key] = api;
    },
  },
  ipcRenderer: {
    invoke(channel: string, payload: unknown) {
      invocations.push({ channel, payload });
      const { method } = payload as { method: string };
      if (method === 'mount.stop') {
        return Promise.resolve({
          ok: false,
          error: { code: 'not-found', message: 'Nothing is mounted at /mnt/x.' },
        });
      }
      return Promise.resolve({ ok: true, result: { answered: channel } });
    },
    on(channel: string, listener: IpcListener) {
      ipcListeners.set(channel, [...(ipcListeners.get(channel) ?? []), listener]);
    },
  },
  exposed,
  invocations,
  ipcListeners,
  /** Plays the main process sending on a channel. */
  send(channel: string, message: unknown) {
    for (const listener of ipcListeners.get(channel) ?? []) listener({ sender: 'ipc' }, message);
  },
};
