// Draws Diskline's icons from code and writes them to assets/: the app icon at every size the platforms ask
// for (PNG, plus .ico for Windows and .icns for macOS, both holding PNGs), and the tray icons for idle,
// busy and attention. Shapes are signed distance fields, so every size is sharp and anti-aliased without an
// image library. Run: npx node scripts/make-icons.ts (the output is committed).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';

type Rgba = [number, number, number, number];
/** A shape's signed distance from the pixel centre (x, y in 0..1 of the canvas): negative inside. */
type Distance = (x: number, y: number) => number;
type Layer = { distance: Distance; color: Rgba | ((x: number, y: number) => Rgba) };

const appIconSizes = [16, 24, 32, 48, 64, 128, 256, 512, 1024];
const traySizes = [16, 22, 24, 32, 44, 48];
const icoSizes = [16, 24, 32, 48, 64, 128, 256];
/** ICNS entry types that hold PNGs, by pixel size (the @2x types share pixel sizes with larger @1x ones). */
const icnsTypes: [string, number][] = [
  ['icp4', 16],
  ['icp5', 32],
  ['icp6', 64],
  ['ic07', 128],
  ['ic08', 256],
  ['ic09', 512],
  ['ic10', 1024],
  ['ic11', 32],
  ['ic12', 64],
  ['ic13', 256],
  ['ic14', 512],
];

const roundedRect =
  (cx: number, cy: number, half: number, radius: number): Distance =>
  (x, y) => {
    const qx = Math.abs(x - cx) - half + radius;
    const qy = Math.abs(y - cy) - half + radius;
    return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - radius;
  };
const circle =
  (cx: number, cy: number, r: number): Distance =>
  (x, y) =>
    Math.hypot(x - cx, y - cy) - r;
const ring =
  (cx: number, cy: number, r: number, width: number): Distance =>
  (x, y) =>
    Math.abs(Math.hypot(x - cx, y - cy) - r) - width / 2;
/** A thick segment with round ends. */
const segment =
  (ax: number, ay: number, bx: number, by: number, width: number): Distance =>
  (x, y) => {
    const px = x - ax;
    const py = y - ay;
    const dx = bx - ax;
    const dy = by - ay;
    const t = Math.max(0, Math.min(1, (px * dx + py * dy) / (dx * dx + dy * dy)));
    return Math.hypot(px - dx * t, py - dy * t) - width / 2;
  };
/** The part of a ring between two angles (clockwise from 12 o'clock, in turns). */
const arc =
  (cx: number, cy: number, r: number, width: number, fromTurn: number, toTurn: number): Distance =>
  (x, y) => {
    const turn = (Math.atan2(x - cx, -(y - cy)) / (2 * Math.PI) + 1) % 1;
    if (turn >= fromTurn && turn <= toTurn) return Math.abs(Math.hypot(x - cx, y - cy) - r) - width / 2;
    const end = (t: number) => {
      const a = t * 2 * Math.PI;
      return Math.hypot(x - (cx + r * Math.sin(a)), y - (cy - r * Math.cos(a))) - width / 2;
    };
    return Math.min(end(fromTurn), end(toTurn));
  };
function render(size: number, layers: Layer[]): Buffer {
  const pixels = Buffer.alloc(size * size * 4);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const x = (px + 0.5) / size;
      const y = (py + 0.5) / size;
      let [r, g, b, a] = [0, 0, 0, 0];
      for (const layer of layers) {
        // Coverage from the distance in pixels: a one-pixel ramp across the edge.
        const coverage = Math.max(0, Math.min(1, 0.5 - layer.distance(x, y) * size));
        if (coverage === 0) continue;
        const [lr, lg, lb, la] = typeof layer.color === 'function' ? layer.color(x, y) : layer.color;
        const alpha = (la / 255) * coverage;
        const outAlpha = alpha + a * (1 - alpha);
        if (outAlpha > 0) {
          r = (lr * alpha + r * a * (1 - alpha)) / outAlpha;
          g = (lg * alpha + g * a * (1 - alpha)) / outAlpha;
          b = (lb * alpha + b * a * (1 - alpha)) / outAlpha;
        }
        a = outAlpha;
      }
      const offset = (py * size + px) * 4;
      pixels[offset] = Math.round(r);
      pixels[offset + 1] = Math.round(g);
      pixels[offset + 2] = Math.round(b);
      pixels[offset + 3] = Math.round(a * 255);
    }
  }
  return pixels;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** RGBA pixels → PNG (8-bit, colour type 6, no filtering: the icons are small). */
