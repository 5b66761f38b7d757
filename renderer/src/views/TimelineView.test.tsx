import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { RestoreDialog } from '../components/RestoreDialog.tsx';
import { FakeEngine, makeDrive, makeJob, makePoint } from '../testing/fake-engine.ts';
import { makeDataTransfer, renderWithStore } from '../testing/render.tsx';
import { TimelineView } from './TimelineView.tsx';

const points = [
  makePoint({ id: 'p1', time: '2026-11-20T10:00:00Z', verify: 'ok' }),
  makePoint({ id: 'p2', time: '2026-11-21T10:00:00Z', complete: false }),
  makePoint({ id: 'p3', time: '2026-11-22T10:00:00Z', verify: 'damaged' }),
];

const devicePreview = {
  target: '/dev/sdb',
  targetKind: 'device' as const,
  targetSize: 64 * 1024 ** 3,
  targetDescription: 'USB disk',
  overwrites: ['Partition 1: ext4, 20.0 GiB used', 'The GPT partition table'],
  typedConfirmation: 'sdb',
  confirmToken: 'tok-sdb',
  refusal: null,
};

function setup() {
  const engine = new FakeEngine()
    .handle('restore.preview', () => devicePreview)
    .handle('restore.start', () => makeJob({ id: 'restore-1', kind: 'restore' }));
  const view = renderWithStore(
    <>
      <TimelineView />
      <RestoreDialog />
    </>,
    engine,
  );
  act(() => view.store.setState({ currentRepo: '/backups/r', points, drives: [makeDrive()] }));
  return view;
}

