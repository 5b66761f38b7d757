import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { FakeEngine, makeDrive, makeJob, makePoint } from '../testing/fake-engine.ts';
import { renderWithStore } from '../testing/render.tsx';
import { DrivesView } from './DrivesView.tsx';

describe('Drives view', () => {
  it('lists drives with partitions, file systems and used space, and flags the system disk', () => {
    const { store } = renderWithStore(<DrivesView />);
    act(() =>
      store.setState({
        drivesLoaded: true,
        drives: [
          makeDrive({
            device: '/dev/nvme0n1',
            description: 'System SSD',
            isSystem: true,
            mountpoints: ['/'],
          }),
          makeDrive(),
        ],
      }),
    );
    const drives = within(screen.getByRole('list', { name: 'Drives' })).getAllByRole('listitem');
    expect(drives).toHaveLength(2);
    expect(within(drives[0]!).getByText('System disk')).toBeTruthy();
    expect(within(drives[1]!).queryByText('System disk')).toBeNull();
    const row = within(drives[1]!).getByRole('row', { name: /ext4/ });
    expect(row.textContent).toContain('20.0 GiB');
  });

  it('backs up a drive into the current repository and reports a refusal next to it', async () => {
    const engine = new FakeEngine().fail(
      'backup.start',
      'busy',
      '/dev/sdb is in use by a running job; wait or cancel it.',
    );
    const { store } = renderWithStore(<DrivesView />, engine);
    act(() => store.setState({ drivesLoaded: true, drives: [makeDrive()], currentRepo: '/backups/r' }));
    fireEvent.click(screen.getByRole('button', { name: 'Back up now' }));
    expect((await screen.findByRole('alert')).textContent).toContain('/dev/sdb is in use by a running job');
    engine.handle('backup.start', () => makeJob({ id: 'j' }));
    fireEvent.click(screen.getByRole('button', { name: 'Back up now' }));
    await waitFor(() => expect(store.getState().view).toBe('live'));
    expect(engine.callsOf('backup.start').at(-1)).toEqual({ source: '/dev/sdb', repo: '/backups/r' });
  });

  it('offers to finish an interrupted backup of a drive, or to start afresh (noResume)', async () => {
    const engine = new FakeEngine().handle('backup.start', () => makeJob({ id: 'j' }));
    const { store } = renderWithStore(<DrivesView />, engine);
    const drive = makeDrive();
    act(() =>
      store.setState({
        drivesLoaded: true,
        drives: [drive],
        currentRepo: '/backups/r',
        points: [makePoint({ source: drive.device, sourceSize: drive.size, complete: false })],
      }),
    );
    expect(screen.getByRole('button', { name: 'Finish interrupted backup' })).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Start afresh' }));
    await waitFor(() => expect(store.getState().view).toBe('live'));
    expect(engine.callsOf('backup.start').at(-1)).toEqual({
      source: '/dev/sdb',
      repo: '/backups/r',
      noResume: true,
    });
  });

  it('a mounted, unprotected drive explains why before backing up, and backs up anyway only when asked', async () => {
    const engine = new FakeEngine().handle('backup.start', () => makeJob({ id: 'j' }));
    const { store } = renderWithStore(<DrivesView />, engine);
    act(() =>
      store.setState({
        drivesLoaded: true,
        drives: [makeDrive({ mountpoints: ['/home'] })],
        currentRepo: '/backups/r',
      }),
    );
    fireEvent.click(screen.getByRole('button', { name: 'Back up now' }));
    const choices = screen.getByRole('region', { name: 'Back up /dev/sdb while in use' });
    expect(choices.textContent).toContain('/dev/sdb is mounted at /home and not protected');
    expect(engine.callsOf('backup.start')).toHaveLength(0);
    fireEvent.click(within(choices).getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('region', { name: 'Back up /dev/sdb while in use' })).toBeNull();
    expect(engine.callsOf('backup.start')).toHaveLength(0);
    fireEvent.click(screen.getByRole('button', { name: 'Back up now' }));
    fireEvent.click(screen.getByRole('button', { name: 'Back up anyway (crash-consistent)' }));
    await waitFor(() => expect(store.getState().view).toBe('live'));
    expect(engine.callsOf('backup.start').at(-1)).toEqual({
      source: '/dev/sdb',
      repo: '/backups/r',
      allowInconsistent: true,
    });
  });

  it('protects a drive through the tap and says which device to mount instead', async () => {
    let attached = false;
    const engine = new FakeEngine()
      .handle('volumes.attach', ({ source }) => {
        attached = true;
        return { source, loopDevice: '/dev/loop7', notes: ['Change tracking starts now.'] };
      })
      .handle('drives.list', () => [makeDrive({ attachedAs: attached ? '/dev/loop7' : null })]);
    const { store } = renderWithStore(<DrivesView />, engine);
    act(() => store.setState({ drivesLoaded: true, drives: [makeDrive()] }));
    fireEvent.click(screen.getByRole('button', { name: 'Protect while in use' }));
    const notes = await screen.findByRole('list', { name: 'Notes on protecting /dev/sdb' });
    expect(notes.textContent).toContain('Mount /dev/loop7 instead of /dev/sdb while it is in use.');
    expect(notes.textContent).toContain('Change tracking starts now.');
    expect(screen.getByText('Protected as /dev/loop7')).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Stop protecting' })).toBeTruthy();
  });
});
