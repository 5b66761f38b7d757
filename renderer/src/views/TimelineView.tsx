// The timeline of restore points (zoomable hours → years) with the selected point's details, and restore targets:
// drag a point onto a drive or an image file — or a drive onto a point — to get the restore confirmation. The
// keyboard does the same: arrows move between points, "Restore to…" opens a menu of targets.
import { type DragEvent, type KeyboardEvent, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';
import type { PointSummary } from '../../../protocol/model.ts';
import { ErrorNote } from '../components/ErrorNote.tsx';
import { JobOutcome } from '../components/JobOutcome.tsx';
import { formatAgo, formatBytes, formatTime } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';
import { zoomLevels } from '../store/points-slice.ts';
import { layoutTimeline, pixelsPerHour, zoomToFit } from './timeline-layout.ts';

const pointType = 'application/x-diskline-point';
const driveType = 'application/x-diskline-drive';

const consistencyLabel: Record<PointSummary['consistency'], string> = {
  frozen: 'Frozen (file-system consistent)',
  'crash-consistent': 'Crash-consistent',
  offline: 'Offline (not in use)',
};

function pointState(point: PointSummary): string {
  if (!point.complete) return 'interrupted';
  if (point.verify === 'damaged') return 'damaged';
  if (point.verify === 'ok') return 'verified';
  return 'unverified';
}

function pointLabel(point: PointSummary): string {
  const state = point.complete ? `verify ${point.verify}` : 'interrupted backup, cannot be restored';
  return `${formatTime(point.time)}, ${point.source}, ${formatBytes(point.usedBytes)}, ${formatBytes(point.changedBytes)} changed, ${point.consistency}, ${state}`;
}

function TimelineTrack() {
  const points = useApp((s) => s.points);
  const zoom = useApp((s) => s.zoom);
  const selectedId = useApp((s) => s.selectedPointId);
  const selectPoint = useApp((s) => s.selectPoint);
  const openRestore = useApp((s) => s.openRestore);
  const zoomBy = useApp((s) => s.zoomBy);
  const scrollerRef = useRef<HTMLDivElement>(null);
  const buttonRefs = useRef(new Map<string, HTMLButtonElement>());
  const [viewportWidth, setViewportWidth] = useState(800);
  const [dropTarget, setDropTarget] = useState<string | null>(null);
  const layout = layoutTimeline(points, zoom, Date.now(), viewportWidth);
  const laneHeight = 26;
  const barsHeight = 44;
  const trackHeight = 28 + layout.lanes * laneHeight + barsHeight;
  const largestChange = points.reduce((max, p) => Math.max(max, p.changedBytes), 1);
  const nowX = ((Date.now() - layout.start) / 3_600_000) * pixelsPerHour[zoom];

  const setZoom = useApp((s) => s.setZoom);
  const zoomFitted = useRef(false);

  useLayoutEffect(() => {
    const scroller = scrollerRef.current;
    if (!scroller) return;
    setViewportWidth(scroller.clientWidth || 800);
  }, []);

  // The first time points arrive, open at the zoom that shows them all.
  useEffect(() => {
    if (zoomFitted.current || points.length === 0) return;
    zoomFitted.current = true;
    setZoom(zoomToFit(points, Date.now(), scrollerRef.current?.clientWidth || 800));
  }, [points, setZoom]);

  // Keep the selected point (or the newest) in view when zooming or when points arrive.
  // biome-ignore lint/correctness/useExhaustiveDependencies: re-centre on zoom and data changes only.
  useEffect(() => {
    const scroller = scrollerRef.current;
    if (!scroller) return;
    const focus =
      layout.markers.find((m) => m.id === selectedId) ?? layout.markers[layout.markers.length - 1];
    scroller.scrollLeft = focus ? focus.x - scroller.clientWidth / 2 : layout.width;
  }, [zoom, points.length]);

  function onKeyDown(event: KeyboardEvent<HTMLDivElement>): void {
    const index = points.findIndex((p) => p.id === selectedId);
    let next = index;
    if (event.key === 'ArrowRight') next = Math.min(points.length - 1, index + 1);
    else if (event.key === 'ArrowLeft') next = Math.max(0, index === -1 ? points.length - 1 : index - 1);
    else if (event.key === 'Home') next = 0;
    else if (event.key === 'End') next = points.length - 1;
    else if (event.key === '+' || event.key === '=' || event.key === '-') {
      zoomBy(event.key === '-' ? 1 : -1);
      return;
    } else return;
    event.preventDefault();
    const point = points[next];
    if (point) {
      selectPoint(point.id);
      buttonRefs.current.get(point.id)?.focus();
    }
  }

  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: arrow keys move focus between the point buttons inside.
    <div
      className="timeline-scroller"
      ref={scrollerRef}
      onKeyDown={onKeyDown}
      onWheel={(event) => {
        if (event.ctrlKey || event.metaKey) {
          event.preventDefault();
          zoomBy(event.deltaY > 0 ? 1 : -1);
        }
      }}
    >
      <div className="timeline-track" style={{ width: layout.width, height: trackHeight }}>
        <div className="axis" aria-hidden="true">
          {layout.ticks.map((tick) => (
            <div key={tick.x} className={tick.major ? 'tick major' : 'tick'} style={{ left: tick.x }}>
              {tick.label && <span>{tick.label}</span>}
            </div>
          ))}
          <div className="now-line" style={{ left: nowX }}>
            <span>now</span>
          </div>
          {points.map((point, index) => (
            <div
              key={point.id}
              className={`change-bar ${pointState(point)}`}
              style={{
                left: layout.markers[index]!.x - 3,
                height: Math.max(2, Math.sqrt(point.changedBytes / largestChange) * (barsHeight - 8)),
              }}
            />
          ))}
        </div>
        <ul className="timeline-points" aria-label="Timeline">
          {points.map((point, index) => {
            const marker = layout.markers[index]!;
            const state = pointState(point);
            return (
              <li
                key={point.id}
                className={`point-marker ${state}${point.id === selectedId ? ' selected' : ''}${dropTarget === point.id ? ' drop' : ''}`}
                style={{ left: marker.x, top: 26 + marker.lane * laneHeight }}
                onDragOver={(event: DragEvent) => {
                  if (!point.complete || !event.dataTransfer.types.includes(driveType)) return;
                  event.preventDefault();
                  setDropTarget(point.id);
                }}
                onDragLeave={() => setDropTarget(null)}
                onDrop={(event: DragEvent) => {
                  setDropTarget(null);
                  const device = event.dataTransfer.getData(driveType);
                  if (!device || !point.complete) return;
                  event.preventDefault();
                  selectPoint(point.id);
                  void openRestore(point.id, device);
                }}
              >
                <button
                  type="button"
                  ref={(el) => {
                    if (el) buttonRefs.current.set(point.id, el);
                    else buttonRefs.current.delete(point.id);
                  }}
                  aria-label={pointLabel(point)}
                  aria-pressed={point.id === selectedId}
                  tabIndex={point.id === selectedId || (!selectedId && index === points.length - 1) ? 0 : -1}
                  draggable={point.complete}
                  onDragStart={(event) => {
                    event.dataTransfer.setData(pointType, point.id);
                    event.dataTransfer.effectAllowed = 'copy';
                    selectPoint(point.id);
                  }}
                  onClick={() => selectPoint(point.id)}
                  title={pointLabel(point)}
                />
              </li>
            );
          })}
        </ul>
      </div>
    </div>
  );
}