describe('Timeline view', () => {
  it('lists one item per restore point, interrupted and damaged ones said as such', () => {
    setup();
    const timeline = screen.getByRole('list', { name: 'Timeline' });
    const items = within(timeline).getAllByRole('listitem');
    expect(items).toHaveLength(3);
    expect(within(items[1]!).getByRole('button').getAttribute('aria-label')).toContain(
      'interrupted backup, cannot be restored',
    );
    expect(within(items[2]!).getByRole('button').getAttribute('aria-label')).toContain('verify damaged');
  });

  it('moves the selection with the arrow keys and shows the point’s details', () => {
    const { store } = setup();
    const buttons = within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('button');
    fireEvent.click(buttons[0]!);
    fireEvent.keyDown(buttons[0]!, { key: 'ArrowRight' });
    expect(store.getState().selectedPointId).toBe('p2');
    expect(screen.getByText(/This backup did not finish, so it cannot be restored/)).toBeTruthy();
    expect((screen.getByRole('button', { name: 'Restore to…' }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.keyDown(buttons[1]!, { key: 'End' });
    expect(store.getState().selectedPointId).toBe('p3');
  });

  it('restores by keyboard: Restore to… → a drive → typed confirmation → the engine gets the preview’s token', async () => {
    const { engine, store } = setup();
    fireEvent.click(within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('button')[0]!);
    fireEvent.click(screen.getByRole('button', { name: 'Restore to…' }));
    fireEvent.click(screen.getByRole('menuitem', { name: /USB disk/ }));
    const dialog = await screen.findByRole('dialog', { name: 'Restore onto USB disk?' });
    expect(within(dialog).getByRole('list', { name: 'Will be overwritten' }).textContent).toContain(
      'Partition 1: ext4, 20.0 GiB used',
    );
    const confirm = within(dialog).getByRole('button', { name: 'Overwrite /dev/sdb' }) as HTMLButtonElement;
    expect(confirm.disabled).toBe(true);
    fireEvent.change(within(dialog).getByLabelText('Type sdb to confirm'), { target: { value: 'sdc' } });
    expect(confirm.disabled).toBe(true);
    fireEvent.change(within(dialog).getByLabelText('Type sdb to confirm'), { target: { value: 'sdb' } });
    expect(confirm.disabled).toBe(false);
    fireEvent.click(confirm);
    await waitFor(() => expect(store.getState().liveJobId).toBe('restore-1'));
    expect(engine.callsOf('restore.start')).toEqual([
      { repo: '/backups/r', point: 'p1', to: '/dev/sdb', confirmToken: 'tok-sdb', instant: false },
    ]);
    expect(screen.queryByRole('dialog')).toBeNull();
  });

  it('opens the confirmation when a point is dropped on a drive, and when a drive is dropped on a point', async () => {
    const { engine } = setup();
    const point = within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('button')[2]!;
    const target = screen.getByRole('listitem', { name: 'Restore target USB disk' });
    const dataTransfer = makeDataTransfer();
    fireEvent.dragStart(point, { dataTransfer });
    fireEvent.dragOver(target, { dataTransfer });
    fireEvent.drop(target, { dataTransfer });
    await screen.findByRole('dialog');
    expect(engine.callsOf('restore.preview')).toEqual([{ repo: '/backups/r', point: 'p3', to: '/dev/sdb' }]);
    fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));

    const driveDrag = makeDataTransfer();
    const firstPoint = within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('listitem')[0]!;
    fireEvent.dragStart(target, { dataTransfer: driveDrag });
    fireEvent.dragOver(firstPoint, { dataTransfer: driveDrag });
    fireEvent.drop(firstPoint, { dataTransfer: driveDrag });
    await screen.findByRole('dialog');
    expect(engine.callsOf('restore.preview').at(-1)).toEqual({
      repo: '/backups/r',
      point: 'p1',
      to: '/dev/sdb',
    });
  });

  it('keeps Tab inside the confirmation and gives focus back when it closes', async () => {
    setup();
    fireEvent.click(within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('button')[0]!);
    const restoreTo = screen.getByRole('button', { name: 'Restore to…' });
    restoreTo.focus();
    fireEvent.click(restoreTo);
    fireEvent.click(screen.getByRole('menuitem', { name: /USB disk/ }));
    const dialog = await screen.findByRole('dialog');
    const typed = within(dialog).getByLabelText('Type sdb to confirm');
    await waitFor(() => expect(document.activeElement).toBe(typed));
    const cancel = within(dialog).getByRole('button', { name: 'Cancel' });
    cancel.focus();
    // Cancel is the last control that can take focus (confirming is disabled until the name is typed).
    fireEvent.keyDown(document, { key: 'Tab' });
    expect(document.activeElement).toBe(typed);
    fireEvent.keyDown(dialog, { key: 'Escape' });
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull());
  });

  it('shows the engine’s refusal and offers no way to confirm', async () => {
    const { engine } = setup();
    engine.handle('restore.preview', () => ({
      ...devicePreview,
      refusal: '/dev/sdb is mounted at /media/usb: unmount it, then try again.',
    }));
    fireEvent.click(within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('button')[0]!);
    fireEvent.click(screen.getByRole('button', { name: 'Restore to…' }));
    fireEvent.click(screen.getByRole('menuitem', { name: /USB disk/ }));
    const dialog = await screen.findByRole('dialog');
    expect(within(dialog).getByRole('alert').textContent).toBe(
      '/dev/sdb is mounted at /media/usb: unmount it, then try again.',
    );
    expect(
      (within(dialog).getByRole('button', { name: 'Overwrite /dev/sdb' }) as HTMLButtonElement).disabled,
    ).toBe(true);
  });

  it('shows the fitted layout before the typed confirmation when the disk is smaller', async () => {
    const { engine } = setup();
    const GiB = 1024 ** 3;
    engine.handle('restore.preview', () => ({
      ...devicePreview,
      plan: {
        table: 'gpt' as const,
        sectorSize: 512,
        sourceSize: 4 * GiB,
        targetSize: 2 * GiB,
        mode: 'shrink' as const,
        partitions: [
          {
            index: 1,
            filesystem: 'fat32',
            usedBytes: 1024 ** 2,
            from: { start: 1024 ** 2, size: 64 * 1024 ** 2 },
            to: { start: 1024 ** 2, size: 64 * 1024 ** 2 },
            change: 'kept' as const,
          },
          {
            index: 2,
            filesystem: 'ext4',
            usedBytes: GiB,
            from: { start: 65 * 1024 ** 2, size: 4 * GiB - 66 * 1024 ** 2 },
            to: { start: 65 * 1024 ** 2, size: 2 * GiB - 66 * 1024 ** 2 },
            change: 'shrunk' as const,
            resizeWith: 'resize2fs',
          },
        ],
        refusal: null,
        warnings: [],
      },
    }));
    fireEvent.click(within(screen.getByRole('list', { name: 'Timeline' })).getAllByRole('button')[0]!);
    fireEvent.click(screen.getByRole('button', { name: 'Restore to…' }));
    fireEvent.click(screen.getByRole('menuitem', { name: /USB disk/ }));
    const dialog = await screen.findByRole('dialog');
    const layout = within(dialog).getByRole('list', { name: 'Planned layout' });
    const rows = within(layout)
      .getAllByRole('listitem')
      .map((row) => row.textContent);
    expect(rows[0]).toMatch(/^Partition 1 \(fat32, .* used\): kept/);
    expect(rows[1]).toMatch(/^Partition 2 \(ext4, .* used\): shrunk, .* → .* \(resize2fs\)$/);
    // The plan comes before the typed confirmation, and an instant restore (which cannot fit) is not offered.
    const typed = within(dialog).getByLabelText('Type sdb to confirm');
    expect(layout.compareDocumentPosition(typed) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
    expect(within(dialog).queryByText(/Restore on the fly/)).toBeNull();
  });

  it('zooms from the segmented control', () => {
    const { store } = setup();
    fireEvent.click(screen.getByRole('button', { name: 'Years' }));
    expect(store.getState().zoom).toBe('years');
    expect(screen.getByRole('button', { name: 'Years' }).getAttribute('aria-pressed')).toBe('true');
  });
});
