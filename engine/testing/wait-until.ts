// For tests: waits until a condition on the outside world holds (a file a child process writes, a counter
// another process moves), looking again each few ms. The deadline only guards against a hang: generous, so a
// busy machine never fails a test that would pass.
export async function waitUntil(what: string, condition: () => boolean, deadlineMs = 120_000): Promise<void> {
  const giveUpAt = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out after ${deadlineMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