function RestoreToMenu({ point }: { point: PointSummary }) {
  const drives = useApp((s) => s.drives);
  const openRestore = useApp((s) => s.openRestore);
  const [open, setOpen] = useState(false);
  const [imagePath, setImagePath] = useState('');
  const menuRef = useRef<HTMLDivElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (open) menuRef.current?.querySelector<HTMLElement>('[role="menuitem"]')?.focus();
  }, [open]);
  function choose(target: string): void {
    setOpen(false);
    void openRestore(point.id, target);
  }
  return (
    <div className="menu-anchor">
      <button
        type="button"
        className="primary"
        ref={buttonRef}
        aria-haspopup="menu"
        aria-expanded={open}
        disabled={!point.complete}
        onClick={() => setOpen(!open)}
      >
        Restore to…
      </button>
      {open && (
        // biome-ignore lint/a11y/noStaticElementInteractions: Escape closes the menu.
        <div
          className="menu"
          ref={menuRef}
          onKeyDown={(event) => {
            if (event.key === 'Escape') {
              setOpen(false);
              buttonRef.current?.focus();
            }
            if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
              event.preventDefault();
              const items = [...(menuRef.current?.querySelectorAll<HTMLElement>('[role="menuitem"]') ?? [])];
              const at = items.indexOf(document.activeElement as HTMLElement);
              items[(at + (event.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length]?.focus();
            }
          }}
        >
          <div role="menu" aria-label="Restore targets">
            {drives.map((drive) => (
              <button type="button" role="menuitem" key={drive.device} onClick={() => choose(drive.device)}>
                <span>{drive.description || drive.device}</span>
                <span className="muted mono small">
                  {drive.device} · {formatBytes(drive.size)}
                </span>
              </button>
            ))}
          </div>
          <form
            className="menu-image"
            onSubmit={(event) => {
              event.preventDefault();
              if (imagePath.trim()) choose(imagePath.trim());
            }}
          >
            <label>
              Image file
              <input
                value={imagePath}
                onChange={(e) => setImagePath(e.target.value)}
                placeholder="/path/to/restored.img"
              />
            </label>
            <button type="submit">Restore to file</button>
          </form>
        </div>
      )}
    </div>
  );
}

