// Who may talk to the main process and what they may say. The renderer reaches the engine through one
// invoke channel; a call is accepted only from our own page's main frame, only on our channel, only for a
// method of the protocol, and only with params that match the method's schema. Everything else is refused
// with a reason, before anything reaches the (root) engine.
import { MAX_MESSAGE_BYTES, type MethodName, methods } from '../protocol/messages.ts';

/** renderer → main: { method, params } → result (ipcRenderer.invoke). */
export const callChannel = 'diskline:call';
/** main → renderer: { event, data } for every engine event. */
export const eventChannel = 'diskline:event';

/** The custom scheme the renderer is served from (file:// would let any local file claim our origin). */
export const appScheme = 'app';
export const appHost = 'diskline';
export const appOrigin = `${appScheme}://${appHost}`;

/** Origins whose pages are ours: the packaged renderer, and the Vite dev server when one is configured. */
export function trustedOrigins(devServerUrl: string | undefined): string[] {
  const origins = [appOrigin];
  if (devServerUrl) origins.push(new URL(devServerUrl).origin);
  return origins;
}

/** The origin of a URL, correct for our non-special `app:` scheme too (URL.origin is 'null' there). */
export function originOf(url: string): string | null {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === `${appScheme}:`) return `${parsed.protocol}//${parsed.host}`;
    return parsed.origin === 'null' ? null : parsed.origin;
  } catch {
    return null;
  }
}

export function isTrustedUrl(url: string, origins: readonly string[]): boolean {
  const origin = originOf(url);
  return origin !== null && origins.includes(origin);
}

/**
 * What the call channel answers. Errors travel as data, not as a rejected invoke, because Electron would
 * wrap their message in "Error invoking remote method …" and drop the code; the preload turns them back
 * into an Error with the engine's own message and a `code`.
 */
export type CallAnswer =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string } };

/** What Electron tells us about the frame that sent an IPC message (a subset of WebFrameMain). */
export type SenderFrame = { url: string; isMainFrame: boolean } | null;

export type CallCheck = { ok: true; method: MethodName; params: unknown } | { ok: false; reason: string };

function isMethodName(name: unknown): name is MethodName {
  return typeof name === 'string' && Object.hasOwn(methods, name);
}

/** Decides whether a renderer's call goes to the engine; `params` comes back parsed (defaults applied). */
export function checkCall(
  channel: string,
  sender: SenderFrame,
  payload: unknown,
  origins: readonly string[],
): CallCheck {
  if (channel !== callChannel) return { ok: false, reason: `unknown channel '${channel}'` };
  if (sender === null) return { ok: false, reason: 'the sending frame is gone' };
  if (!sender.isMainFrame) return { ok: false, reason: `a subframe (${sender.url}) may not call the engine` };
  if (!isTrustedUrl(sender.url, origins)) {
    return { ok: false, reason: `a page from ${originOf(sender.url) ?? sender.url} may not call the engine` };
  }
  if (typeof payload !== 'object' || payload === null)
    return { ok: false, reason: 'a call must be an object' };
  const { method, params } = payload as { method?: unknown; params?: unknown };
  if (!isMethodName(method)) return { ok: false, reason: `unknown method '${String(method)}'` };
  // The engine refuses frames over this size anyway; refusing here keeps a runaway page from making us try.
  const size = Buffer.byteLength(JSON.stringify(params ?? {}) ?? '');
  if (size > MAX_MESSAGE_BYTES) {
    return {
      ok: false,
      reason: `params for ${method} are ${size} bytes, over the ${MAX_MESSAGE_BYTES}-byte limit`,
    };
  }
  const parsed = methods[method][0].safeParse(params ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at '${issue.path.join('.')}'` : '';
    return { ok: false, reason: `bad params for ${method}${where}: ${issue?.message ?? 'invalid'}` };
  }
  return { ok: true, method, params: parsed.data };
}
