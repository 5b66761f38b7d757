// Polls a condition until it holds: the shell reacts to socket events and coalesces tray renders, so tests
// wait for outcomes instead of sleeping a guessed time. The deadline only guards against a hang: generous, so a
// busy machine never fails a test that would pass.
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