function PointDetails() {
  const point = useApp((s) => s.points.find((p) => p.id === s.selectedPointId));
  const currentRepo = useApp((s) => s.currentRepo);
  const startDrill = useApp((s) => s.startDrill);
  const mountPoint = useApp((s) => s.mountPoint);
  const unmountPoint = useApp((s) => s.unmountPoint);
  const mountedAt = useApp((s) => (point ? s.mounts[point.id] : undefined));
  if (!point) {
    return (
      <div className="card point-details empty">
        Select a restore point (click it, or Tab to the timeline and use the arrow keys), then drag it onto a
        drive or use <em>Restore to…</em>.
      </div>
    );
  }
  return (
    <section className="card point-details" aria-label="Selected restore point">
      <header className="card-head">
        <div>
          <h3>{formatTime(point.time)}</h3>
          <span className="muted">
            {formatAgo(point.time)} · <span className="mono">{point.source}</span>
          </span>
        </div>
        <span className={`badge state-${pointState(point)}`}>
          {point.complete
            ? point.verify === 'ok'
              ? 'Verified'
              : point.verify === 'damaged'
                ? 'Damaged'
                : 'Not verified'
            : 'Interrupted'}
        </span>
      </header>
      {!point.complete && (
        <p className="warning">
          This backup did not finish, so it cannot be restored. Run the backup again; it reuses what was
          copied.
        </p>
      )}
      {point.verify === 'damaged' && (
        <p className="warning">
          Verification found damaged data in this point. Run “Verify every byte” under Repository health for
          the details, and restore from another point.
        </p>
      )}
      <dl className="facts">
        <div>
          <dt>Disk size</dt>
          <dd>{formatBytes(point.sourceSize)}</dd>
        </div>
        <div>
          <dt>Captured</dt>
          <dd>{formatBytes(point.usedBytes)}</dd>
        </div>
        <div>
          <dt>Changed</dt>
          <dd>{formatBytes(point.changedBytes)}</dd>
        </div>
        <div>
          <dt>Stored</dt>
          <dd>{formatBytes(point.storedBytes)}</dd>
        </div>
        <div>
          <dt>Consistency</dt>
          <dd>{consistencyLabel[point.consistency]}</dd>
        </div>
        <div>
          <dt>Restore drill</dt>
          <dd>
            {point.drill
              ? `${point.drill.ok ? 'Passed' : 'Failed'} ${formatAgo(point.drill.time)}${point.drill.detail ? ` — ${point.drill.detail}` : ''}`
              : 'Never run'}
          </dd>
        </div>
      </dl>
      <div className="card-actions">
        <RestoreToMenu point={point} />
        <button
          type="button"
          disabled={!point.complete || !currentRepo}
          onClick={() => currentRepo && void startDrill(currentRepo, point.id)}
          title="Restores the point to a scratch image and checks its file systems, without touching any drive"
        >
          Restore drill
        </button>
        {mountedAt ? (
          <button type="button" onClick={() => void unmountPoint(point.id)}>
            Unmount {mountedAt}
          </button>
        ) : (
          <button type="button" disabled={!point.complete} onClick={() => void mountPoint(point.id)}>
            Browse files
          </button>
        )}
        <span className="muted small mono">{point.id.slice(0, 12)}</span>
      </div>
      {mountedAt && (
        <p className="muted">
          Mounted read-only at <span className="mono">{mountedAt}</span>: open it in your file manager to copy
          files out.
        </p>
      )}
      <JobOutcome kind="drill" label="Restore drill progress" />
      <ErrorNote place={`drill:${point.id}`} />
      <ErrorNote place={`mount:${point.id}`} />
    </section>
  );
}

