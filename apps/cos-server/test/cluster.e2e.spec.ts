// Several cos-server replicas on one PostgreSQL schema split the entity shards through leases
// and forward each call once to the shard's owner: the built server processes, a stock grpc-js
// write handler and stock grpc-js clients, the real PostgreSQL.
import * as grpc from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '@chiefofstate/core';
import { testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import { EventWrapperSchema, FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER } from '@chiefofstate/protocol';
import { command, failure, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import { entitiesOfAllShards, metric, NUM_SHARDS, query, shardsOf, shardsSettle } from './support/cluster.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const ownedShards = (replica: CosFixture) => metric(replica, 'cos_entity_shards_owned');
const routed = (replica: CosFixture, outcome: 'forwarded' | 'owner_unreachable' | 'owner_refused') =>
  metric(replica, 'cos_forwarded_calls_total', { outcome }).then((n) => n ?? 0);

interface Ack {
  entityId: string;
  revision: number;
  state: Uint8Array;
}

interface Outcome {
  at: number;
  entityId: string;
  code: grpc.status | 'OK';
  /** a failure's message, to tell why it failed */
  details?: string;
}

/**
 * Callers sending Emit commands to one replica until stopped, each stepping through all the
 * entities from a place of its own, so some commands of one entity run concurrently.
 */
function startLoad(target: CosFixture, entities: string[], callers: number) {
  const acks: Ack[] = [];
  const outcomes: Outcome[] = [];
  let running = true;
  const caller = async (c: number) => {
    for (let i = 0; running; i++) {
      const entityId = entities[(c * 5 + i * 3) % entities.length]!;
      try {
        const { response } = await target.send(entityId, command('Emit', { events: [`c${c}-${i}`] }), { deadlineMs: 20_000 });
        acks.push({ entityId, revision: response.meta!.revisionNumber, state: response.state!.value });
        outcomes.push({ at: Date.now(), entityId, code: 'OK' });
      } catch (error) {
        outcomes.push({ at: Date.now(), entityId, code: (error as grpc.ServiceError).code, details: (error as grpc.ServiceError).details });
        await sleep(20);
      }
    }
  };
  const done = Promise.all(Array.from({ length: callers }, (_, c) => caller(c)));
  return {
    acks,
    outcomes,
    async stop() {
      running = false;
      await done;
    },
  };
}

/**
 * The journal table itself: per entity, revisions 1..n once each, every row's state built on the
 * previous row's (the test handler's state lists every event applied, and each command emits a
 * name of its own), and every acknowledged revision there with the acknowledged state. Commands
 * that failed may or may not have been persisted (the owner may have committed and died before
 * answering, or the caller's connection broke after the commit), so the journal may hold more
 * than was acknowledged, but never a gap, a duplicate or a lost acknowledgement.
 */
async function checkJournal(schema: string, acks: Ack[]): Promise<{ rows: number; acked: number }> {
  const rows = await query<{ entity_id: string; revision: string; payload: Buffer }>(
    schema,
    'select entity_id, revision, payload from cos_journal order by entity_id, revision, position',
  );
  const byEntity = new Map<string, { revision: number; state: Uint8Array; events: string[] }[]>();
  for (const row of rows) {
    const wrapper = fromBinary(EventWrapperSchema, row.payload);
    const list = byEntity.get(row.entity_id) ?? [];
    list.push({ revision: Number(row.revision), state: wrapper.resultingState!.value, events: stateOf(wrapper.resultingState).events });
    byEntity.set(row.entity_id, list);
  }
  for (const [entityId, list] of byEntity) {
    expect(list.map((r) => r.revision), entityId).toEqual(list.map((_, i) => i + 1));
    for (const [i, row] of list.entries()) {
      expect(row.events, `${entityId} revision ${row.revision} builds on the one before`).toEqual([
        ...(list[i - 1]?.events ?? []),
        row.events.at(-1),
      ]);
    }
    const names = list.map((r) => r.events.at(-1));
    expect(new Set(names).size, `${entityId}: no event twice`).toBe(names.length);
  }
  for (const ack of acks) {
    const row = byEntity.get(ack.entityId)?.find((r) => r.revision === ack.revision);
    expect(row, `${ack.entityId} revision ${ack.revision} was acknowledged`).toBeDefined();
    expect(Buffer.from(row!.state).equals(Buffer.from(ack.state)), `${ack.entityId} revision ${ack.revision} state`).toBe(true);
  }
  return { rows: rows.length, acked: acks.length };
}

describe.runIf(hasServer)('cos-server replicas sharing one PostgreSQL', () => {
  let handler: (RunningProcess & { port: number }) | undefined;
  const clusters: CosFixture[][] = [];

  beforeAll(async () => {
    handler = await startTestHandler();
  }, 60_000);

  afterAll(async () => {
    for (const replicas of clusters) {
      // every process first, then the schema (dispose drops it)
      await Promise.all(replicas.map((replica) => replica.server.kill('SIGKILL')));
      for (const replica of replicas) await replica.dispose().catch(() => {});
    }
    await handler?.kill();
  });

  /** Two replicas on a schema of their own, started one after the other, once they split the shards. */
  async function startPair(envs: [Record<string, string>, Record<string, string>] = [{}, {}]): Promise<[CosFixture, CosFixture]> {
    const schema = uniqueSchemaName('cluster');
    const env = {
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler!.port),
      POD_IP: '127.0.0.1',
      // generous for a loaded 2-core machine: calls queue behind each other on the hot entities
      COS_COMMAND_HANDLER_TIMEOUT: '20',
    };
    const replicas: CosFixture[] = [];
    clusters.push(replicas);
    replicas.push(await startCos({ ...env, ...envs[0] }, schema));
    replicas.push(await startCos({ ...env, ...envs[1] }, schema));
    await shardsSettle(replicas, [NUM_SHARDS / 2, NUM_SHARDS / 2]);
    return [replicas[0]!, replicas[1]!];
  }

  it('split the shards and read their writes across replicas: GetState on the other replica returns the state just acknowledged', async () => {
    const [a, b] = await startPair();
    const entities = entitiesOfAllShards('rw', 6).slice(0, 96);
    const rounds = 4;
    const problems: string[] = [];
    const lane = async (ids: string[]) => {
      for (const [n, entityId] of ids.entries()) {
        for (let round = 0; round < rounds; round++) {
          // alternate the writer per command (and per entity, so both start half of them)
          const [writer, reader] = (n + round) % 2 === 0 ? [a, b] : [b, a];
          const { response } = await writer.send(entityId, command('Emit', { events: [`r${round}`] }));
          if (response.meta?.revisionNumber !== round + 1) {
            problems.push(`${entityId}: command ${round + 1} acknowledged revision ${response.meta?.revisionNumber}`);
          }
          const read = await reader.getState(entityId);
          if (
            read.response.meta?.revisionNumber !== response.meta?.revisionNumber ||
            !Buffer.from(read.response.state!.value).equals(Buffer.from(response.state!.value))
          ) {
            problems.push(
              `${entityId}: GetState after command ${round + 1} answered revision ${read.response.meta?.revisionNumber} ` +
                `(${JSON.stringify(stateOf(read.response.state).events)}), acknowledged ${response.meta?.revisionNumber}`,
            );
          }
        }
        const events = stateOf((await a.getState(entityId)).response.state).events;
        if (events.join() !== 'r0,r1,r2,r3') problems.push(`${entityId}: ended with events ${JSON.stringify(events)}`);
      }
    };
    const lanes = 8;
    await Promise.all(Array.from({ length: lanes }, (_, l) => lane(entities.filter((_, i) => i % lanes === l))));
    expect(problems).toEqual([]);

    // both replicas forwarded, nobody was unreachable, and the split still holds
    expect(await routed(a, 'forwarded')).toBeGreaterThan(0);
    expect(await routed(b, 'forwarded')).toBeGreaterThan(0);
    expect(await routed(a, 'owner_unreachable')).toBe(0);
    expect(await routed(b, 'owner_unreachable')).toBe(0);
    expect([await ownedShards(a), await ownedShards(b)]).toEqual([NUM_SHARDS / 2, NUM_SHARDS / 2]);
  }, 120_000);

  it('keep serving when a replica is killed with SIGKILL: the survivor takes all shards, no acknowledged event lost or doubled', async () => {
    const [survivor, victim] = await startPair();
    const schema = survivor.schema;
    const entities = entitiesOfAllShards('load', 4);
    const load = startLoad(survivor, entities, 8);
    await expect.poll(() => load.acks.length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(200);
    expect(load.outcomes.filter((o) => o.code !== 'OK')).toEqual([]);
    expect(await routed(survivor, 'forwarded')).toBeGreaterThan(0);

    const victimShards = await shardsOf(victim);
    expect(victimShards.size).toBe(NUM_SHARDS / 2);
    const killedAt = Date.now();
    victim.server.child.kill('SIGKILL');
    await victim.server.exited;
    // the victim's session ended with it: the survivor finds its session lock free and takes its
    // shards in its next round (every second), without waiting for the leases (5 s) to expire
    let takeoverMs = 0;
    await expect
      .poll(
        async () => {
          takeoverMs = Date.now() - killedAt;
          return ownedShards(survivor);
        },
        { timeout: 20_000, interval: 100 },
      )
      .toBe(NUM_SHARDS);
    // and keeps serving all of them afterwards
    const ackedAtTakeover = load.acks.length;
    await expect.poll(() => load.acks.length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(ackedAtTakeover + 200);
    await load.stop();

    const afterKill = load.outcomes.filter((o) => o.at >= killedAt);
    const failed = load.outcomes.filter((o) => o.code !== 'OK');
    const victims = (o: Outcome) => victimShards.has(shardOf(o.entityId, NUM_SHARDS));
    const unreachable = await routed(survivor, 'owner_unreachable');
    const beforeTakeover = afterKill.filter((o) => o.at < killedAt + takeoverMs);
    console.info(
      `SIGKILL: takeover of all ${NUM_SHARDS} shards after ${takeoverMs} ms; after the kill ${afterKill.length} calls, ` +
        `${failed.length} failed (${failed.map((o) => grpc.status[o.code as grpc.status]).join(', ')}), ` +
        `${beforeTakeover.filter((o) => o.code === 'OK').length} succeeded before the takeover; ` +
        `owner_unreachable ${unreachable}, forwarded ${await routed(survivor, 'forwarded')}`,
    );
    expect(takeoverMs).toBeLessThan(3000);
    // Calls for the victim's shards before the takeover find its owner unreachable and wait for
    // the next one (only a shard's lease holder writes it), then succeed (the first such call has
    // the survivor look the victim's session up at once, so there are few of them, none if the
    // survivor's lease round came first)...
    expect(afterKill.filter((o) => o.code === 'OK' && victims(o)).length).toBeGreaterThan(0);
    // ...and only those already on their way to the victim when it died may fail, at once:
    // UNAVAILABLE when it had not taken them, UNKNOWN when it had (it may have persisted them)
    for (const o of failed) {
      expect(['UNAVAILABLE', 'UNKNOWN'], `${o.entityId} ${o.at - killedAt} ms after the kill`).toContain(grpc.status[o.code as grpc.status]);
      expect(o.at - killedAt).toBeGreaterThanOrEqual(0);
      expect(o.at - killedAt).toBeLessThan(3000);
    }
    expect(failed.length).toBeLessThanOrEqual(8);

    const { acked } = await checkJournal(schema, load.acks);
    expect(acked).toBe(load.acks.length);
  }, 120_000);

  it("take a SIGKILLed replica's shards over well before its leases expire: a command for each of its shards succeeds on the survivor within 2 s", async () => {
    const [survivor, victim] = await startPair();
    const victimShards = await shardsOf(victim);
    expect(victimShards.size).toBe(NUM_SHARDS / 2);
    // one entity of each of the victim's shards, reached through the survivor (forwarded)
    const entities = entitiesOfAllShards('fast-takeover', 1).filter((id) => victimShards.has(shardOf(id, NUM_SHARDS)));
    for (const entityId of entities) await survivor.send(entityId, command('Emit', { events: ['before'] }));

    victim.server.child.kill('SIGKILL');
    await victim.server.exited;
    const killedAt = Date.now();
    // each command waits for the shard's next owner up to its deadline (5 s, the lease duration):
    // one sent again after a failure only covers a slow machine
    const succeededAfter = await Promise.all(
      entities.map(async (entityId) => {
        for (let attempt = 0; attempt < 5; attempt++) {
          try {
            await survivor.send(entityId, command('Emit', { events: ['after'] }), { deadlineMs: 5000 });
            return Date.now() - killedAt;
          } catch {
            await sleep(50);
          }
        }
        return Infinity;
      }),
    );
    const slowest = Math.max(...succeededAfter);
    console.info(`SIGKILL: a command for each of the victim's ${entities.length} shards succeeded on the survivor within ${slowest} ms (${succeededAfter.join(', ')})`);
    expect(slowest).toBeLessThan(2000);
    await expect.poll(() => ownedShards(survivor), { timeout: 5000, interval: 50 }).toBe(NUM_SHARDS);
    for (const entityId of entities) expect((await survivor.journal(entityId)).map((row) => stateOf(row.wrapper.resultingState).events.at(-1))).toEqual(['before', 'after']);
  }, 120_000);

  it('hand the shards over on SIGTERM: the survivor owns all of them shortly after and every command sent to it succeeds', async () => {
    const [stopping, survivor] = await startPair();
    const entities = entitiesOfAllShards('handover', 4);
    const load = startLoad(survivor, entities, 8);
    await expect.poll(() => load.acks.length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(200);
    // half of them went to the replica about to stop
    expect(await routed(survivor, 'forwarded')).toBeGreaterThan(0);

    const stoppedAt = Date.now();
    let exitedAt = Infinity;
    const exited = stopping.stop('SIGTERM').then(() => (exitedAt = Date.now()));
    await expect.poll(() => ownedShards(survivor), { timeout: 10_000, interval: 50 }).toBe(NUM_SHARDS);
    const handoverMs = Date.now() - stoppedAt;
    await exited;
    expect(await stopping.server.exited).toBe(0);
    const handedOverAt = Math.max(stoppedAt + handoverMs, exitedAt);
    const ackedAtExit = load.acks.length;
    await expect.poll(() => load.acks.length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(ackedAtExit + 200);
    await load.stop();

    const duringStop = load.outcomes.filter((o) => o.at >= stoppedAt && o.at <= handedOverAt);
    const failed = load.outcomes.filter((o) => o.code !== 'OK');
    console.info(
      `SIGTERM: the stopping replica exited ${exitedAt - stoppedAt} ms and the survivor owned all ${NUM_SHARDS} shards ` +
        `${handoverMs} ms after the signal; ${duringStop.length} calls meanwhile, ` +
        `${load.outcomes.filter((o) => o.at > handedOverAt).length} after; ${failed.length} failed; ` +
        `owner_unreachable ${await routed(survivor, 'owner_unreachable')}, owner_refused ${await routed(survivor, 'owner_refused')}, ` +
        `forwarded ${await routed(survivor, 'forwarded')}`,
    );
    if (failed.length > 0) console.info(survivor.server.output().split('\n').filter((line) => line.includes('"level":"error"')).slice(0, 5).join('\n'));
    expect(handoverMs).toBeLessThan(8000);
    expect(duringStop.length).toBeGreaterThan(0);
    expect(failed.map((o) => `${o.entityId} ${grpc.status[o.code as grpc.status]} ${o.at - stoppedAt} ms after SIGTERM: ${o.details}`)).toEqual([]);
    await checkJournal(survivor.schema, load.acks);
  }, 120_000);
  it("never answer GetState on the owner older than a write acknowledged by any replica: a stock client's forwarding mark is refused (UNAUTHENTICATED), nothing written", async () => {
    const [a, b] = await startPair();
    const owned = await shardsOf(b);
    const ids = entitiesOfAllShards('forged', 1).filter((id) => owned.has(shardOf(id, NUM_SHARDS)));
    const forgedMark = (proof?: string) => {
      const metadata = new grpc.Metadata();
      metadata.set(FORWARDED_BY_HEADER, `127.0.0.1:${b.port}`); // claims to come from the owner
      if (proof !== undefined) metadata.set(FORWARDED_PROOF_HEADER, proof);
      return metadata;
    };
    const attempts = [
      () => forgedMark(),
      () => forgedMark(`v1.1.${Date.now()}.${'A'.repeat(43)}`),
      () => forgedMark('the cluster secret, guessed'),
    ];
    const acknowledged = new Map<string, number>();
    const codes: string[] = [];
    for (const id of ids) {
      // the owner has it in memory
      const first = await b.send(id, command('Emit', { events: ['first'] }));
      acknowledged.set(id, first.response.meta!.revisionNumber);
      expect((await b.getState(id)).response.meta?.revisionNumber).toBe(1);
      for (const [n, metadata] of attempts.entries()) {
        // sent to the owner itself, and to the other replica (last, so the owner's copy would miss it)
        for (const target of [b, a]) {
          try {
            const { response } = await target.send(id, command('Emit', { events: [`forged-${n}`] }), { metadata: metadata() });
            acknowledged.set(id, Math.max(acknowledged.get(id)!, response.meta!.revisionNumber));
            codes.push('OK');
          } catch (error) {
            codes.push(grpc.status[(error as grpc.ServiceError).code]);
          }
        }
      }
    }
    for (const id of ids) {
      const read = await b.getState(id);
      expect(read.response.meta?.revisionNumber, `${id}: GetState on the owner`).toBe(acknowledged.get(id));
    }
    expect(codes).toEqual(codes.map(() => 'UNAUTHENTICATED'));
    for (const id of ids) expect((await b.journal(id)).map((row) => Number(row.revision)), id).toEqual([1]);
    // refused at the edge of each replica, counted, and logged with what was claimed, never a secret
    expect(await metric(a, 'cos_forwarded_calls_total', { outcome: 'unauthenticated' })).toBe(ids.length * attempts.length);
    expect(await metric(b, 'cos_forwarded_calls_total', { outcome: 'unauthenticated' })).toBe(ids.length * attempts.length);
    await a.server.waitFor(/refused a call marked as forwarded by a replica: its proof is not valid/, 10_000);
    const [stored] = await query<{ secret: Buffer }>(a.schema, 'select secret from cos_cluster_secret');
    for (const replica of [a, b]) {
      for (const encoding of ['hex', 'base64', 'base64url'] as const) expect(replica.server.output()).not.toContain(stored!.secret.toString(encoding));
    }
  }, 120_000);

  it('share the cluster secret without configuration: calls forwarded either way are proven and accepted, and the owner reads every write', async () => {
    const [a, b] = await startPair();
    // one secret, created by the first replica in the shared database
    expect(await query<{ n: number }>(a.schema, 'select count(*)::int as n from cos_cluster_secret')).toEqual([{ n: 1 }]);
    const ownedByB = await shardsOf(b);
    const ids = entitiesOfAllShards('proven', 1);
    for (const [round, writer] of [a, b, a].entries()) {
      for (const id of ids) {
        const { response } = await writer.send(id, command('Emit', { events: [`w${round}`] }));
        expect(response.meta?.revisionNumber).toBe(round + 1);
        const owner = ownedByB.has(shardOf(id, NUM_SHARDS)) ? b : a;
        expect((await owner.getState(id)).response.meta?.revisionNumber, `${id} on its owner`).toBe(round + 1);
      }
    }
    expect(await routed(a, 'forwarded')).toBeGreaterThan(0);
    expect(await routed(b, 'forwarded')).toBeGreaterThan(0);
    for (const replica of [a, b]) expect(await metric(replica, 'cos_forwarded_calls_total', { outcome: 'unauthenticated' })).toBeUndefined();
  }, 120_000);

  it("use COS_CLUSTER_SECRET over the database's: replicas set to different secrets refuse each other's forwarded calls (their callers told UNAVAILABLE), nothing written", async () => {
    const secret = 'an explicit cluster secret, 1';
    const [a, b] = await startPair([{ COS_CLUSTER_SECRET: secret }, { COS_CLUSTER_SECRET: 'another cluster secret, 2' }]);
    const ownedByB = await shardsOf(b);
    const ids = entitiesOfAllShards('explicit', 1);
    const toB = ids.filter((id) => ownedByB.has(shardOf(id, NUM_SHARDS)));
    const toA = ids.filter((id) => !ownedByB.has(shardOf(id, NUM_SHARDS)));
    // each side's calls forwarded to the other are refused: proofs with different secrets. The
    // callers' own credentials were fine, so they are not told UNAUTHENTICATED: the forwarding
    // replica tries the owner again until the deadline (short here), then answers UNAVAILABLE
    // (DEADLINE_EXCEEDED when a loaded machine answers past it)
    const refused = async (from: CosFixture, id: string) =>
      grpc.status[(await failure(from.send(id, command('Emit', { events: ['x'] }), { deadlineMs: 2_000 }))).code];
    const codes = await Promise.all([...toB.map((id) => refused(a, id)), ...toA.map((id) => refused(b, id))]);
    expect(codes.filter((code) => code !== 'UNAVAILABLE' && code !== 'DEADLINE_EXCEEDED')).toEqual([]);
    expect(codes).toContain('UNAVAILABLE');
    for (const id of ids) expect(await b.journal(id)).toEqual([]);
    // counted by the owner as unauthenticated, by the forwarding replica as owner_refused
    expect(await metric(b, 'cos_forwarded_calls_total', { outcome: 'unauthenticated' })).toBeGreaterThanOrEqual(toB.length);
    expect(await routed(a, 'owner_refused')).toBeGreaterThanOrEqual(toB.length);
    // calls for their own shards still work
    for (const id of toA) expect((await a.send(id, command('Emit', { events: ['own'] }))).response.meta?.revisionNumber).toBe(1);
    expect(a.server.output()).not.toContain(secret);
    await b.server.waitFor(/refused a call marked as forwarded by a replica/, 10_000);
  }, 120_000);

  it("fence a stale owner: once a later lease of its shard fenced the journal, the old owner's append fails UNAVAILABLE, nothing written", async () => {
    const [a, b] = await startPair();
    const shard = [...(await shardsOf(b))][0]!;
    const stream = `entity-shard/${shard}`;
    const id = entitiesOfAllShards('stale', 1).find((entityId) => shardOf(entityId, NUM_SHARDS) === shard)!;
    expect((await b.send(id, command('Emit', { events: ['first'] }))).response.meta?.revisionNumber).toBe(1);
    // What a replica taking the shard over after b stalled past its lease does: a later epoch,
    // and the journal fenced at it (b has not noticed yet: its next lease round is up to 1 s away).
    await query(
      b.schema,
      `with taken as (
         update cos_stream_leases set owner = 'taken-over-by-another', epoch = epoch + 1, expires_at = now() + interval '1 hour'
         where stream = $1 returning epoch)
       select cos_journal_fence($2, (select epoch from taken))`,
      [stream, shard],
    );
    const stale = await failure(b.send(id, command('Emit', { events: ['stale'] }), { deadlineMs: 1500 }));
    expect(grpc.status[stale.code]).toBe('UNAVAILABLE');
    const viaOther = await failure(a.send(id, command('Emit', { events: ['other'] }), { deadlineMs: 1500 }));
    expect(grpc.status[viaOther.code]).toBe('UNAVAILABLE');
    expect((await b.journal(id)).map((row) => Number(row.revision))).toEqual([1]);
    // refused by the journal's fence (b's append), not only by routing: b says so and drops the shard
    await b.server.waitFor(/another replica took this shard over and fenced its appends; giving it up/, 10_000);
    // b gives the shard up; reads still answer from the store
    await expect.poll(() => ownedShards(b), { timeout: 10_000, interval: 100 }).toBe(NUM_SHARDS / 2 - 1);
    expect((await b.getState(id)).response.meta?.revisionNumber).toBe(1);
  }, 120_000);

  it('serve only once COS_DOCKER_REPLICA_COUNT replicas have joined, and stop at once when asked while waiting', async () => {
    const schema = uniqueSchemaName('count');
    const env = {
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler!.port),
      POD_IP: '127.0.0.1',
      COS_DOCKER_REPLICA_COUNT: '2',
    };
    const replicas: CosFixture[] = [];
    clusters.push(replicas);
    const waiting = /waiting for the other replicas before serving/;
    const first = await startCos(env, schema, waiting);
    replicas.push(first);
    // up, but not serving: health NOT_SERVING (/readyz) and calls refused as UNAVAILABLE
    expect((await fetch(`http://127.0.0.1:${first.metricsPort}/readyz`)).status).toBe(503);
    expect((await failure(first.send('count-1', command('Emit', { events: ['a'] })))).code).toBe(grpc.status.UNAVAILABLE);
    expect(first.server.output()).not.toMatch(/chief-of-state serving/);

    const second = await startCos(env, schema);
    replicas.push(second);
    await first.server.waitFor(/chief-of-state serving/, 15_000);
    expect((await first.send('count-1', command('Emit', { events: ['a'] }))).response.meta?.revisionNumber).toBe(1);
    expect((await second.send('count-1', command('Emit', { events: ['b'] }))).response.meta?.revisionNumber).toBe(2);

    // a third one told to wait for four never serves; SIGTERM still stops it at once, cleanly
    const third = await startCos({ ...env, COS_DOCKER_REPLICA_COUNT: '4' }, schema, waiting);
    replicas.push(third);
    const stopAsked = Date.now();
    expect(await third.server.kill('SIGTERM')).toBe(0);
    expect(Date.now() - stopAsked).toBeLessThan(8_000);
  });
});
