// The protect / unprotect confirmation: says what the next restart will change for which volumes, and asks
// for the disk's name to be typed, since either changes how the machine boots. The engine's refusal, if any,
// is shown here and nothing is changed.
import { useEffect, useRef, useState } from 'react';
import { useApp } from '../store/app-store.ts';
import { protectionPlace } from '../store/protection-slice.ts';
import { ErrorNote } from './ErrorNote.tsx';
import { useFocusTrap } from './focus-trap.ts';

export function ProtectionDialog() {
  const dialog = useApp((s) => s.protectionDialog);
  const protection = useApp((s) => (s.protectionDialog ? s.protection[s.protectionDialog.disk] : undefined));
  const confirmProtection = useApp((s) => s.confirmProtection);
  const closeProtection = useApp((s) => s.closeProtection);
  const [typed, setTyped] = useState('');
  const dialogRef = useRef<HTMLDivElement>(null);
  useFocusTrap(dialogRef, dialog !== null);

  // biome-ignore lint/correctness/useExhaustiveDependencies: reset when another disk or action opens.
  useEffect(() => {
    setTyped('');
    dialogRef.current?.querySelector<HTMLElement>('input')?.focus();
  }, [dialog?.disk, dialog?.action]);

  if (!dialog) return null;
  const { disk, action, busy } = dialog;
  const volumes = protection?.volumes ?? [];
  const changing =
    action === 'protect'
      ? volumes.filter((volume) => volume.inUse && volume.kind === 'unprotected')
      : volumes.filter((volume) => volume.protectedAtBoot);
  const names = changing.length ? changing.map((volume) => volume.device).join(', ') : disk;
  return (
    <div className="backdrop">
      <div
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="protection-title"
        ref={dialogRef}
        onKeyDown={(event) => {
          if (event.key === 'Escape') closeProtection();
        }}
      >
        <h2 id="protection-title">
          {action === 'protect' ? 'Protect' : 'Unprotect'} {disk}?
        </h2>
        {action === 'protect' ? (
          <p>
            Diskline adds a step to this machine's start-up (an initramfs hook). After the next restart,{' '}
            <span className="mono">{names}</span> {changing.length > 1 ? 'are' : 'is'} mounted through a
            linear device-mapper target, and every backup of {disk} takes a consistent point while the system
            runs from it. Until the restart, a backup of what is in use could still be torn.
          </p>
        ) : (
          <p>
            After the next restart, <span className="mono">{names}</span> {changing.length > 1 ? 'are' : 'is'}{' '}
            mounted directly again, and a backup of {disk} while it is in use could be torn. The start-up step
            is removed with the last protected partition.
          </p>
        )}
        <label className="typed-confirmation">
          <span>
            This changes how this machine boots. Type <span className="mono strong">{disk}</span> to confirm
          </span>
          <input
            value={typed}
            onChange={(event) => setTyped(event.target.value)}
            autoComplete="off"
            spellCheck={false}
            aria-label={`Type ${disk} to confirm`}
          />
        </label>
        <ErrorNote place={protectionPlace(disk)} />
        <div className="dialog-actions">
          <button type="button" className="cancel" onClick={closeProtection}>
            Cancel
          </button>
          <button
            type="button"
            className={action === 'protect' ? 'primary' : 'danger'}
            disabled={typed !== disk || busy}
            onClick={() => void confirmProtection(typed)}
          >
            {busy ? 'Working…' : `${action === 'protect' ? 'Protect' : 'Unprotect'} ${disk}`}
          </button>
        </div>
      </div>
    </div>
  );
}
