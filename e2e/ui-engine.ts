// The end-to-end fixture: a real engine (`bin/diskline serve --json`) over a real repository and real image
// files made with mkfs.ext4 -d, and a real headless Chromium pointed at the address serve printed. Everything
// lives in one temp dir that is removed afterwards, and the engine is stopped, even when a step fails.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { runTool } from '../engine/testing/tools.ts';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
export const diskline = join(projectRoot, 'bin', 'diskline');
export const chromiumPath = '/usr/bin/chromium';
const MiB = 1024 * 1024;

export const password = 'e2e correct horse battery staple';

/** Why this machine cannot run the UI end-to-end test, or null when it can. */
export function e2eUnavailableReason(): string | null {
  if (!existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (scripts/setup.sh installs it)`;
  if (!existsSync(join(projectRoot, 'renderer', 'dist', 'index.html')))
    return 'the renderer is not built: run `npm run build` first';
  if (!existsSync(join(projectRoot, 'engine', 'cli', 'verbs', 'serve.ts')))
    return '`diskline serve` is missing';
  return null;
}

export interface Fixture {
  dir: string;
  repo: string;
  source: string;
  target: string;
  /** The current contents of changing.bin inside the source image. */
  changingFile: Buffer;
  run(args: string[]): Promise<string>;
  startServe(): Promise<string>;
  openPage(url: string): Promise<Page>;
  close(): Promise<void>;
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Bytes of the file `changing.bin` the fixture puts in the source file system (found in the image later). */
const changingFileBytes = 256 * 1024;

/**
 * Rewrites the contents of `changing.bin` in place inside the (unmounted) source image, so the next backup has
 * something changed to copy. The backup reads only blocks the file system uses, so the change must land in a
 * file's blocks, not in free space. Returns the new bytes of the image.
 */
export async function changeFileInImage(fixture: Fixture): Promise<Buffer> {
  const image = await readFile(fixture.source);
  const at = image.indexOf(fixture.changingFile.subarray(0, 4096));
  if (at < 0) throw new Error(`changing.bin's contents are not in ${fixture.source} as one extent`);
  const fresh = randomBytes(changingFileBytes);
  fresh.copy(image, at);
  fixture.changingFile = fresh;
  await writeFile(fixture.source, image);
  return image;
}

/** A source of `sizeMiB` with `filesMiB` of files in it, and an empty target of the same size. */
export async function makeFixture(sizeMiB = 32, filesMiB = 3): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-e2e-'));
  // A socket of its own: the CLI talks to a daemon only when one answers there (none does: it hosts the engine).
  const env = {
    ...process.env,
    DISKLINE_PASSWORD: password,
    DISKLINE_STATE_DIR: join(dir, 'state'),
    DISKLINE_SOCKET: join(dir, 'engine.sock'),
  };
  let serve: ChildProcess | null = null;
  let browser: Browser | null = null;
  const fixture: Fixture = {
    dir,
    repo: join(dir, 'repo'),
    source: join(dir, 'source.img'),
    target: join(dir, 'target.img'),
    changingFile: randomBytes(changingFileBytes),
    async run(args) {
      const { stdout } = await runTool(diskline, args, { env: env as Record<string, string> });
      return stdout;
    },
    async startServe() {
      const child = spawn(
        diskline,
        ['serve', '--json', '--repo', fixture.repo, '--image', fixture.source, '--image', fixture.target],
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      serve = child;
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      return new Promise<string>((resolve, reject) => {
        let stdout = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          const line = stdout.split('\n')[0];
          if (stdout.includes('\n') && line) {
            try {
              resolve((JSON.parse(line) as { url: string }).url);
            } catch {
              reject(new Error(`diskline serve --json printed '${line}', not JSON`));
            }
          }
        });
        child.once('exit', (code) =>
          reject(new Error(`diskline serve exited (${code}) before it was ready: ${stderr}`)),
        );
      });
    },
    async openPage(url) {
      browser ??= await chromium.launch({
        executablePath: chromiumPath,
        args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
      });
      const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
      page.setDefaultTimeout(15_000);
      await page.goto(url);
      return page;
    },
    async close() {
      await browser?.close().catch(() => {});
      const child = serve as ChildProcess | null;
      if (child && child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    const files = join(dir, 'files');
    await mkdir(join(files, 'docs'), { recursive: true });
    for (let i = 0; i < filesMiB * 2; i++)
      await writeFile(join(files, 'docs', `file-${i}.bin`), randomBytes(512 * 1024));
    await writeFile(join(files, 'hello.txt'), 'Diskline end-to-end\n');
    await writeFile(join(files, 'changing.bin'), fixture.changingFile);
    await runTool('mkfs.ext4', ['-q', '-F', '-d', files, fixture.source, `${sizeMiB}M`]);
    await writeFile(fixture.target, Buffer.alloc(0));
    await runTool('truncate', ['-s', `${sizeMiB * MiB}`, fixture.target]);
  } catch (error) {
    await fixture.close();
    throw error;
  }
  return fixture;
}

/** Calls the engine of `serveUrl` directly over its WebSocket (for cleanup when the page cannot). */
export async function callEngine(serveUrl: string, method: string, params: unknown): Promise<unknown> {
  const address = new URL(serveUrl);
  const token = new URLSearchParams(address.hash.slice(1)).get('token') ?? '';
  const socket = new WebSocket(`ws://${address.host}/api?token=${encodeURIComponent(token)}`);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`the engine did not answer ${method} within 10 s`));
    }, 10_000);
    socket.onopen = () => socket.send(JSON.stringify({ type: 'request', id: 1, method, params }));
    socket.onerror = () => reject(new Error(`could not reach the engine at ${address.host}`));
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as {
        type: string;
        id?: number;
        ok?: boolean;
        result?: unknown;
        error?: { message: string };
      };
      if (message.type !== 'response' || message.id !== 1) return;
      clearTimeout(timer);
      socket.close();
      if (message.ok) resolve(message.result);
      else reject(new Error(message.error?.message ?? `${method} failed`));
    };
  });
}
