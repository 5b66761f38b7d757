// The restore confirmation: states exactly what will be overwritten (from restore.preview) and, onto a target of
// another size, the layout that will be written; asks for the device's name to be typed when the target is a
// whole device, and shows the engine's refusal when it will not do it.
import { useEffect, useRef, useState } from 'react';
import { formatBytes, formatTime } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';
import { useFocusTrap } from './focus-trap.ts';
import { RestorePlan } from './RestorePlan.tsx';

export function RestoreDialog() {
  const restore = useApp((s) => s.restore);
  const point = useApp((s) => s.points.find((p) => p.id === s.restore?.pointId));
  const confirmRestore = useApp((s) => s.confirmRestore);
  const closeRestore = useApp((s) => s.closeRestore);
  const [typed, setTyped] = useState('');
  const [instant, setInstant] = useState(false);
  const dialogRef = useRef<HTMLDivElement>(null);
  useFocusTrap(dialogRef, restore !== null);

  // biome-ignore lint/correctness/useExhaustiveDependencies: reset when a new restore opens.
  useEffect(() => {
    setTyped('');
    setInstant(false);
    dialogRef.current?.querySelector<HTMLElement>('input, button.cancel')?.focus();
  }, [restore?.pointId, restore?.target, restore?.preview?.confirmToken]);

  if (!restore) return null;
  const preview = restore.preview;
  const needsTyping = preview?.typedConfirmation ?? null;
  const canConfirm =
    !!preview && !preview.refusal && !restore.loading && (!needsTyping || typed === needsTyping);

  return (
    <div className="backdrop">
      <div
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="restore-title"
        ref={dialogRef}
        onKeyDown={(event) => {
          if (event.key === 'Escape') closeRestore();
        }}
      >
        <h2 id="restore-title">Restore onto {preview?.targetDescription ?? restore.target}?</h2>
        <p>
          Restore point <strong>{point ? formatTime(point.time) : restore.pointId}</strong>
          {point && (
            <>
              {' '}
              of <span className="mono">{point.source}</span> ({formatBytes(point.sourceSize)})
            </>
          )}{' '}
          onto <span className="mono">{restore.target}</span>.
        </p>
        {restore.loading && !preview && <p className="muted">Asking the engine what this would overwrite…</p>}
        {preview && (
          <>
            <div className="overwrites">
              <strong>
                This overwrites {preview.targetKind === 'device' ? 'the whole device' : 'the image file'}{' '}
                <span className="mono">{preview.target}</span> ({formatBytes(preview.targetSize)}):
              </strong>
              <ul aria-label="Will be overwritten">
                {preview.overwrites.length === 0 && <li>Nothing (the file does not exist yet).</li>}
                {preview.overwrites.map((line) => (
                  <li key={line}>{line}</li>
                ))}
              </ul>
            </div>
            {preview.plan && <RestorePlan plan={preview.plan} />}
            {preview.refusal && (
              <div className="error-note" role="alert">
                {preview.refusal}
              </div>
            )}
            {needsTyping && !preview.refusal && (
              <label className="typed-confirmation">
                <span>
                  Type <span className="mono strong">{needsTyping}</span> to confirm
                </span>
                <input
                  value={typed}
                  onChange={(e) => setTyped(e.target.value)}
                  autoComplete="off"
                  spellCheck={false}
                  aria-label={`Type ${needsTyping} to confirm`}
                />
              </label>
            )}
            {!preview.refusal && (!preview.plan || preview.plan.mode === 'as-is') && (
              <label className="check">
                <input type="checkbox" checked={instant} onChange={(e) => setInstant(e.target.checked)} />
                Restore on the fly: the target is usable at once while the rest is filled in behind
              </label>
            )}
          </>
        )}
        {restore.error && (
          <div className="error-note" role="alert">
            {restore.error}
          </div>
        )}
        <div className="dialog-actions">
          <button type="button" className="cancel" onClick={closeRestore}>
            Cancel
          </button>
          <button
            type="button"
            className="danger"
            disabled={!canConfirm}
            onClick={() => void confirmRestore(instant)}
          >
            {restore.loading && preview ? 'Starting…' : `Overwrite ${preview?.target ?? restore.target}`}
          </button>
        </div>
      </div>
    </div>
  );
}
