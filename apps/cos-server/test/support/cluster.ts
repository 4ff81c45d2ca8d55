// What the cluster tests share: entity ids spread over every shard, a replica's metrics, the
// lease tables, and waiting until replicas have split the shards and learned who owns which.
import pg from 'pg';
import { expect } from 'vitest';
import { shardOf } from '@chiefofstate/core';
import { testPostgresConnection } from '@chiefofstate/postgres/testing';
import { pollUntil } from '@chiefofstate/testing';
import type { CosFixture } from './cos-fixture.js';

export const NUM_SHARDS = 16;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `perShard` entity ids of every shard, so a load touches all of them evenly. */
export function entitiesOfAllShards(prefix: string, perShard: number): string[] {
  const buckets: string[][] = Array.from({ length: NUM_SHARDS }, () => []);
  for (let i = 0; buckets.some((bucket) => bucket.length < perShard); i++) {
    const id = `${prefix}-${i}`;
    const bucket = buckets[shardOf(id, NUM_SHARDS)]!;
    if (bucket.length < perShard) bucket.push(id);
  }
  return buckets.flat();
}

/**
 * The sum of a metric's samples whose labels include `labels`; undefined when unreachable.
 * `token`: the bearer token /metrics asks for (COS_METRICS_TOKEN_FILE).
 */
export async function metric(
  replica: CosFixture,
  name: string,
  labels: Record<string, string> = {},
  token?: string,
): Promise<number | undefined> {
  let text: string;
  try {
    const response = await fetch(`http://127.0.0.1:${replica.metricsPort}/metrics`, {
      ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {}),
    });
    if (!response.ok) return undefined;
    text = await response.text();
  } catch {
    return undefined;
  }
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const match = line.match(/^(\w+)(?:\{(.*)\})? (\S+)$/);
    if (match?.[1] !== name) continue;
    const found = new Map([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) sum = (sum ?? 0) + Number(match[3]);
  }
  return sum;
}

export async function query<R extends pg.QueryResultRow>(schema: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client(testPostgresConnection(schema));
  await client.connect();
  try {
    await client.query(`set search_path to ${pg.escapeIdentifier(schema)}`);
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** The entity shards whose lease names the replica, from the lease tables. */
export async function shardsOf(replica: CosFixture): Promise<Set<number>> {
  const rows = await query<{ stream: string }>(
    replica.schema,
    `select l.stream from cos_stream_leases l join cos_stream_members m on m.owner = l.owner
     where m.address = $1 and l.expires_at > now() and l.stream like 'entity-shard/%'`,
    [`127.0.0.1:${replica.port}`],
  );
  return new Set(rows.map((row) => Number(row.stream.slice('entity-shard/'.length))));
}

/**
 * Waits (bounded) until the replicas own `expected` shards each, and every replica has learned
 * who owns the others': a replica learns that at the end of each lease round (every second), and
 * its next round's heartbeat comes only after that end, so once each replica has written two
 * heartbeats after the split, each has ended a round that started after it.
 */
export async function shardsSettle(replicas: CosFixture[], expected: number[], timeoutMs = 30_000, metricsToken?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const owned = () => Promise.all(replicas.map((replica) => metric(replica, 'cos_entity_shards_owned', {}, metricsToken)));
  // pollUntil, not expect.poll: this also runs in beforeAll
  let last: Array<number | undefined> = [];
  await pollUntil(
    async () => (last = await owned()).join() === expected.join(),
    timeoutMs,
    `the replicas own ${expected.join(', ')} shards`,
    100,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last seen ${last.join(', ')}`);
  });
  const heartbeats = () =>
    query<{ owner: string; expires_at: Date }>(replicas[0]!.schema, 'select owner, expires_at from cos_stream_members where expires_at > now()');
  const first = new Map((await heartbeats()).map((row) => [row.owner, row.expires_at.getTime()]));
  const seen = new Map([...first.keys()].map((owner) => [owner, new Set<number>()]));
  while ([...seen.values()].some((beats) => beats.size < 2)) {
    if (Date.now() > deadline) throw new Error(`the replicas did not renew their heartbeats within ${timeoutMs} ms`);
    await sleep(50);
    for (const row of await heartbeats()) if (row.expires_at.getTime() !== first.get(row.owner)) seen.get(row.owner)?.add(row.expires_at.getTime());
  }
  expect(seen.size).toBe(replicas.length);
  expect(await owned()).toEqual(expected);
}
