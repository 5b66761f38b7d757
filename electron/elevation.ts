// How the shell gets an engine when no service is running, and what it says when it cannot: the engine is
// root, the shell is not, so it asks the OS to start the engine elevated (pkexec with the polkit policy on
// Linux, the system password dialog through @vscode/sudo-prompt on macOS and Windows). Declining is a
// normal answer: the shell then starts an unprivileged engine that can still read local repositories.
// Pure decisions only; engine-supervisor.ts carries them out.

export type Platform = 'linux' | 'darwin' | 'win32' | (string & {});

export type ElevatedLaunch =
  /** Spawn `command args` directly; pkexec shows the polkit dialog and execs the engine as root. */
  | { kind: 'spawn'; command: string; args: string[] }
  /** One shell command line for sudo-prompt (macOS/Windows), which shows the OS dialog. */
  | { kind: 'sudo-prompt'; commandLine: string; name: string }
  | { kind: 'unsupported'; reason: string };

/** The elevated way to start `diskline daemon` from the engine launcher at `enginePath` (absolute). */
export function elevatedLaunch(platform: Platform, enginePath: string): ElevatedLaunch {
  if (platform === 'linux') {
    // pkexec takes the program's absolute path (the polkit policy names it) and clears the environment,
    // so the daemon uses its default socket, the one the shell connects to next.
    return { kind: 'spawn', command: 'pkexec', args: [enginePath, 'daemon'] };
  }
  if (platform === 'darwin' || platform === 'win32') {
    return { kind: 'sudo-prompt', commandLine: `${quoteArg(enginePath, platform)} daemon`, name: 'Diskline' };
  }
  return {
    kind: 'unsupported',
    reason: `Diskline cannot start its engine with administrator rights on ${platform}.`,
  };
}

function quoteArg(arg: string, platform: Platform): string {
  if (platform === 'win32') return `"${arg.replaceAll('"', '""')}"`;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** How an attempt to start the engine elevated ended. */
export type ElevationOutcome =
  | { kind: 'started' }
  | { kind: 'declined' }
  /** No way to ask (no polkit agent, pkexec missing, unsupported OS). */
  | { kind: 'unavailable'; detail: string }
  | { kind: 'failed'; detail: string };

/**
 * pkexec's exit when it ends before the engine's socket appears. pkexec documents 126 for "authorization
 * could not be obtained" (the user dismissed the dialog or is not allowed) and 127 for "pkexec could not
 * run the program" (no authentication agent, or the program missing); anything else is the engine's own exit.
 */
export function pkexecOutcome(exitCode: number | null, stderr: string): ElevationOutcome {
  const detail = lastLine(stderr);
  if (exitCode === 126) return { kind: 'declined' };
  if (exitCode === 127)
    return { kind: 'unavailable', detail: detail || 'pkexec could not ask for authorization' };
  return { kind: 'failed', detail: detail || `the engine exited with code ${exitCode}` };
}

/** sudo-prompt reports a dismissed dialog as this exact message; anything else is a failure. */
export function sudoPromptOutcome(error: Error | undefined): ElevationOutcome {
  if (!error) return { kind: 'started' };
  if (error.message === 'User did not grant permission.') return { kind: 'declined' };
  return { kind: 'failed', detail: error.message };
}

/** Failure to spawn pkexec at all (ENOENT: not installed). */
export function spawnErrorOutcome(error: NodeJS.ErrnoException): ElevationOutcome {
  if (error.code === 'ENOENT')
    return { kind: 'unavailable', detail: `${error.path ?? 'pkexec'} is not installed` };
  return { kind: 'failed', detail: error.message };
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .at(-1) ?? ''
  );
}

/** What still works without a privileged engine, said once wherever the shell explains the limited mode. */
export const limitedModeScope =
  'You can browse the restore points of a local repository you can read. ' +
  'Listing drives, backing up, restoring to a device, mounting and scheduled backups need the engine.';

export type Fallback = {
  /** Start an engine as the user, which can read local repositories, and connect to it. */
  startUnprivileged: boolean;
  /** The sentence the tray and the window show. */
  message: string;
};

/** After an elevated start did not happen: what the shell does next and what it tells the user. */
export function fallbackAfter(outcome: ElevationOutcome): Fallback | null {
  switch (outcome.kind) {
    case 'started':
      return null;
    case 'declined':
      return {
        startUnprivileged: true,
        message: `Diskline is running without administrator rights because the request was declined. ${limitedModeScope}`,
      };
    case 'unavailable':
      return {
        startUnprivileged: true,
        message:
          `Diskline could not ask for administrator rights (${outcome.detail}). ${limitedModeScope} ` +
          'Install the Diskline service (diskline.service) to run the engine at boot.',
      };
    case 'failed':
      return {
        startUnprivileged: true,
        message: `The Diskline engine did not start with administrator rights: ${outcome.detail}. ${limitedModeScope}`,
      };
  }
}
