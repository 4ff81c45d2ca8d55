/**
 * Longest delay a Node timer takes: past it, setTimeout warns and fires after 1 ms, so a
 * caller's deadline of weeks would expire at once.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** A delay for setTimeout from a caller's remaining time: capped at MAX_TIMER_MS (about 24.8 days). */
export function timerDelay(ms: number): number {
  return ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms;
}
