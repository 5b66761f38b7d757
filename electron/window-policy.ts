// The main window's locks: web preferences, the Content-Security-Policy, which navigations are allowed, and
// how the renderer's files are served under app://diskline/ (never from arbitrary file:// paths). Pure, so
// the tests assert each lock as data.
import { readFile, stat } from 'node:fs/promises';
import { extname, join, relative, resolve, sep } from 'node:path';
import type { BrowserWindowConstructorOptions } from 'electron';
import { appHost, appOrigin, appScheme, originOf } from './ipc-policy.ts';

export const rendererEntryUrl = `${appOrigin}/index.html`;

export function windowOptions(preloadPath: string, iconPath: string): BrowserWindowConstructorOptions {
  return {
    title: 'Diskline',
    width: 1200,
    height: 800,
    minWidth: 800,
    minHeight: 560,
    icon: iconPath,
    // Shown on ready-to-show, so the user never sees an empty white frame.
    show: false,
    backgroundColor: '#14171c',
    webPreferences: {
      preload: preloadPath,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
    },
  };
}

/**
 * The policy for our pages. No remote content: scripts, styles, images, fonts and fetches come from our
 * own origin only (inline styles are allowed for the style attributes React components set). In
 * development the Vite dev server's origin and its HMR WebSocket are added, and inline scripts for its
 * React refresh preamble.
 */
export function contentSecurityPolicy(devServerUrl?: string): string {
  const dev = devServerUrl ? new URL(devServerUrl) : null;
  const devOrigin = dev ? ` ${dev.origin}` : '';
  const devSocket = dev ? ` ${dev.protocol === 'https:' ? 'wss' : 'ws'}://${dev.host}` : '';
  return [
    "default-src 'none'",
    `script-src 'self'${devOrigin}${dev ? " 'unsafe-inline'" : ''}`,
    `style-src 'self' 'unsafe-inline'${devOrigin}`,
    `img-src 'self' data: blob:${devOrigin}`,
    `font-src 'self' data:${devOrigin}`,
    `connect-src 'self'${devOrigin}${devSocket}`,
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-src 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Response headers with our CSP set, replacing whatever the server sent under any capitalization. */
export function withContentSecurityPolicy(
  headers: Record<string, string[]> | undefined,
  policy: string,
): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() !== 'content-security-policy') result[name] = value;
  }
  result['Content-Security-Policy'] = [policy];
  return result;
}

/** Navigation stays on the page we loaded: any other target (links, redirects, drops) is refused. */
export function mayNavigate(targetUrl: string, trusted: readonly string[]): boolean {
  const origin = originOf(targetUrl);
  return origin !== null && trusted.includes(origin);
}

const mimeTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Answers an app://diskline/… request from the renderer's build folder. Paths that leave the folder are
 * refused; an unknown path without an extension is a client-side route and gets index.html.
 */
export async function serveRendererFile(
  rendererDir: string,
  requestUrl: string,
  policy: string,
): Promise<Response> {
  const url = new URL(requestUrl);
  const headers = { 'Content-Security-Policy': policy, 'X-Content-Type-Options': 'nosniff' };
  if (url.protocol !== `${appScheme}:` || url.host !== appHost) {
    return new Response('not ours', { status: 403, headers });
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(url.pathname);
  } catch {
    return new Response('bad path', { status: 400, headers });
  }
  const root = resolve(rendererDir);
  let file = resolve(join(root, pathname));
  const inside = relative(root, file);
  if (inside.startsWith('..') || inside.includes(`..${sep}`) || resolve(root, inside) !== file) {
    return new Response('outside the renderer', { status: 403, headers });
  }
  if (!(await isFile(file))) {
    if (extname(file) !== '') return new Response(`${pathname} not found`, { status: 404, headers });
    file = join(root, 'index.html');
    if (!(await isFile(file))) {
      return new Response(
        `The Diskline window is not built (${file} is missing). Run 'npm run build' and start Diskline again.`,
        { status: 404, headers: { ...headers, 'Content-Type': 'text/plain; charset=utf-8' } },
      );
    }
  }
  const body = await readFile(file);
  return new Response(body, {
    status: 200,
    headers: { ...headers, 'Content-Type': mimeTypes[extname(file)] ?? 'application/octet-stream' },
  });
}
