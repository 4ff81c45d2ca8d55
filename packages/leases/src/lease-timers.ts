import type { LeaseContext } from './lease-context.js';
import { lose } from './lease-handover.js';
import { runRound } from './lease-round.js';

/*
 * The clock: a round every renewIntervalMs, and a watchdog that gives up locally the leases
 * whose renewal is overdue (the database is stuck).
 */

/** Runs a round now, as c.round; a failed round is reported and retried by the next ones. */
export function roundNow(c: LeaseContext): Promise<void> {
  c.round = runRound(c)
    .catch(c.report)
    .finally(() => (c.round = undefined));
  return c.round;
}

/** Starts the watchdog and the rounds after the first one. */
export function startTimers(c: LeaseContext): void {
  c.watchdog = setInterval(() => {
    const now = performance.now();
    for (const [stream, lease] of c.leases) if (lease.validUntil < now) lose(c, stream);
  }, Math.max(5, Math.floor(c.renewIntervalMs / 2)));
  c.watchdog.unref();
  schedule(c);
}

export function stopTimers(c: LeaseContext): void {
  clearTimeout(c.timer);
  clearInterval(c.watchdog);
}

/**
 * Runs the next round now rather than at its time, or right after the one under way: the holder
 * of some leases was found gone, whose streams are to be taken.
 */
export function roundSoon(c: LeaseContext): void {
  // (before the timers start the first round is under way, and takes them)
  if (c.state !== 'running' || c.timer === undefined) return;
  if (c.round !== undefined) c.roundAgain = true;
  else schedule(c, 0);
}

function schedule(c: LeaseContext, delayMs = c.renewIntervalMs): void {
  if (c.state !== 'running') return;
  clearTimeout(c.timer);
  c.timer = setTimeout(() => {
    c.round = runRound(c)
      .catch(c.report)
      .finally(() => {
        c.round = undefined;
        const again = c.roundAgain;
        c.roundAgain = false;
        schedule(c, again ? 0 : c.renewIntervalMs);
      });
  }, delayMs);
  c.timer.unref();
}
