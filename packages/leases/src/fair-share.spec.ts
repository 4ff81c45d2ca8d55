import { describe, expect, it } from 'vitest';
import { fairShare, type LiveMember } from './fair-share.js';

const streams = (n: number, prefix = 's') => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(2, '0')}`);
const sets = (entries: Record<string, readonly string[]>) =>
  new Map(Object.entries(entries).map(([fingerprint, list]) => [fingerprint, new Set(list)]));
const same = (...owners: string[]): LiveMember[] => owners.map((owner) => ({ owner, fingerprint: 'f' }));
const quotas = (groups: { quota: number }[]) => groups.map((group) => group.quota);

describe('fairShare', () => {
  it('gives a lone process every stream', () => {
    const groups = fairShare({ me: 'a', myStreams: streams(16), members: same('a'), streamSets: sets({ f: streams(16) }) });
    expect(groups).toEqual([{ streams: streams(16), quota: 16 }]);
  });

  it('counts this process even when its own heartbeat is not in the list', () => {
    const groups = fairShare({ me: 'a', myStreams: streams(16), members: same('b'), streamSets: sets({ f: streams(16) }) });
    expect(quotas(groups)).toEqual([8]);
  });

  it('splits exactly among processes with the same streams, the remainder to the first in owner order', () => {
    const members = same('c', 'a', 'b');
    const targets = ['a', 'b', 'c'].map(
      (me) => quotas(fairShare({ me, myStreams: streams(16), members, streamSets: sets({ f: streams(16) }) }))[0],
    );
    expect(targets).toEqual([6, 5, 5]);
  });

  it('gives nothing to a process with no streams', () => {
    expect(fairShare({ me: 'a', myStreams: [], members: same('a', 'b'), streamSets: sets({ f: [] }) })).toEqual([]);
  });

  it('ignores processes running other streams', () => {
    const members: LiveMember[] = [...same('a', 'b'), { owner: 'z', fingerprint: 'other' }];
    const groups = fairShare({ me: 'a', myStreams: streams(16), members, streamSets: sets({ f: streams(16), other: ['q1', 'q2'] }) });
    expect(quotas(groups)).toEqual([8]);
  });

  it('counts a member whose stream set is not known yet as running nothing', () => {
    const members: LiveMember[] = [...same('a'), { owner: 'b', fingerprint: 'unknown' }];
    expect(quotas(fairShare({ me: 'a', myStreams: streams(4), members, streamSets: sets({ f: streams(4) }) }))).toEqual([4]);
  });

  it('splits each group of streams among the processes that can run it', () => {
    // a runs x00..x07 and y00..y07; b runs x00..x07 only
    const x = streams(8, 'x');
    const y = streams(8, 'y');
    const streamSets = sets({ fa: [...x, ...y], fb: x });
    const members: LiveMember[] = [
      { owner: 'a', fingerprint: 'fa' },
      { owner: 'b', fingerprint: 'fb' },
    ];
    expect(fairShare({ me: 'a', myStreams: [...x, ...y], members, streamSets })).toEqual([
      { streams: x, quota: 4 },
      { streams: y, quota: 8 },
    ]);
    expect(fairShare({ me: 'b', myStreams: x, members, streamSets })).toEqual([{ streams: x, quota: 4 }]);
  });
});
