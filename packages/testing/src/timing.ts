/** Polls `check` every `intervalMs` until it holds; resolves with the time it took, or fails after `ms`. */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  intervalMs = 50,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** How a call ended (its value or its error) and how long it took, in ms. */
export async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; error?: unknown; value?: T }> {
  const started = Date.now();
  try {
    const value = await run();
    return { ms: Date.now() - started, value };
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
}
