import { silentLogger } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { createRefusals, type RefusalReason } from './refusals.js';

describe('refusals', () => {
  it('tells each refusal to onRefused and logs the counts at most once a minute', () => {
    let now = 0;
    const told: RefusalReason[] = [];
    const lines: unknown[] = [];
    const logger = { ...silentLogger, warn: (fields: object | string) => lines.push((fields as Record<string, unknown>)['refused']) };
    const refusals = createRefusals((reason) => told.push(reason), logger, { now: () => new Date(now) });
    refusals.note('entity_mailbox');
    refusals.note('entity_mailbox');
    refusals.note('journal_queue', 3);
    now = 59_999;
    refusals.note('in_flight_commands');
    expect(lines).toEqual([{ entity_mailbox: 1 }]);
    now = 60_000;
    refusals.note('message_too_large');
    expect(lines).toEqual([{ entity_mailbox: 1 }, { entity_mailbox: 1, journal_queue: 3, in_flight_commands: 1, message_too_large: 1 }]);
    expect(told).toEqual(['entity_mailbox', 'entity_mailbox', 'journal_queue', 'journal_queue', 'journal_queue', 'in_flight_commands', 'message_too_large']);
  });
});
