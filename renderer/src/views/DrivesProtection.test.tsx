import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { DiskProtection } from '../../../protocol/protection.ts';
import { FakeEngine, makeDrive } from '../testing/fake-engine.ts';
import { renderWithStore } from '../testing/render.tsx';
import { DrivesView } from './DrivesView.tsx';

const systemDisk = makeDrive({
  device: '/dev/nvme0n1',
  description: 'System SSD',
  isSystem: true,
  mountpoints: ['/'],
});

function unprotected(overrides: Partial<DiskProtection> = {}): DiskProtection {
  return {
    disk: '/dev/nvme0n1',
    kind: 'unprotected',
    detail:
      '/dev/nvme0n1p2 is in use and not protected: a backup now could be torn; protect the disk, then restart once',
    afterRestart: null,
    canProtect: true,
    canUnprotect: false,
    volumes: [
      {
        device: '/dev/nvme0n1p1',
        kind: 'unprotected',
        detail: 'not in use',
        inUse: false,
        protectedAtBoot: false,
        afterRestart: null,
      },
      {
        device: '/dev/nvme0n1p2',
        kind: 'unprotected',
        detail: 'in use',
        inUse: true,
        protectedAtBoot: false,
        afterRestart: null,
      },
    ],
    ...overrides,
  };
}

const afterRestart =
  'after a restart /dev/nvme0n1p2 is mounted through a linear device-mapper target, and backups take consistent points of it';
const protectedSoon = unprotected({
  kind: 'needs-restart',
  detail:
    'protected from the next restart on (/dev/nvme0n1p2): until then a backup of what is in use could be torn',
  afterRestart,
  canProtect: false,
  canUnprotect: true,
  volumes: [
    unprotected().volumes[0]!,
    { ...unprotected().volumes[1]!, kind: 'needs-restart', protectedAtBoot: true, afterRestart },
  ],
});

describe('Drives view: protection while in use', () => {
  it('reads each drive’s protection with the drives and shows how it is protected, and why', async () => {
    const engine = new FakeEngine()
      .handle('drives.list', () => [systemDisk, makeDrive()])
      .handle('protection.list', () => [
        unprotected(),
        {
          disk: '/dev/sdb',
          kind: 'tap',
          detail: 'not in use: attach it through the tap (Protect while in use) before mounting it',
          afterRestart: null,
          canProtect: false,
          canUnprotect: false,
          volumes: [],
        },
      ]);
    const { store } = renderWithStore(<DrivesView />, engine);
    await act(() => store.getState().loadDrives());
    const system = screen.getByRole('region', { name: 'Protection of /dev/nvme0n1' });
    expect(within(system).getByText('Not protected')).toBeTruthy();
    expect(system.textContent).toContain('/dev/nvme0n1p2 is in use and not protected');
    expect(within(system).getByRole('button', { name: 'Protect…' })).toBeTruthy();
    expect(within(system).queryByRole('button', { name: 'Unprotect…' })).toBeNull();
    const usb = screen.getByRole('region', { name: 'Protection of /dev/sdb' });
    expect(within(usb).getByText('Tap')).toBeTruthy();
    expect(within(usb).queryByRole('button', { name: 'Protect…' })).toBeNull();
  });

  it('protects only once the disk’s name is typed, says what a restart will change, and shows the new state', async () => {
    const engine = new FakeEngine().handle('protection.protect', () => protectedSoon);
    const { store } = renderWithStore(<DrivesView />, engine);
    act(() =>
      store.setState({
        drivesLoaded: true,
        drives: [systemDisk],
        protection: { '/dev/nvme0n1': unprotected() },
      }),
    );
    fireEvent.click(screen.getByRole('button', { name: 'Protect…' }));
    const dialog = screen.getByRole('dialog', { name: 'Protect /dev/nvme0n1?' });
    expect(dialog.textContent).toContain(
      'After the next restart, /dev/nvme0n1p2 is mounted through a linear',
    );
    const confirm = within(dialog).getByRole('button', { name: 'Protect /dev/nvme0n1' }) as HTMLButtonElement;
    expect(confirm.disabled).toBe(true);
    const typed = within(dialog).getByRole('textbox', { name: 'Type /dev/nvme0n1 to confirm' });
    fireEvent.change(typed, { target: { value: '/dev/nvme0n1p2' } });
    expect(confirm.disabled).toBe(true);
    fireEvent.change(typed, { target: { value: '/dev/nvme0n1' } });
    expect(confirm.disabled).toBe(false);
    fireEvent.click(confirm);
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(engine.callsOf('protection.protect')).toEqual([
      { device: '/dev/nvme0n1', confirm: '/dev/nvme0n1' },
    ]);
    const card = screen.getByRole('region', { name: 'Protection of /dev/nvme0n1' });
    expect(within(card).getByText('Protected after restart')).toBeTruthy();
    expect(card.textContent).toContain(`After a restart: ${afterRestart}`);
    expect(within(card).getByRole('button', { name: 'Unprotect…' })).toBeTruthy();
  });

  it('an engine refusal stays in the dialog, and the state shown is unchanged', async () => {
    const engine = new FakeEngine().fail(
      'protection.protect',
      'refused',
      '/dev/nvme0n1p2 is on /dev/nvme0n1, the disk that holds the repository /backups/r: a disk cannot be protected into its own repository; nothing was changed',
    );
    const { store } = renderWithStore(<DrivesView />, engine);
    act(() =>
      store.setState({
        drivesLoaded: true,
        drives: [systemDisk],
        protection: { '/dev/nvme0n1': unprotected() },
      }),
    );
    fireEvent.click(screen.getByRole('button', { name: 'Protect…' }));
    const dialog = screen.getByRole('dialog');
    fireEvent.change(within(dialog).getByRole('textbox'), { target: { value: '/dev/nvme0n1' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Protect /dev/nvme0n1' }));
    expect((await within(dialog).findByRole('alert')).textContent).toContain(
      'holds the repository /backups/r',
    );
    expect(store.getState().protection['/dev/nvme0n1']?.kind).toBe('unprotected');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('dialog')).toBeNull();
  });

  it('unprotects with the disk named, saying the partition is mounted directly again after a restart', async () => {
    const engine = new FakeEngine().handle('protection.unprotect', () => unprotected());
    const { store } = renderWithStore(<DrivesView />, engine);
    act(() =>
      store.setState({
        drivesLoaded: true,
        drives: [systemDisk],
        protection: { '/dev/nvme0n1': protectedSoon },
      }),
    );
    const card = screen.getByRole('region', { name: 'Protection of /dev/nvme0n1' });
    expect(card.textContent).toContain(`After a restart: ${afterRestart}`);
    fireEvent.click(within(card).getByRole('button', { name: 'Unprotect…' }));
    const dialog = screen.getByRole('dialog', { name: 'Unprotect /dev/nvme0n1?' });
    expect(dialog.textContent).toContain('After the next restart, /dev/nvme0n1p2 is mounted directly again');
    fireEvent.change(within(dialog).getByRole('textbox'), { target: { value: '/dev/nvme0n1' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Unprotect /dev/nvme0n1' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
    expect(engine.callsOf('protection.unprotect')).toEqual([
      { device: '/dev/nvme0n1', confirm: '/dev/nvme0n1' },
    ]);
    expect(screen.getByText('Not protected')).toBeTruthy();
  });
});
