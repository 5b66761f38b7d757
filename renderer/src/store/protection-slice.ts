// How each disk is protected while in use (the engine's protection.list), and the protect / unprotect
// confirmation: which disk, which way, and the answer. The engine checks the typed name again and refuses
// anything else, so the dialog's check is a convenience, not the guard.
import type { DiskProtection } from '../../../protocol/protection.ts';
import { messageOf, type SliceCreator } from './app-store.ts';

export type ProtectionAction = 'protect' | 'unprotect';

export interface ProtectionSlice {
  /** Disk (as drives.list names it) → its protection as the engine last said. */
  protection: Record<string, DiskProtection>;
  protectionError: string | null;
  /** The open confirmation, if any. */
  protectionDialog: { disk: string; action: ProtectionAction; busy: boolean } | null;
  loadProtection(): Promise<void>;
  openProtection(disk: string, action: ProtectionAction): void;
  closeProtection(): void;
  /** Asks the engine to protect / unprotect the dialog's disk, confirmed by the name the user typed. */
  confirmProtection(typed: string): Promise<void>;
}

/** Where a protect / unprotect error is shown (the dialog's ErrorNote). */
export const protectionPlace = (disk: string) => `protection:${disk}`;

export const createProtectionSlice: SliceCreator<ProtectionSlice> = (set, get, engine) => ({
  protection: {},
  protectionError: null,
  protectionDialog: null,
  async loadProtection() {
    try {
      const disks = await engine.call('protection.list', {});
      set({ protection: Object.fromEntries(disks.map((disk) => [disk.disk, disk])), protectionError: null });
    } catch (error) {
      set({ protectionError: `Could not read how the drives are protected: ${messageOf(error)}` });
    }
  },
  openProtection(disk, action) {
    get().clearError(protectionPlace(disk));
    set({ protectionDialog: { disk, action, busy: false } });
  },
  closeProtection() {
    set({ protectionDialog: null });
  },
  async confirmProtection(typed) {
    const dialog = get().protectionDialog;
    if (!dialog || dialog.busy) return;
    set({ protectionDialog: { ...dialog, busy: true } });
    const method = dialog.action === 'protect' ? 'protection.protect' : 'protection.unprotect';
    const answer = await get().attempt(protectionPlace(dialog.disk), () =>
      engine.call(method, { device: dialog.disk, confirm: typed }),
    );
    if (!answer) {
      set({ protectionDialog: { ...dialog, busy: false } });
      return;
    }
    set({ protection: { ...get().protection, [answer.disk]: answer }, protectionDialog: null });
    get().notify(
      'ok',
      `${answer.disk}: ${answer.afterRestart ?? (dialog.action === 'protect' ? 'protected' : 'unprotected')}`,
    );
  },
});
