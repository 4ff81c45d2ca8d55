import { describe, expect, it } from 'vitest';
import type { CallRefusal } from './caller-auth.js';
import { createRefusalLog } from './refusal-log.js';

const refusal = (reason: string, remoteAddress = '10.0.0.1'): CallRefusal => ({
  method: '/chief_of_state.v1.ChiefOfStateService/ProcessCommand',
  code: 'unauthenticated',
  reason,
  remoteAddress,
});

describe('createRefusalLog', () => {
  it('logs the first refusal of a kind, counts the repeats of the next minute, and says how many it left out', () => {
    let clock = 0;
    const lines: Array<CallRefusal & { suppressed?: number }> = [];
    const log = createRefusalLog((line) => lines.push(line), () => clock);
    for (let i = 0; i < 1000; i++) log(refusal('unknown bearer token'));
    // another reason and another address are other kinds
    log(refusal('no credential'));
    log(refusal('unknown bearer token', '10.0.0.2'));
    expect(lines.map((l) => [l.reason, l.remoteAddress, l.suppressed])).toEqual([
      ['unknown bearer token', '10.0.0.1', undefined],
      ['no credential', '10.0.0.1', undefined],
      ['unknown bearer token', '10.0.0.2', undefined],
    ]);
    clock = 59_999;
    log(refusal('unknown bearer token'));
    expect(lines).toHaveLength(3);
    clock = 60_000;
    log(refusal('unknown bearer token'));
    expect(lines.at(-1)).toMatchObject({ reason: 'unknown bearer token', remoteAddress: '10.0.0.1', suppressed: 1000 });
  });
});
