import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { Plan } from '../../../protocol/model.ts';
import { FakeEngine, makeDrive } from '../testing/fake-engine.ts';
import { renderWithStore } from '../testing/render.tsx';
import { PlansView } from './PlansView.tsx';

describe('Backup plans view', () => {
  it('saves a new plan with schedule, retention and container, and shows it', async () => {
    const engine = new FakeEngine().handle(
      'plans.save',
      (draft) => ({ ...draft, id: 'plan-1', lastRun: null, nextRun: null }) as Plan,
    );
    const { store } = renderWithStore(<PlansView />, engine);
    act(() => store.setState({ drives: [makeDrive()], currentRepo: '/backups/r', repos: ['/backups/r'] }));
    fireEvent.click(screen.getByRole('button', { name: 'New plan' }));
    const form = screen.getByRole('form', { name: 'Backup plan' });
    fireEvent.change(within(form).getByLabelText('Name'), { target: { value: 'USB nightly' } });
    fireEvent.change(within(form).getByLabelText('Schedule'), { target: { value: '@hourly' } });
    fireEvent.change(within(form).getByLabelText('Last'), { target: { value: '3' } });
    fireEvent.change(within(form).getByLabelText('Container kind'), { target: { value: 'file' } });
    fireEvent.change(within(form).getByLabelText('Container path'), { target: { value: '/var/tmp/c' } });
    fireEvent.click(within(form).getByRole('button', { name: 'Save plan' }));
    await waitFor(() => expect(screen.queryByRole('form')).toBeNull());
    expect(engine.callsOf('plans.save')).toEqual([
      {
        id: '',
        name: 'USB nightly',
        source: '/dev/sdb',
        repo: '/backups/r',
        schedule: '@hourly',
        retention: { keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
        container: { kind: 'file', capacityBytes: 256 * 1024 * 1024, path: '/var/tmp/c' },
        enabled: true,
      },
    ]);
    expect(within(screen.getByRole('list', { name: 'Backup plans' })).getByText('USB nightly')).toBeTruthy();
  });

  it('keeps the form open and shows the engine’s reason when a plan is refused', async () => {
    const engine = new FakeEngine().fail(
      'plans.save',
      'bad-request',
      "Schedule 'every tuesday' is not a preset or a cron expression.",
    );
    const { store } = renderWithStore(<PlansView />, engine);
    act(() => store.setState({ drives: [makeDrive()], currentRepo: '/backups/r' }));
    fireEvent.click(screen.getByRole('button', { name: 'New plan' }));
    fireEvent.click(screen.getByRole('button', { name: 'Save plan' }));
    expect((await screen.findByRole('alert')).textContent).toContain(
      "Schedule 'every tuesday' is not a preset",
    );
    expect(screen.getByRole('form', { name: 'Backup plan' })).toBeTruthy();
  });
});
