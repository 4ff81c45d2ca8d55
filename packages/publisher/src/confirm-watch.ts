/*
 * The acknowledgements a sink waits for in one batch, failed together when the broker
 * acknowledges nothing for the timeout, or at once when the connection goes.
 */

/** The unconfirmed publications of one batch, failed when the broker confirms nothing for `timeoutMs`. */
export interface ConfirmWatch {
  /** one more publication waiting; returns what settles it (once: later calls do nothing) */
  waiting(id: string, done: (error?: Error) => void): (error?: Error) => void;
  /** fails every publication still waiting (the connection was lost) */
  lost(reason: Error): void;
  stop(): void;
}

/**
 * One timer per batch instead of one per message (a timer, a race and their promises cost about
 * as much CPU as the publication itself): it fires `timeoutMs` after the last confirm, or after the
 * first publication when none came, and fails what is still waiting then.
 */
export function watchConfirms(timeoutMs: number, what: string): ConfirmWatch {
  const waiting = new Map<(error?: Error) => void, string>();
  let progressAt = 0;
  let timer: NodeJS.Timeout | undefined;
  const failAll = (reasonOf: (id: string) => Error) => {
    const stalled = [...waiting];
    waiting.clear();
    for (const [settle, id] of stalled) settle(reasonOf(id));
  };
  const check = () => {
    timer = undefined;
    const idle = Date.now() - progressAt;
    if (idle < timeoutMs) {
      timer = setTimeout(check, timeoutMs - idle);
      return;
    }
    failAll((id) => new Error(`${what}: publish ${id}: no acknowledgement within ${timeoutMs} ms`));
  };
  return {
    waiting(id, done) {
      let open = true;
      const settle = (error?: Error) => {
        if (!open) return;
        open = false;
        if (waiting.delete(settle)) progressAt = Date.now();
        done(error);
      };
      waiting.set(settle, id);
      if (timer === undefined && Number.isFinite(timeoutMs)) {
        progressAt = Date.now();
        timer = setTimeout(check, timeoutMs);
      }
      return settle;
    },
    lost: (reason) => failAll(() => reason),
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
