// Retry-safe commands over real processes: the built cos-server on PostgreSQL, a stock grpc-js
// write handler that logs each HandleCommand, stock grpc-js clients reading the raw reply bytes.
// The same idempotency key answers the first outcome byte for byte, without a second
// HandleCommand: sequentially, concurrently, after a restart, after a SIGKILL between the
// commit and the reply, and on another replica; expected revisions right and wrong; a key
// reused with another body is refused.
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { Any } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testStoreKinds, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import {
  ChiefOfStateService,
  ProcessCommandRequestSchema,
  ProcessCommandResponseSchema,
  decodeErrorInfo,
  decodeRpcStatus,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, pollUntil } from '@chiefofstate/testing';
import { command, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import { freePort, startTestHandler, type RunningProcess } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');
const PROCESS_COMMAND = `/${ChiefOfStateService.typeName}/${ChiefOfStateService.method.processCommand.name}`;

/** How a call ended, as bytes on the wire: the reply message, or the status with its trailers. */
type Wire = { ok: true; reply: Buffer } | { ok: false; code: number; message: string; detailsBin: Buffer | undefined };

/** ProcessCommand through a stock grpc-js client, keeping the reply's bytes as received. */
function sendRaw(cos: Pick<CosFixture, 'client'>, entityId: string, cmd: Any, headers: Record<string, string> = {}, deadlineMs = 10_000): Promise<Wire> {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  const request = create(ProcessCommandRequestSchema, { entityId, command: cmd });
  return new Promise((resolve) => {
    cos.client.raw.makeUnaryRequest(
      PROCESS_COMMAND,
      (value: typeof request) => Buffer.from(toBinary(ProcessCommandRequestSchema, value)),
      (bytes: Buffer) => bytes,
      request,
      metadata,
      { deadline: Date.now() + deadlineMs },
      (error: grpc.ServiceError | null, reply?: Buffer) => {
        if (error) {
          const bin = error.metadata?.get('grpc-status-details-bin')[0];
          resolve({ ok: false, code: error.code, message: error.details, detailsBin: bin === undefined ? undefined : Buffer.from(bin as Buffer) });
        } else resolve({ ok: true, reply: reply! });
      },
    );
  });
}

const key = (value: string) => ({ 'x-cos-idempotency-key': value });

describe.runIf(hasServer)('retry-safe commands end to end', () => {
  let handler: (RunningProcess & { port: number }) | undefined;
  let env: Record<string, string>;
  const fixtures: CosFixture[] = [];
  let cos: CosFixture;

  /** HandleCommand calls the handler got for the entity */
  const handled = (entityId: string) => handler!.output().split('\n').filter((line) => line.startsWith(`HandleCommand ${entityId} `)).length;

  beforeAll(async () => {
    handler = await startTestHandler(0, { LOG_COMMANDS: '1' });
    env = { WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1', WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port) };
    cos = await startCos(env);
    fixtures.push(cos);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(fixtures.map((fixture) => fixture.server.kill('SIGKILL')));
    for (const fixture of fixtures) await fixture.dispose().catch(() => {});
    await handler?.kill();
  });

  it('answers the same key twice, one after the other, with the same bytes and one HandleCommand', async () => {
    const first = await sendRaw(cos, 'seq-1', command('Emit', { events: ['deposit-10'] }), key('dep-1'));
    const second = await sendRaw(cos, 'seq-1', command('Emit', { events: ['deposit-10'] }), key('dep-1'));
    expect(first.ok).toBe(true);
    expect(second).toEqual(first);
    expect(handled('seq-1')).toBe(1);
    expect(await cos.journal('seq-1')).toHaveLength(1);
  });

  it('answers the same key sent 8 times at once with the same bytes and one HandleCommand', async () => {
    const replies = await Promise.all(
      Array.from({ length: 8 }, () => sendRaw(cos, 'conc-1', command('Slow', { ms: 200 }), key('slow-once'))),
    );
    expect(replies[0]!.ok).toBe(true);
    for (const reply of replies) expect(reply).toEqual(replies[0]);
    expect(handled('conc-1')).toBe(1);
    expect(await cos.journal('conc-1')).toHaveLength(1);
  });

  it("records a no-op and a handler's refusal: their retries get the same reply and the same status, details and all", async () => {
    await cos.send('quiet-1', command('Emit', { events: ['opened'] }));
    const noop = await sendRaw(cos, 'quiet-1', command('Noop'), key('n'));
    await cos.send('quiet-1', command('Emit', { events: ['moved-on'] }));
    expect(await sendRaw(cos, 'quiet-1', command('Noop'), key('n'))).toEqual(noop);

    const refused = await sendRaw(cos, 'quiet-1', command('Fail', { code: grpc.status.FAILED_PRECONDITION, message: 'insufficient funds' }), key('f'));
    expect(refused).toMatchObject({ ok: false, code: grpc.status.FAILED_PRECONDITION, message: 'insufficient funds' });
    expect((refused as { detailsBin?: Buffer }).detailsBin).toBeDefined();
    const again = await sendRaw(cos, 'quiet-1', command('Fail', { code: grpc.status.FAILED_PRECONDITION, message: 'insufficient funds' }), key('f'));
    expect(again).toEqual(refused);
    expect(handled('quiet-1')).toBe(4);
  });

  it('refuses a key reused with another command body (INVALID_ARGUMENT), persisting nothing', async () => {
    await sendRaw(cos, 'reuse-1', command('Emit', { events: ['deposit-10'] }), key('k'));
    const reused = await sendRaw(cos, 'reuse-1', command('Emit', { events: ['deposit-99'] }), key('k'));
    expect(reused).toMatchObject({ ok: false, code: grpc.status.INVALID_ARGUMENT });
    const status = decodeRpcStatus((reused as { detailsBin: Buffer }).detailsBin);
    expect(decodeErrorInfo(status.details[0]!.value).reason).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await cos.journal('reuse-1')).toHaveLength(1);
    expect(handled('reuse-1')).toBe(1);
  });

  it('runs a command at the expected revision, refuses it at another (FAILED_PRECONDITION, ErrorInfo), never calling the handler then', async () => {
    const created = await sendRaw(cos, 'rev-1', command('Emit', { events: ['created'] }), { 'x-cos-expected-revision': '0' });
    expect(created.ok).toBe(true);
    const again = await sendRaw(cos, 'rev-1', command('Emit', { events: ['created-twice'] }), { 'x-cos-expected-revision': '0' });
    expect(again).toMatchObject({ ok: false, code: grpc.status.FAILED_PRECONDITION });
    expect((again as { message: string }).message).toContain('revision 1');
    const info = decodeErrorInfo(decodeRpcStatus((again as { detailsBin: Buffer }).detailsBin).details[0]!.value);
    expect(info).toEqual({ reason: 'REVISION_MISMATCH', domain: 'chiefofstate', metadata: { expected: '0', actual: '1' } });
    expect((await sendRaw(cos, 'rev-1', command('Emit', { events: ['next'] }), { 'x-cos-expected-revision': '1' })).ok).toBe(true);
    const bad = await sendRaw(cos, 'rev-1', command('Emit', { events: ['x'] }), { 'x-cos-expected-revision': 'latest' });
    expect(bad).toMatchObject({ ok: false, code: grpc.status.INVALID_ARGUMENT });
    expect(handled('rev-1')).toBe(2);
    expect((await cos.journal('rev-1')).map((row) => stateOf(row.wrapper.resultingState).events.at(-1))).toEqual(['created', 'next']);
  });

  it('answers a key after a restart from the store', async () => {
    const schema = uniqueSchemaName('idem');
    const before = await startCos(env, schema);
    fixtures.push(before);
    const first = await sendRaw(before, 'restart-1', command('Emit', { events: ['deposit'] }), key('r'));
    await before.stop();
    const after = await startCos(env, schema);
    fixtures.push(after);
    expect(await sendRaw(after, 'restart-1', command('Emit', { events: ['deposit'] }), key('r'))).toEqual(first);
    expect(handled('restart-1')).toBe(1);
    const replays = await fetch(`http://127.0.0.1:${after.metricsPort}/metrics`).then((r) => r.text());
    expect(replays).toMatch(/^cos_idempotent_replays_total 1$/m);
  }, 60_000);

  it('(control) after a SIGKILL between the commit and the reply, a retry without a key runs the command again', async () => {
    const schema = uniqueSchemaName('idem');
    // kills itself right after committing an append of this entity, before replying
    const doomed = await startCos({ ...env, COS_TEST_KILL_AFTER_COMMIT: 'crash-1' }, schema);
    fixtures.push(doomed);
    expect((await sendRaw(doomed, 'crash-1', command('Emit', { events: ['deposit-10'] }))).ok).toBe(false);
    expect(await doomed.server.exited).toBe('SIGKILL');
    expect(await doomed.journal('crash-1')).toHaveLength(1);
    const survivor = await startCos(env, schema);
    fixtures.push(survivor);
    // the killed process's session ended with it: its leases are taken over at once, no retry
    expect((await sendRaw(survivor, 'crash-1', command('Emit', { events: ['deposit-10'] }))).ok).toBe(true);
    // the double deposit the key prevents (next test)
    expect(await survivor.journal('crash-1')).toHaveLength(2);
  }, 60_000);

  it('after a SIGKILL between the commit and the reply of a keyed command, its retry gets the reply the caller missed', async () => {
    const schema = uniqueSchemaName('idem');
    const doomed = await startCos({ ...env, COS_TEST_KILL_AFTER_COMMIT: 'crash-2' }, schema);
    fixtures.push(doomed);
    const lost = await sendRaw(doomed, 'crash-2', command('Emit', { events: ['deposit-10'] }), key('dep-crash'));
    expect(lost.ok).toBe(false);
    expect(await doomed.server.exited).toBe('SIGKILL');
    const [row] = await doomed.journal('crash-2');
    expect(row).toBeDefined();

    const survivor = await startCos(env, schema);
    fixtures.push(survivor);
    const retry = await sendRaw(survivor, 'crash-2', command('Emit', { events: ['deposit-10'] }), key('dep-crash'));
    // the reply the first call would have had: the committed event's state and meta
    const original = Buffer.from(
      toBinary(ProcessCommandResponseSchema, create(ProcessCommandResponseSchema, { state: row!.wrapper.resultingState!, meta: row!.wrapper.meta! })),
    );
    expect(retry).toEqual({ ok: true, reply: original });
    expect(await survivor.journal('crash-2')).toHaveLength(1);
    expect(handled('crash-2')).toBe(1);
  }, 60_000);

  it('keeps every command exactly once while 32 callers retry with their keys through 3 SIGKILLs and restarts', async () => {
    const schema = uniqueSchemaName('idem');
    // one address across restarts, so the callers' channel reconnects to each new process
    const ports = { COS_PORT: String(await freePort()), COS_METRICS_PORT: String(await freePort()) };
    let server = await startCos({ ...env, ...ports }, schema);
    fixtures.push(server);
    const client = createGrpcJsClient({
      service: ChiefOfStateService,
      address: `127.0.0.1:${ports.COS_PORT}`,
      channelOptions: { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 200 },
    });
    const entities = Array.from({ length: 16 }, (_, i) => `load-${i}`);
    /** each answered command: its event name, entity, and the revision and state it was answered with */
    const answered: Array<{ name: string; entityId: string; revision: number; state: Buffer }> = [];
    const unanswered: string[] = [];
    let issuing = true;
    let attempts = 0;
    const caller = async (c: number) => {
      for (let i = 0; issuing; i++) {
        const name = `c${c}-${i}`;
        const entityId = entities[(c + i) % entities.length]!;
        // the same key and body on every attempt, until an answer (bounded: 60 s per command)
        const giveUp = Date.now() + 60_000;
        for (;;) {
          attempts++;
          const outcome = await sendRaw({ client }, entityId, command('Emit', { events: [name] }), key(name), 5000);
          if (outcome.ok) {
            const reply = fromBinary(ProcessCommandResponseSchema, outcome.reply);
            answered.push({ name, entityId, revision: reply.meta!.revisionNumber, state: Buffer.from(reply.state!.value) });
            break;
          }
          if (Date.now() > giveUp) {
            unanswered.push(name);
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
      }
    };
    const callers = Array.from({ length: 32 }, (_, c) => caller(c));
    try {
      for (let kill = 0; kill < 3; kill++) {
        const before = answered.length;
        await pollUntil(() => answered.length >= before + 200, 60_000, `200 more commands answered before kill ${kill + 1}`);
        server.server.child.kill('SIGKILL');
        await server.server.exited;
        server = await startCos({ ...env, ...ports }, schema);
        fixtures.push(server);
      }
      const before = answered.length;
      await pollUntil(() => answered.length >= before + 200, 60_000, '200 more commands answered after the last restart');
    } finally {
      issuing = false;
      await Promise.all(callers);
      client.close();
    }
    expect(unanswered).toEqual([]);
    expect(attempts).toBeGreaterThan(answered.length); // the kills failed calls, which were retried

    const seen = new Map<string, { entityId: string; revision: number; state: Buffer }>();
    for (const entityId of entities) {
      const rows = await server.journal(entityId);
      expect(rows.map((row) => Number(row.revision)), entityId).toEqual(rows.map((_, i) => i + 1));
      for (const row of rows) {
        const name = stateOf(row.wrapper.resultingState).events.at(-1)!;
        expect(seen.has(name), `${name} persisted twice`).toBe(false);
        seen.set(name, { entityId, revision: Number(row.revision), state: Buffer.from(row.wrapper.resultingState!.value) });
      }
    }
    // every answered command is there once, at the revision and with the state it was answered with
    for (const ack of answered) {
      expect(seen.get(ack.name), ack.name).toEqual({ entityId: ack.entityId, revision: ack.revision, state: ack.state });
    }
    // and nothing else: each caller's commands were sent one after another until answered
    expect(seen.size).toBe(answered.length);
  }, 300_000);

  it('answers the same key on another replica, which forwards it to the owner', async () => {
    const schema = uniqueSchemaName('idem');
    const pairEnv = { ...env, POD_IP: '127.0.0.1', COS_COMMAND_HANDLER_TIMEOUT: '20' };
    const a = await startCos(pairEnv, schema);
    fixtures.push(a);
    const b = await startCos(pairEnv, schema);
    fixtures.push(b);
    const owned = async (replica: CosFixture) => {
      const text = await fetch(`http://127.0.0.1:${replica.metricsPort}/metrics`).then((r) => r.text());
      return Number(/^cos_entity_shards_owned (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    await pollUntil(async () => (await owned(a)) === 8 && (await owned(b)) === 8, 30_000, 'the replicas split the 16 shards', 100);
    for (const entityId of ['two-1', 'two-2', 'two-3', 'two-4']) {
      const first = await sendRaw(a, entityId, command('Emit', { events: ['deposit'] }), key(`k-${entityId}`));
      expect(first.ok, entityId).toBe(true);
      expect(await sendRaw(b, entityId, command('Emit', { events: ['deposit'] }), key(`k-${entityId}`))).toEqual(first);
      expect(await sendRaw(a, entityId, command('Emit', { events: ['deposit'] }), key(`k-${entityId}`))).toEqual(first);
      expect(handled(entityId), entityId).toBe(1);
      expect(await a.journal(entityId)).toHaveLength(1);
    }
    // some of those calls went through the other replica to the owner
    const forwarded = async (replica: CosFixture) => {
      const text = await fetch(`http://127.0.0.1:${replica.metricsPort}/metrics`).then((r) => r.text());
      return Number(/^cos_forwarded_calls_total\{method="ProcessCommand",outcome="forwarded"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    expect((await forwarded(a)) + (await forwarded(b))).toBeGreaterThan(0);
  }, 90_000);
});
