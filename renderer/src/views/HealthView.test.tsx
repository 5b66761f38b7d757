import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { FakeEngine, makeJob, makePlan, makePoint } from '../testing/fake-engine.ts';
import { renderWithStore } from '../testing/render.tsx';
import { HealthView } from './HealthView.tsx';
import { SchedulesView } from './SchedulesView.tsx';

describe('Repository health view', () => {
  it('counts damaged and interrupted points and says what to do about each', () => {
    const { store } = renderWithStore(<HealthView />);
    act(() =>
      store.setState({
        currentRepo: '/backups/r',
        points: [
          makePoint({ id: 'a', verify: 'ok' }),
          makePoint({ id: 'b', verify: 'damaged' }),
          makePoint({ id: 'c', complete: false }),
        ],
      }),
    );
    const attention = screen.getByRole('region', { name: 'Needs attention' });
    expect(attention.textContent).toContain('damaged: restore from another point');
    expect(attention.textContent).toContain('interrupted backup of /dev/sda: run the backup again');
  });

  it('starts a full verify and shows how it ended, with the engine’s reason on failure', async () => {
    const engine = new FakeEngine().handle('verify.start', (params) =>
      makeJob({ id: 'v1', kind: 'verify', title: `Verify ${params.repo}`, state: 'running' }),
    );
    const { store } = renderWithStore(<HealthView />, engine);
    act(() => store.setState({ currentRepo: '/backups/r' }));
    fireEvent.click(screen.getByRole('button', { name: 'Verify every byte' }));
    await waitFor(() =>
      expect(engine.callsOf('verify.start')).toEqual([{ repo: '/backups/r', readData: true }]),
    );
    await screen.findByRole('progressbar', { name: 'Verify progress' });
    act(() =>
      store.getState().applyJob(
        makeJob({
          id: 'v1',
          kind: 'verify',
          title: 'Verify /backups/r',
          state: 'failed',
          error:
            'Chunk 3f2a… of point p1 fails its hash: the repository is damaged. Restore from another point.',
        }),
      ),
    );
    const outcome = screen.getByRole('region', { name: 'Latest verify' });
    expect(within(outcome).getByRole('alert').textContent).toContain('fails its hash');
  });
});

describe('Schedules view', () => {
  it('pauses every schedule and previews a prune by the plan’s retention', async () => {
    const engine = new FakeEngine()
      .handle('schedules.setPaused', ({ paused }) => ({ paused }))
      .handle('prune.start', () =>
        makeJob({
          id: 'pr',
          kind: 'prune',
          title: 'Preview pruning /backups/r',
          state: 'succeeded',
          result: { removedPoints: 2, freedBytes: 3 * 1024 ** 3 },
        }),
      );
    const { store } = renderWithStore(<SchedulesView />, engine);
    act(() => store.setState({ plans: [makePlan()] }));
    fireEvent.click(screen.getByRole('checkbox', { name: 'Pause all schedules' }));
    await waitFor(() => expect(store.getState().schedulesPaused).toBe(true));
    expect(screen.getByRole('cell', { name: 'paused' })).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Preview prune' }));
    const outcome = await screen.findByRole('region', { name: 'Latest prune' });
    expect(engine.callsOf('prune.start')).toEqual([
      { repo: '/backups/r', retention: { keepDaily: 7 }, dryRun: true },
    ]);
    expect(outcome.textContent).toContain('Removed points2');
    expect(outcome.textContent).toContain('Freed bytes3.00 GiB');
  });
});
