// The live block map of a backup: one cell per group of copy units, coloured by the most urgent state among them
// (free, pending, copied, preserved in the container, being written). Drawn into a canvas from a store
// subscription, at most once per animation frame, so a 10+ Hz event stream costs no React renders.
import { useEffect, useRef } from 'react';
import { formatBytes } from '../format/units.ts';
import { countCells } from '../store/blockmap-slice.ts';
import { useStoreEffect } from './use-store-effect.ts';

const stateNames = ['free', 'pending', 'copied', 'preserved', 'writing'] as const;
const stateLabels: Record<(typeof stateNames)[number], string> = {
  free: 'Free',
  pending: 'Pending',
  copied: 'Copied',
  preserved: 'In container',
  writing: 'Being written',
};

function readPalette(element: Element): Uint32Array {
  const style = getComputedStyle(element);
  const palette = new Uint32Array(stateNames.length + 1);
  const probe = document.createElement('canvas').getContext('2d');
  stateNames.forEach((name, index) => {
    const css = style.getPropertyValue(`--map-${name}`).trim() || '#888';
    palette[index] = cssToAbgr(probe, css);
  });
  palette[stateNames.length] = 0; // the gap between cells: transparent
  return palette;
}

/** A CSS colour as the little-endian 32-bit pixel ImageData wants (0xAABBGGRR). */
function cssToAbgr(probe: CanvasRenderingContext2D | null, css: string): number {
  if (!probe) return 0xff888888;
  probe.fillStyle = '#000';
  probe.fillStyle = css;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = probe.getImageData(0, 0, 1, 1).data;
  return ((a! << 24) | (b! << 16) | (g! << 8) | r!) >>> 0;
}

interface Layout {
  cellWidth: number;
  cellHeight: number;
  cols: number;
  rows: number;
}

/** Whole-pixel cells as large as fit; cells grow taller than wide when that fills the height better. */
function layoutFor(cellCount: number, width: number, height: number): Layout {
  let cellWidth = Math.max(1, Math.floor(Math.sqrt((width * height) / Math.max(1, cellCount))));
  while (cellWidth > 1 && Math.floor(width / cellWidth) * Math.floor(height / cellWidth) < cellCount)
    cellWidth--;
  const cols = Math.max(1, Math.floor(width / cellWidth));
  const rows = Math.ceil(cellCount / cols);
  const cellHeight = Math.max(cellWidth, Math.min(cellWidth * 2, Math.floor(height / rows)));
  return { cellWidth, cellHeight, cols, rows };
}

export function BlockMap({
  jobId,
  unitSize,
  height = 240,
}: {
  jobId: string;
  /** Bytes per copy unit, to say how much of the disk one cell stands for. */
  unitSize?: number | null;
  height?: number;
}) {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const legendRefs = useRef<(HTMLElement | null)[]>([]);
  const scaleRef = useRef<HTMLLIElement>(null);
  const frameRef = useRef<{ cells: Uint8Array; revision: number } | null>(null);
  const drawnRevision = useRef(-1);
  const scheduled = useRef(0);
  const palette = useRef<{ colors: Uint32Array; at: number } | null>(null);
  const imageRef = useRef<ImageData | null>(null);

  function draw(): void {
    scheduled.current = 0;
    const canvas = canvasRef.current;
    const frame = frameRef.current;
    if (!canvas || !frame) return;
    drawnRevision.current = frame.revision;
    const counts = countCells(frame.cells);
    counts.forEach((count, index) => {
      const el = legendRefs.current[index];
      if (el) el.textContent = count.toLocaleString();
    });
    const context = canvas.getContext('2d');
    if (!context) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.floor(canvas.clientWidth * ratio));
    const maxHeight = Math.floor(height * ratio);
    const { cellWidth, cellHeight, cols, rows } = layoutFor(frame.cells.length, width, maxHeight);
    const drawHeight = rows * cellHeight;
    if (canvas.width !== width || canvas.height !== drawHeight) {
      canvas.width = width;
      canvas.height = drawHeight;
      canvas.style.height = `${drawHeight / ratio}px`;
    }
    const now = performance.now();
    if (!palette.current || now - palette.current.at > 1000) {
      palette.current = { colors: readPalette(canvas), at: now };
    }
    const colors = palette.current.colors;
    // One ImageData reused while the size stays; every pixel is rewritten below.
    let image = imageRef.current;
    if (!image || image.width !== width || image.height !== drawHeight) {
      image = context.createImageData(width, drawHeight);
      imageRef.current = image;
    }
    const pixels = new Uint32Array(image.data.buffer);
    pixels.fill(0);
    const gap = cellWidth >= 4 && cellHeight >= 4 ? 1 : 0;
    const cells = frame.cells;
    for (let index = 0; index < cells.length; index++) {
      const color = colors[cells[index]!] ?? colors[0]!;
      const x0 = (index % cols) * cellWidth;
      const y0 = Math.floor(index / cols) * cellHeight;
      for (let y = 0; y < cellHeight - gap; y++) {
        const row = (y0 + y) * width + x0;
        pixels.fill(color, row, row + cellWidth - gap);
      }
    }
    context.putImageData(image, 0, 0);
  }

  function schedule(): void {
    if (scheduled.current) return;
    scheduled.current = requestAnimationFrame(draw);
  }

  useStoreEffect(
    (s) => s.blockMaps[jobId],
    (frame) => {
      frameRef.current = frame ? { cells: frame.cells, revision: frame.revision } : null;
      if (scaleRef.current && frame && unitSize)
        scaleRef.current.textContent = `1 cell = ${formatBytes(frame.unitsPerCell * unitSize)}`;
      if (frame && frame.revision !== drawnRevision.current) schedule();
    },
    [jobId],
  );

  // biome-ignore lint/correctness/useExhaustiveDependencies: draw reads refs only.
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(() => {
      palette.current = null;
      schedule();
    });
    observer.observe(canvas);
    return () => {
      observer.disconnect();
      if (scheduled.current) cancelAnimationFrame(scheduled.current);
    };
  }, []);

  return (
    <div className="block-map">
      <canvas ref={canvasRef} role="img" aria-label="Block map" style={{ height }} />
      <ul className="legend" aria-label="Block map legend">
        {stateNames.map((name, index) => (
          <li key={name}>
            <span className={`swatch map-${name}`} aria-hidden="true" />
            {stateLabels[name]}{' '}
            <span
              className="count"
              ref={(el) => {
                legendRefs.current[index] = el;
              }}
            >
              0
            </span>
          </li>
        ))}
        <li ref={scaleRef} className="scale" />
      </ul>
    </div>
  );
}
