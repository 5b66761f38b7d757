// Wires an engine connection into the store: events write straight into the slices; on every (re)connection the
// store reloads what it shows and re-subscribes the block map of the job it follows.
import type { EngineConnection } from '../engine/connection.ts';
import type { AppStore } from './app-store.ts';

/** Cells requested for a block map: enough for a crisp map, small enough to redraw at 60 Hz. */
export const BLOCK_MAP_CELLS = 16_384;

export function bindEngine(store: AppStore, connection: EngineConnection): () => void {
  const { client } = connection;
  const state = () => store.getState();
  const unsubscribers = [
    client.on('job.updated', (job) => state().applyJob(job)),
    client.on('blockmap', (event) => state().applyBlockMap(event)),
    client.on('points.changed', ({ repo }) => {
      if (repo === state().currentRepo) void state().loadPoints();
    }),
    client.on('plans.changed', () => void state().loadPlans()),
    client.on('drives.changed', () => void state().loadDrives()),
    client.on('plan.ran', (ran) =>
      state().notify(ran.ok ? 'ok' : 'error', `${ran.name}: ${ran.message || (ran.ok ? 'done' : 'failed')}`),
    ),
    connection.onState((connectionState) => {
      const wasConnected = state().connection.status === 'connected';
      state().setConnection(connectionState);
      if (connectionState.status === 'connected' && !wasConnected) {
        state().forgetBlockMapSubscriptions();
        void reloadAll(store);
      }
    }),
  ];
  return () => {
    for (const unsubscribe of unsubscribers) unsubscribe();
  };
}

export async function reloadAll(store: AppStore): Promise<void> {
  const state = store.getState();
  await Promise.all([state.loadStatus(), state.loadDrives(), state.loadPlans(), state.loadJobs()]);
  if (store.getState().currentRepo) await store.getState().loadPoints();
  const live = store.getState().liveJobId;
  const job = live ? store.getState().jobs[live] : undefined;
  if (job?.kind === 'backup' && job.state === 'running')
    await state.subscribeBlockMap(job.id, BLOCK_MAP_CELLS);
}
