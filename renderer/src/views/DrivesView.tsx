// Drives: model, size, partitions with file system and used space; the system disk flagged. From here a drive can
// be backed up at once into the current repository; a drive in use and not protected by the tap first says why a
// backup now would not be consistent and offers the ways out (protect it, back up anyway, or cancel). Each
// card says how the drive is protected while in use and offers the boot-time protection where it applies.
import { useState } from 'react';
import type { Drive } from '../../../protocol/model.ts';
import { DriveProtection } from '../components/DriveProtection.tsx';
import { ErrorNote, InlineError } from '../components/ErrorNote.tsx';
import { PartitionBar } from '../components/PartitionBar.tsx';
import { ProtectionDialog } from '../components/ProtectionDialog.tsx';
import { formatBytes } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';

function DriveCard({ drive }: { drive: Drive }) {
  const currentRepo = useApp((s) => s.currentRepo);
  const startBackup = useApp((s) => s.startBackup);
  const attachDrive = useApp((s) => s.attachDrive);
  const detachDrive = useApp((s) => s.detachDrive);
  const notes = useApp((s) => s.attachNotes[drive.device]);
  // An interrupted backup of this drive: the next one takes it over, unless the user starts afresh.
  const interrupted = useApp((s) =>
    s.points.some((p) => !p.complete && p.source === drive.device && p.sourceSize === drive.size),
  );
  const used = drive.partitions.reduce((sum, p) => sum + p.usedBytes, 0);
  const [choosing, setChoosing] = useState(false);
  // Mounted and not served through the tap: the engine refuses a plain backup (it would be torn).
  const busyUnprotected = drive.mountpoints.length > 0 && !drive.attachedAs;
  const backUp = (allowInconsistent: boolean) => {
    setChoosing(false);
    if (currentRepo) void startBackup(drive.device, currentRepo, undefined, { allowInconsistent });
  };
  return (
    <li className="card drive" aria-label={`${drive.description} ${drive.device}`}>
      <header className="drive-head">
        <div>
          <h3>{drive.description || drive.device}</h3>
          <div className="muted mono">{drive.device}</div>
        </div>
        <div className="badges">
          {drive.isSystem && <span className="badge warn">System disk</span>}
          {drive.isRemovable && <span className="badge">Removable</span>}
          {drive.attachedAs && <span className="badge accent">Protected as {drive.attachedAs}</span>}
          {drive.mountpoints.length > 0 && <span className="badge">Mounted</span>}
        </div>
        <div className="drive-size">
          <strong>{formatBytes(drive.size)}</strong>
          <span className="muted">{formatBytes(used)} used</span>
        </div>
      </header>
      <PartitionBar drive={drive} />
      <DriveProtection device={drive.device} />
      <table className="partitions">
        <thead>
          <tr>
            <th>#</th>
            <th>File system</th>
            <th>Size</th>
            <th>Used</th>
            <th>Type</th>
          </tr>
        </thead>
        <tbody>
          {drive.partitions.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No partition table
                {drive.partitionTable === 'none' ? ' (the whole drive is one file system)' : ''}
              </td>
            </tr>
          )}
          {drive.partitions.map((p) => (
            <tr key={p.index}>
              <td>{p.index}</td>
              <td>{p.filesystem ?? <span className="muted">unknown (every block copied)</span>}</td>
              <td>{formatBytes(p.size)}</td>
              <td>{p.filesystem ? formatBytes(p.usedBytes) : '—'}</td>
              <td className="muted">{p.type}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <footer className="card-actions">
        {drive.mountpoints.length > 0 && (
          <span className="muted small">Mounted at {drive.mountpoints.join(', ')}</span>
        )}
        <span className="spacer" />
        {drive.attachedAs ? (
          <button type="button" onClick={() => void detachDrive(drive.device)}>
            Stop protecting
          </button>
        ) : (
          <button
            type="button"
            onClick={() => void attachDrive(drive.device)}
            title="Serve this disk through Diskline's tap, so backups stay consistent while it is written to"
          >
            Protect while in use
          </button>
        )}
        <button
          type="button"
          className="primary"
          disabled={!currentRepo}
          title={currentRepo ? `Back up ${drive.device} into ${currentRepo}` : 'Choose a repository first'}
          onClick={() => (busyUnprotected ? setChoosing(true) : backUp(false))}
        >
          {interrupted ? 'Finish interrupted backup' : 'Back up now'}
        </button>
        {interrupted && (
          <button
            type="button"
            disabled={!currentRepo}
            title="Leave the interrupted backup and read the whole drive again"
            onClick={() =>
              currentRepo && void startBackup(drive.device, currentRepo, undefined, { afresh: true })
            }
          >
            Start afresh
          </button>
        )}
      </footer>
      {choosing && (
        <section className="notes small" aria-label={`Back up ${drive.device} while in use`}>
          <p>
            {drive.device} is mounted at {drive.mountpoints.join(', ')} and not protected: a backup now would
            copy it while it changes, and the point could be torn. Protect it and mount the device Diskline
            gives instead, or unmount it, then back it up.
          </p>
          <div className="card-actions">
            <button type="button" onClick={() => setChoosing(false)}>
              Cancel
            </button>
            <button
              type="button"
              onClick={() => {
                setChoosing(false);
                void attachDrive(drive.device);
              }}
            >
              Protect while in use
            </button>
            <button type="button" className="danger" onClick={() => backUp(true)}>
              Back up anyway (crash-consistent)
            </button>
          </div>
        </section>
      )}
      {notes && notes.length > 0 && (
        <ul className="plain notes small" aria-label={`Notes on protecting ${drive.device}`}>
          {notes.map((note) => (
            <li key={note}>{note}</li>
          ))}
        </ul>
      )}
      <ErrorNote place={`attach:${drive.device}`} />
    </li>
  );
}

export function DrivesView() {
  const drives = useApp((s) => s.drives);
  const loaded = useApp((s) => s.drivesLoaded);
  const error = useApp((s) => s.drivesError);
  const currentRepo = useApp((s) => s.currentRepo);
  const protectionError = useApp((s) => s.protectionError);
  return (
    <section className="view" aria-labelledby="drives-title">
      <header className="view-head">
        <h2 id="drives-title">Drives</h2>
        <p className="muted">
          {currentRepo ? (
            <>
              Back ups go to <span className="mono">{currentRepo}</span>
            </>
          ) : (
            'Choose or add a repository in Settings to back up a drive.'
          )}
        </p>
      </header>
      <InlineError message={error} />
      <ErrorNote place="backup" />
      {protectionError && <p className="muted small">{protectionError}</p>}
      {loaded && drives.length === 0 && !error && <p className="empty">The engine sees no drives.</p>}
      <ul className="drive-list" aria-label="Drives">
        {drives.map((drive) => (
          <DriveCard key={drive.device} drive={drive} />
        ))}
      </ul>
      <ProtectionDialog />
    </section>
  );
}
