/** A live process as the fair-share computation sees it. */
export interface LiveMember {
  readonly owner: string;
  /** fingerprint of the set of streams it can run */
  readonly fingerprint: string;
}

export interface FairShareInput {
  /** this process */
  readonly me: string;
  /** the streams this process can run, sorted */
  readonly myStreams: readonly string[];
  /** every live process, this one included */
  readonly members: readonly LiveMember[];
  /** stream sets by fingerprint; a member whose set is unknown is counted as running nothing */
  readonly streamSets: ReadonlyMap<string, ReadonlySet<string>>;
}

/** Streams that the same live processes can run, and how many of them this process should hold. */
export interface StreamGroup {
  readonly streams: readonly string[];
  readonly quota: number;
}

/**
 * This process's fair share, per group of streams run by the same live processes. Each group of
 * n streams and m runners is split exactly, n = q·m + r: the first r runners in owner order hold
 * q + 1 streams, the others q. The quotas of a group add up to n, so whenever one of its streams
 * is free some runner is below its quota and takes it. With every process running the same
 * streams (the usual deployment) there is one group; processes running other streams (another
 * read side configuration, or unrelated services on the same database) do not disturb it.
 */
export function fairShare(input: FairShareInput): StreamGroup[] {
  const { me, myStreams, members, streamSets } = input;
  const others = members
    .filter((member) => member.owner !== me)
    .sort((x, y) => (x.owner < y.owner ? -1 : x.owner > y.owner ? 1 : 0));
  const groups = new Map<string, { runners: string[]; streams: string[] }>();
  for (const stream of myStreams) {
    const runners = [me];
    for (const other of others) if (streamSets.get(other.fingerprint)?.has(stream)) runners.push(other.owner);
    runners.sort();
    const key = runners.join('\n');
    let group = groups.get(key);
    if (!group) {
      group = { runners, streams: [] };
      groups.set(key, group);
    }
    group.streams.push(stream);
  }
  return [...groups.values()].map(({ runners, streams }) => {
    const n = streams.length;
    const m = runners.length;
    const rank = runners.indexOf(me);
    return { streams, quota: Math.floor(n / m) + (rank < n % m ? 1 : 0) };
  });
}
