import { act, screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { CellState } from '../../../protocol/messages.ts';
import { BLOCK_MAP_CELLS } from '../store/bind-engine.ts';
import { FakeEngine, makeContainer, makeJob } from '../testing/fake-engine.ts';
import { renderWithStore } from '../testing/render.tsx';
import { LiveJobView } from './LiveJobView.tsx';

describe('Live job view', () => {
  it('subscribes to the block map and moves the progress bar and the container meter with job events', async () => {
    const engine = new FakeEngine()
      .handle('blockmap.subscribe', () => ({}))
      .handle('jobs.cancel', () => ({}));
    const { store } = renderWithStore(<LiveJobView />, engine);
    act(() => {
      store.getState().applyJob(makeJob({ id: 'b1', doneBytes: 0, totalBytes: 1000 }));
      store.getState().followJob('b1');
    });
    expect(engine.callsOf('blockmap.subscribe')).toEqual([{ jobId: 'b1', cells: BLOCK_MAP_CELLS }]);
    expect(screen.getByRole('img', { name: 'Block map' })).toBeTruthy();

    act(() =>
      store.getState().applyJob(
        makeJob({
          id: 'b1',
          doneBytes: 250,
          totalBytes: 1000,
          bytesPerSecond: 100,
          etaSeconds: 8,
          container: makeContainer({ usedBytes: 200, capacityBytes: 400, pressure: 'throttled' }),
        }),
      ),
    );
    const progress = screen.getByRole('progressbar', { name: 'Copy progress' });
    expect(progress.getAttribute('aria-valuenow')).toBe('250');
    expect(progress.getAttribute('aria-valuemax')).toBe('1000');
    const meter = screen.getByRole('meter', { name: 'Intermediate container' });
    expect(meter.getAttribute('aria-valuenow')).toBe('200');
    expect(meter.getAttribute('aria-valuemax')).toBe('400');
    expect(screen.getByText('Above the high watermark: writers are slowed')).toBeTruthy();
    expect(screen.getByText('8 s')).toBeTruthy();
  });

  it('counts cells per state in the legend as block-map events arrive', async () => {
    const { store } = renderWithStore(
      <LiveJobView />,
      new FakeEngine().handle('blockmap.subscribe', () => ({})),
    );
    act(() => {
      store.getState().applyJob(makeJob({ id: 'b1' }));
      store.getState().followJob('b1');
      store.getState().applyBlockMap({
        jobId: 'b1',
        cellCount: 3,
        unitsPerCell: 1,
        full: true,
        cells: btoa(String.fromCharCode(CellState.pending, CellState.pending, CellState.free)),
      });
      store.getState().applyBlockMap({
        jobId: 'b1',
        cellCount: 3,
        unitsPerCell: 1,
        full: false,
        changes: [0, CellState.copied],
      });
    });
    const legend = screen.getByRole('list', { name: 'Block map legend' });
    await waitFor(() => expect(legend.textContent).toContain('Pending 1'));
    expect(legend.textContent).toContain('1 cell = 64.0 KiB');
    expect(legend.textContent).toContain('Copied 1');
    expect(legend.textContent).toContain('Free 1');
  });

  it('shows why a job failed and offers cancel only while it runs', () => {
    const { store } = renderWithStore(
      <LiveJobView />,
      new FakeEngine().handle('blockmap.subscribe', () => ({})),
    );
    act(() => {
      store.getState().applyJob(makeJob({ id: 'b1' }));
      store.getState().followJob('b1');
    });
    expect(screen.getByRole('button', { name: 'Cancel backup' })).toBeTruthy();
    act(() =>
      store.getState().applyJob(
        makeJob({
          id: 'b1',
          state: 'failed',
          error: 'Could not read /dev/sdb at 4096: I/O error. Check the cable.',
        }),
      ),
    );
    expect(screen.queryByRole('button', { name: 'Cancel backup' })).toBeNull();
    expect(screen.getByRole('alert').textContent).toBe(
      'Could not read /dev/sdb at 4096: I/O error. Check the cable.',
    );
  });
});