function RestoreTargets() {
  const drives = useApp((s) => s.drives);
  const selected = useApp((s) => s.points.find((p) => p.id === s.selectedPointId));
  const openRestore = useApp((s) => s.openRestore);
  const [over, setOver] = useState<string | null>(null);
  const [imagePath, setImagePath] = useState('');

  function dropProps(target: () => string) {
    const key = target();
    return {
      onDragOver: (event: DragEvent) => {
        if (!event.dataTransfer.types.includes(pointType)) return;
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
        setOver(key);
      },
      onDragLeave: () => setOver(null),
      onDrop: (event: DragEvent) => {
        setOver(null);
        const pointId = event.dataTransfer.getData(pointType);
        const to = target();
        if (!pointId || !to) return;
        event.preventDefault();
        void openRestore(pointId, to);
      },
    };
  }

  return (
    <section className="restore-targets" aria-labelledby="targets-title">
      <h3 id="targets-title">
        Restore targets <span className="muted small">drop a point here, or drag a drive onto a point</span>
      </h3>
      <ul aria-label="Restore targets" className="target-list">
        {drives.map((drive) => (
          <li
            key={drive.device}
            className={`card target${over === drive.device ? ' drop' : ''}`}
            draggable
            onDragStart={(event) => {
              event.dataTransfer.setData(driveType, drive.device);
              event.dataTransfer.effectAllowed = 'copy';
            }}
            aria-label={`Restore target ${drive.description || drive.device}`}
            {...dropProps(() => drive.device)}
          >
            <strong>{drive.description || drive.device}</strong>
            <span className="muted mono small">{drive.device}</span>
            <span className="small">
              {formatBytes(drive.size)}
              {drive.isSystem ? ' · system disk' : ''}
              {selected?.source === drive.device ? ' · source of this point' : ''}
              {drive.mountpoints.length ? ' · mounted' : ''}
            </span>
            {selected?.complete && (
              <button
                type="button"
                className="small-button"
                onClick={() => void openRestore(selected.id, drive.device)}
              >
                Restore selected here
              </button>
            )}
          </li>
        ))}
        <li
          className={`card target image-target${over === 'image' ? ' drop' : ''}`}
          aria-label="Restore target image file"
          {...dropProps(() => (imagePath.trim() ? imagePath.trim() : ''))}
          onDragEnter={() => setOver('image')}
        >
          <strong>Image file</strong>
          <input
            aria-label="Image file path"
            value={imagePath}
            onChange={(e) => setImagePath(e.target.value)}
            placeholder="/path/to/restored.img"
          />
          {selected?.complete && imagePath.trim() && (
            <button
              type="button"
              className="small-button"
              onClick={() => void openRestore(selected.id, imagePath.trim())}
            >
              Restore selected here
            </button>
          )}
        </li>
      </ul>
    </section>
  );
}

export function TimelineView() {
  const { currentRepo, pointsError, pointsLoading, count } = useApp(
    useShallow((s) => ({
      currentRepo: s.currentRepo,
      pointsError: s.pointsError,
      pointsLoading: s.pointsLoading,
      count: s.points.length,
    })),
  );
  const zoom = useApp((s) => s.zoom);
  const setZoom = useApp((s) => s.setZoom);
  return (
    <section className="view" aria-labelledby="timeline-title">
      <header className="view-head row">
        <div>
          <h2 id="timeline-title">Timeline</h2>
          <p className="muted">
            {currentRepo ? (
              <>
                {count} restore point{count === 1 ? '' : 's'} in <span className="mono">{currentRepo}</span>
              </>
            ) : (
              'No repository chosen — add one in Settings.'
            )}
            {pointsLoading ? ' · loading…' : ''}
          </p>
        </div>
        <fieldset className="segmented" aria-label="Zoom">
          {zoomLevels.map((level) => (
            <button key={level} type="button" aria-pressed={zoom === level} onClick={() => setZoom(level)}>
              {level[0]!.toUpperCase() + level.slice(1)}
            </button>
          ))}
        </fieldset>
      </header>
      {pointsError && (
        <div className="error-note" role="alert">
          {pointsError}
        </div>
      )}
      <div className="card timeline-card">
        <TimelineTrack />
        <div className="timeline-legend muted small" aria-hidden="true">
          <span className="dot verified" /> verified <span className="dot unverified" /> not verified{' '}
          <span className="dot damaged" /> damaged <span className="dot interrupted" /> interrupted · bars:
          bytes changed · Ctrl+wheel or +/− to zoom
        </div>
      </div>
      <div className="timeline-lower">
        <PointDetails />
        <RestoreTargets />
      </div>
    </section>
  );
}
