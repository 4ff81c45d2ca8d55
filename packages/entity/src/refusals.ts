import type { Logger } from '@chiefofstate/core';
import type { Clock } from './ports.js';

/** Which bound refused a command. */
export type RefusalReason = 'entity_mailbox' | 'in_flight_commands' | 'journal_queue' | 'message_too_large';

/** How often at most the refusals are summed up in a log line. */
const LOG_INTERVAL_MS = 60_000;

export interface Refusals {
  /** `count` commands were refused for `reason` */
  note(reason: RefusalReason, count?: number): void;
}

/**
 * Reports refused commands to `onRefused` (metrics) one by one, and to the log as a warning at
 * most once a minute with the counts since the previous line: under overload a line per refusal
 * would only add to the load.
 */
export function createRefusals(onRefused: ((reason: RefusalReason) => void) | undefined, logger: Logger, clock: Clock): Refusals {
  let counts: Partial<Record<RefusalReason, number>> = {};
  let lastLog = -Infinity;
  return {
    note(reason, count = 1) {
      for (let i = 0; i < count; i++) onRefused?.(reason);
      counts[reason] = (counts[reason] ?? 0) + count;
      const now = clock.now().getTime();
      if (now - lastLog < LOG_INTERVAL_MS) return;
      logger.warn({ refused: counts }, 'commands refused by a bound (counts since the previous such line)');
      counts = {};
      lastLog = now;
    },
  };
}
