import type { CallRefusal } from './caller-auth.js';

/** How often at most the same refusal (method, reason, address) gets a log line. */
const REPEAT_MS = 60_000;
/** Refusals remembered at most; beyond, the memory starts over (a flood from many addresses). */
const MAX_KEYS = 1024;

/**
 * Logs refused calls without letting a caller flood the log: the first refusal of a kind (method,
 * reason, remote address) is logged at once, repeats within a minute are only counted, and the
 * next line of that kind says how many were left out (`suppressed`).
 */
export function createRefusalLog(
  log: (refusal: CallRefusal & { readonly suppressed?: number }) => void,
  now: () => number = () => performance.now(),
): (refusal: CallRefusal) => void {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return (refusal) => {
    const key = `${refusal.method}\u0000${refusal.reason}\u0000${refusal.remoteAddress ?? ''}`;
    const at = now();
    const last = seen.get(key);
    if (last !== undefined && at - last.at < REPEAT_MS) {
      last.suppressed++;
      return;
    }
    if (last === undefined && seen.size >= MAX_KEYS) seen.clear();
    seen.set(key, { at, suppressed: 0 });
    log(last !== undefined && last.suppressed > 0 ? { ...refusal, suppressed: last.suppressed } : refusal);
  };
}
