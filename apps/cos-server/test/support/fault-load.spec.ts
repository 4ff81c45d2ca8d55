// The judge of the fault-injection suite must fail when a property is broken: each rule on its own.
import { describe, expect, it } from 'vitest';
import { judge, type CallOutcome, type JournalRow } from './fault-load.js';

const call = (marker: string, status: string, extra: Partial<CallOutcome> = {}): CallOutcome => ({
  marker,
  entityId: 'e',
  startedAt: 0,
  deadlineAt: 3000,
  endedAt: 100,
  status,
  ...extra,
});
const row = (marker: string, revision: number, entityId = 'e'): JournalRow => ({ entityId, revision, marker });

describe('judge', () => {
  it('passes a consistent run: acks once at their revision, refusals absent, unknown outcomes 0 or 1 times', () => {
    const verdict = judge(
      [call('a', 'OK', { revision: 1 }), call('b', 'UNAVAILABLE'), call('c', 'UNKNOWN'), call('d', 'DEADLINE_EXCEEDED'), call('e', 'OK', { revision: 3 })],
      [row('a', 1), row('c', 2), row('e', 3)],
    );
    expect(verdict.problems).toEqual([]);
    expect(verdict.figures).toMatchObject({ calls: 5, acks: 2, failedButInJournal: 1, maxOverrunMs: 0 });
  });

  it.each([
    ['a lost acknowledgement', [call('a', 'OK', { revision: 1 })], [], /missing from the journal/],
    ['an acknowledgement at another revision', [call('a', 'OK', { revision: 2 }), call('b', 'OK', { revision: 1 })], [row('a', 1), row('b', 2)], /at another revision/],
    ['an event twice', [call('a', 'OK', { revision: 1 })], [row('a', 1), row('a', 2)], /more than once/],
    ['an UNKNOWN event twice', [call('a', 'UNKNOWN')], [row('a', 1), row('a', 2)], /more than once/],
    ['a written UNAVAILABLE', [call('a', 'UNAVAILABLE')], [row('a', 1)], /refused as not persisted/],
    ['a written RESOURCE_EXHAUSTED', [call('a', 'RESOURCE_EXHAUSTED')], [row('a', 1)], /refused as not persisted/],
    ['a gap', [call('a', 'OK', { revision: 1 }), call('b', 'OK', { revision: 3 })], [row('a', 1), row('b', 3)], /not 1\.\.n/],
    ['an event nobody sent', [], [row('x', 1)], /no call sent/],
    ['an answer 1.1 s past the deadline', [call('a', 'UNAVAILABLE', { endedAt: 4100 })], [], /past their deadline/],
    ['a call never answered', [call('a', 'NO_ANSWER', { endedAt: 8000 })], [], /past their deadline/],
    ['an INTERNAL', [call('a', 'INTERNAL')], [], /unexpected statuses/],
  ])('fails on %s', (_, outcomes, journal, problem) => {
    const { problems } = judge(outcomes, journal);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(problem);
  });
});