export function encodePng(size: number, pixels: Buffer): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8;
  header[9] = 6;
  const rows = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    pixels.copy(rows, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A Windows .ico whose images are PNGs (supported since Vista); 256 is written as 0 in the directory. */
export function encodeIco(images: [size: number, png: Buffer][]): Buffer {
  const header = Buffer.alloc(6 + images.length * 16);
  header.writeUInt16LE(0, 0);
  header.writeUInt16LE(1, 2);
  header.writeUInt16LE(images.length, 4);
  let offset = header.length;
  images.forEach(([size, png], i) => {
    const entry = 6 + i * 16;
    header[entry] = size >= 256 ? 0 : size;
    header[entry + 1] = size >= 256 ? 0 : size;
    header.writeUInt16LE(1, entry + 4);
    header.writeUInt16LE(32, entry + 6);
    header.writeUInt32LE(png.length, entry + 8);
    header.writeUInt32LE(offset, entry + 12);
    offset += png.length;
  });
  return Buffer.concat([header, ...images.map(([, png]) => png)]);
}

/** A macOS .icns of PNG entries: 'icns', total length, then (type, length incl. 8-byte header, data). */
export function encodeIcns(entries: [type: string, png: Buffer][]): Buffer {
  const parts = entries.map(([type, png]) => {
    const head = Buffer.alloc(8);
    head.write(type, 0, 'latin1');
    head.writeUInt32BE(png.length + 8, 4);
    return Buffer.concat([head, png]);
  });
  const head = Buffer.alloc(8);
  head.write('icns', 0, 'latin1');
  head.writeUInt32BE(8 + parts.reduce((n, p) => n + p.length, 0), 4);
  return Buffer.concat([head, ...parts]);
}

const white: Rgba = [255, 255, 255, 255];
const green: Rgba = [52, 211, 153, 255];
const amber: Rgba = [251, 191, 36, 255];
const ink: Rgba = [17, 24, 39, 255];
const blueGradient = (_x: number, y: number): Rgba => [
  Math.round(37 + (30 - 37) * y),
  Math.round(99 + (58 - 99) * y),
  Math.round(235 + (138 - 235) * y),
  255,
];

/** The mark: a disk (ring and hub) with an arm reaching to its edge, the line a backup follows. */
function markLayers(color: Rgba, scale: number, cx = 0.5, cy = 0.5): Layer[] {
  return [
    { distance: ring(cx, cy, 0.3 * scale, 0.09 * scale), color },
    { distance: circle(cx, cy, 0.075 * scale), color },
    { distance: segment(cx, cy, cx + 0.2 * scale, cy + 0.2 * scale, 0.07 * scale), color },
  ];
}

function appIcon(size: number): Buffer {
  const background = roundedRect(0.5, 0.5, 0.44, 0.1);
  return render(size, [
    { distance: background, color: blueGradient },
    ...markLayers(white, 1),
    // The copied part of the disk: a green arc over the ring's top right.
    { distance: arc(0.5, 0.5, 0.3, 0.09, 0.02, 0.3), color: green },
  ]);
}

type TrayState = 'idle' | 'busy' | 'attention';

/** Tray icons fill their canvas (trays are small) and keep a dark outline so light and dark panels both work. */
function trayIcon(size: number, state: TrayState): Buffer {
  const base = circle(0.5, 0.5, 0.47);
  const layers: Layer[] = [
    { distance: base, color: state === 'idle' ? [71, 85, 105, 255] : blueGradient },
    ...markLayers(white, 1.35),
  ];
  if (state === 'busy') layers.push({ distance: arc(0.5, 0.5, 0.405, 0.12, 0.0, 0.45), color: green });
  if (state === 'attention') {
    const badge = circle(0.76, 0.76, 0.24);
    layers.push(
      { distance: circle(0.76, 0.76, 0.28), color: ink },
      { distance: badge, color: amber },
      { distance: segment(0.76, 0.64, 0.76, 0.78, 0.07), color: ink },
      { distance: circle(0.76, 0.87, 0.038), color: ink },
    );
  }
  return render(size, layers);
}

export function writeIcons(assetsDir: string): string[] {
  const written: string[] = [];
  const write = (path: string, data: Buffer) => {
    writeFileSync(path, data);
    written.push(path);
  };
  mkdirSync(join(assetsDir, 'icons'), { recursive: true });
  mkdirSync(join(assetsDir, 'tray'), { recursive: true });
  const pngs = new Map<number, Buffer>();
  for (const size of appIconSizes) {
    const png = encodePng(size, appIcon(size));
    pngs.set(size, png);
    write(join(assetsDir, 'icons', `${size}x${size}.png`), png);
  }
  write(join(assetsDir, 'icon.png'), pngs.get(1024)!);
  write(join(assetsDir, 'icon.ico'), encodeIco(icoSizes.map((size) => [size, pngs.get(size)!])));
  write(join(assetsDir, 'icon.icns'), encodeIcns(icnsTypes.map(([type, size]) => [type, pngs.get(size)!])));
  for (const state of ['idle', 'busy', 'attention'] as const) {
    for (const size of traySizes) {
      write(join(assetsDir, 'tray', `tray-${state}-${size}.png`), encodePng(size, trayIcon(size, state)));
    }
    // The names the shell loads: 22 px, and @2x for high-density displays (Electron picks it by name).
    write(join(assetsDir, 'tray', `tray-${state}.png`), encodePng(22, trayIcon(22, state)));
    write(join(assetsDir, 'tray', `tray-${state}@2x.png`), encodePng(44, trayIcon(44, state)));
  }
  return written;
}

if (import.meta.main) {
  const assetsDir = join(import.meta.dirname, '..', 'assets');
  const written = writeIcons(assetsDir);
  process.stdout.write(`wrote ${written.length} files to ${assetsDir}\n`);
}
