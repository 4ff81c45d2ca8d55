// ProcessCommand and GetState end to end: the built cos-server process, a stock grpc-js write
// handler in its own process, the real PostgreSQL, and a stock grpc-js client. One test per
// numbered behaviour of the protocol spec.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { decodeRpcStatus } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, failure, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import { freePort, startCosServerProcess, startTestHandler, type RunningProcess } from './support/processes.js';

const EMPTY = 'type.googleapis.com/google.protobuf.Empty';
let counter = 0;
const newId = (prefix = 'acc') => `${prefix}-${Date.now().toString(36)}-${counter++}`;

describe('ProcessCommand and GetState over real processes', () => {
  let handler: RunningProcess & { port: number };
  let cos: CosFixture;

  beforeAll(async () => {
    handler = await startTestHandler();
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_GRPC_CALLS_TIMEOUT: '1500',
      // the command budget counts time queued behind the entity's earlier commands: 200 queued
      // commands on a loaded 2-core CI machine need more than the 5 s default
      COS_COMMAND_HANDLER_TIMEOUT: '60',
      COS_WRITE_SIDE_PROPAGATED_HEADERS: 'x-tenant',
      COS_WRITE_PERSISTED_HEADERS: 'x-user,x-token-bin',
    });
  }, 60_000);

  afterAll(async () => {
    await cos?.dispose();
    await handler?.kill();
  });

  it('1. refuses an empty entity id and one over 255 characters with INVALID_ARGUMENT', async () => {
    const empty = await failure(cos.send('', command('Emit')));
    expect(empty.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(empty.details).toBe('empty entity ID');
    const long = await failure(cos.send('x'.repeat(256), command('Emit')));
    expect(long.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(long.details).toMatch(/too long/);
    expect(await cos.journal('x'.repeat(256))).toHaveLength(0);
    // 255 characters are fine
    const { response } = await cos.send('y'.repeat(255), command('Emit'));
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('2. runs 200 concurrent commands of one entity one at a time: revisions 2..201 each once', async () => {
    const id = newId('hot');
    await cos.send(id, command('Emit', { events: ['opened'] }));
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => cos.send(id, command('Emit', { events: [`e${i}`] }))),
    );
    const revisions = replies.map((r) => r.response.meta!.revisionNumber).sort((a, b) => a - b);
    expect(revisions).toEqual(Array.from({ length: 200 }, (_, i) => i + 2));
    // each command saw exactly the state of the one before it
    for (const { response } of replies) {
      const state = stateOf(response.state);
      expect(state.events).toHaveLength(response.meta!.revisionNumber);
      expect(state.priorRevision).toBe(response.meta!.revisionNumber - 1);
    }
    const rows = await cos.journal(id);
    expect(rows.map((r) => Number(r.revision))).toEqual(Array.from({ length: 201 }, (_, i) => i + 1));
  });

  it('2. runs many entities in parallel', async () => {
    const ids = Array.from({ length: 100 }, () => newId('many'));
    const replies = await Promise.all(ids.flatMap((id) => [1, 2, 3].map((n) => cos.send(id, command('Emit', { events: [`n${n}`] })))));
    expect(replies).toHaveLength(300);
    for (const id of ids) {
      const rows = await cos.journal(id);
      expect(rows.map((r) => Number(r.revision))).toEqual([1, 2, 3]);
    }
  });

  it('3. gives a never-seen entity google.protobuf.Empty and meta {entity_id}, revision 0', async () => {
    const id = newId();
    const { response } = await cos.send(id, command('Emit'));
    const state = stateOf(response.state);
    expect(state.priorStateType).toBe(EMPTY);
    expect(state.priorRevision).toBe(0);
    expect(state.priorEntityId).toBe(id);
  });

  it("4. sends the meta of the entity's latest event as prior_event_meta", async () => {
    const id = newId();
    await cos.send(id, command('Emit', { events: ['a', 'b'] }));
    const { response } = await cos.send(id, command('Emit', { events: ['c'] }));
    const state = stateOf(response.state);
    expect(state.priorRevision).toBe(2);
    expect(state.priorEntityId).toBe(id);
    expect(state.priorStateType).toBe('type.googleapis.com/cos.test.State');
  });

  it('5. applies `events` when set, else the deprecated `event`, and ignores an unset Any', async () => {
    const id = newId();
    const deprecated = await cos.send(id, command('Emit', { events: ['single'], deprecated: true }));
    expect(stateOf(deprecated.response.state).events).toEqual(['single']);
    const both = await cos.send(id, command('Emit', { events: ['x', 'y'], alsoDeprecated: true }));
    expect(stateOf(both.response.state).events).toEqual(['single', 'x', 'y']);
    const unset = await cos.send(id, command('Noop', { emptyAny: true }));
    expect(unset.response.meta?.revisionNumber).toBe(3);
    expect((await cos.journal(id)).map((r) => Number(r.revision))).toEqual([1, 2, 3]);
  });

  it('6. persists nothing for a command without events and answers the current state', async () => {
    const id = newId();
    const before = await cos.send(id, command('Emit', { events: ['a'] }));
    const noop = await cos.send(id, command('Noop'));
    expect(noop.response.meta?.revisionNumber).toBe(1);
    expect(noop.response.state?.value).toEqual(before.response.state?.value);
    expect(await cos.journal(id)).toHaveLength(1);
    // a never-seen entity: the empty state, revision 0, nothing persisted
    const fresh = newId();
    const nothing = await cos.send(fresh, command('Noop'));
    expect(nothing.response.state?.typeUrl).toBe(EMPTY);
    expect(nothing.response.meta?.revisionNumber).toBe(0);
    expect(nothing.response.meta?.entityId).toBe(fresh);
    expect(await cos.journal(fresh)).toHaveLength(0);
  });

  it('7. chains several events, one revision each, and persists them all atomically', async () => {
    const id = newId();
    await cos.send(id, command('Emit', { events: ['open'] }));
    const { response } = await cos.send(id, command('Emit', { events: ['a', 'b', 'c'] }));
    expect(response.meta?.revisionNumber).toBe(4);
    expect(stateOf(response.state).events).toEqual(['open', 'a', 'b', 'c']);
    const rows = await cos.journal(id);
    expect(rows.map((r) => Number(r.revision))).toEqual([1, 2, 3, 4]);
    // each row holds its own event, the state after it, and its meta
    expect(rows.map((r) => stateOf(r.wrapper.resultingState).events.at(-1))).toEqual(['open', 'a', 'b', 'c']);
    expect(rows.map((r) => r.wrapper.meta?.revisionNumber)).toEqual([1, 2, 3, 4]);
    expect(rows.map((r) => stateOf(r.wrapper.resultingState).eventRevision)).toEqual([1, 2, 3, 4]);
    expect(rows.every((r) => r.wrapper.meta?.entityId === id && r.wrapper.meta.revisionDate !== undefined)).toBe(true);
    // all or none: the third HandleEvent fails, so neither of the first two is persisted
    const failed = await failure(cos.send(id, command('Emit', { events: ['p', 'q', 'r'], failApplyOf: 'r' })));
    expect(failed.code).toBe(grpc.status.INTERNAL);
    expect(await cos.journal(id)).toHaveLength(4);
    const after = await cos.getState(id);
    expect(after.response.meta?.revisionNumber).toBe(4);
  });

  it('8. refuses an unset resulting state with INVALID_ARGUMENT, persisting nothing', async () => {
    const id = newId();
    const e = await failure(cos.send(id, command('EmptyState')));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toBe('event handler replied with empty state');
    expect(await cos.journal(id)).toHaveLength(0);
  });

  it('10. answers only after the commit: the reply is in the journal', async () => {
    const id = newId();
    const { response } = await cos.send(id, command('Emit', { events: ['a'] }));
    const rows = await cos.journal(id);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.wrapper.resultingState?.value).toEqual(response.state?.value);
    expect(rows[0]!.wrapper.meta?.revisionNumber).toBe(response.meta?.revisionNumber);
  });

  it("11. passes the handler's error through with code, message and rich details", async () => {
    const id = newId();
    const e = await failure(cos.send(id, command('Fail', { code: grpc.status.FAILED_PRECONDITION, message: 'insufficient funds: 5 < 10' })));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.details).toBe('insufficient funds: 5 < 10');
    const status = decodeRpcStatus(e.metadata.get('grpc-status-details-bin')[0] as Buffer);
    expect(status.details).toHaveLength(1);
    expect(status.details[0]!.typeUrl).toBe('type.googleapis.com/cos.test.Detail');
    expect(new TextDecoder().decode(status.details[0]!.value)).toBe('{"why":"because"}');
    expect(await cos.journal(id)).toHaveLength(0);
  });

  it('12. answers DEADLINE_EXCEEDED when the handler is too slow, persisting nothing', async () => {
    const id = newId();
    const e = await failure(cos.send(id, command('Slow', { ms: 3000 })));
    expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await cos.journal(id)).toHaveLength(0);
  });

  it("12. persists nothing when the caller's own deadline passes before the commit", async () => {
    const id = newId();
    const e = await failure(cos.send(id, command('Slow', { ms: 800 }), { deadlineMs: 300 }));
    expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await new Promise((r) => setTimeout(r, 1200));
    expect(await cos.journal(id)).toHaveLength(0);
    // the entity still works afterwards
    const { response } = await cos.send(id, command('Emit'));
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('propagates configured headers and trace context to both handler calls, and persists configured headers', async () => {
    const id = newId();
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    metadata.set('x-user', 'alice');
    metadata.set('x-token-bin', Buffer.from([1, 2, 3, 250]));
    metadata.set('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    const { response } = await cos.send(id, command('Emit'), { metadata });
    const state = stateOf(response.state);
    expect(state.headers.command['x-tenant']).toBe('acme');
    expect(state.headers.event['x-tenant']).toBe('acme');
    // x-user is persisted, not propagated
    expect(state.headers.command['x-user']).toBeUndefined();
    expect(state.headers.command['traceparent']).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-0[01]$/);
    expect(state.headers.event['traceparent']).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-/);
    const headers = response.meta!.headers.map((h) => [h.key, h.value.case, h.value.value]);
    expect(headers).toEqual([
      ['x-user', 'stringValue', 'alice'],
      ['x-token-bin', 'bytesValue', expect.anything()],
    ]);
    expect(Array.from(response.meta!.headers[1]!.value.value as Uint8Array)).toEqual([1, 2, 3, 250]);
    expect(state.persistedHeaderKeys).toEqual(['x-user', 'x-token-bin']);
    const [row] = await cos.journal(id);
    expect(row!.wrapper.meta?.headers.map((h) => h.key)).toEqual(['x-user', 'x-token-bin']);
  });

  it('GetState: INVALID_ARGUMENT for an empty id, NOT_FOUND before any event, then the latest state', async () => {
    const empty = await failure(cos.getState(''));
    expect(empty.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(empty.details).toBe('empty entity ID');
    const id = newId();
    expect((await failure(cos.getState(id))).code).toBe(grpc.status.NOT_FOUND);
    await cos.send(id, command('Emit', { events: ['a', 'b'] }));
    const { response } = await cos.getState(id);
    expect(response.meta?.revisionNumber).toBe(2);
    expect(stateOf(response.state).events).toEqual(['a', 'b']);
  });

  it('refuses a message over 4 MiB with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const id = newId();
    const big = create(AnySchema, { typeUrl: 'type.googleapis.com/cos.test.Emit', value: new Uint8Array(4 * 1024 * 1024 + 10) });
    const e = await failure(cos.send(id, big));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await cos.journal(id)).toHaveLength(0);
    const { response } = await cos.send(id, command('Emit'));
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('reconnects to the handler after it restarts', async () => {
    const id = newId();
    await cos.send(id, command('Emit'));
    await handler.kill();
    const down = await failure(cos.send(id, command('Emit')));
    expect(down.code).toBe(grpc.status.UNAVAILABLE);
    handler = await startTestHandler(handler.port);
    await expect.poll(async () => (await cos.send(id, command('Emit')).catch(() => undefined))?.response.meta?.revisionNumber, {
      timeout: 10_000,
      interval: 250,
    }).toBe(2);
  });
});

describe('type validation and an unreachable handler', () => {
  let handler: RunningProcess & { port: number };
  let validating: CosFixture;
  let orphan: CosFixture;
  let orphanHandlerPort: number;

  beforeAll(async () => {
    handler = await startTestHandler();
    orphanHandlerPort = await freePort();
    [validating, orphan] = await Promise.all([
      startCos({
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
        HANDLER_SERVICE_STATE_PROTO: 'cos.test.State',
        HANDLER_SERVICE_EVENTS_PROTOS: 'cos.test.Event',
      }),
      startCos({
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: String(orphanHandlerPort),
        // the failed calls' lines, with the handler's address, are at debug
        LOG_LEVEL: 'debug',
      }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await validating?.dispose();
    await orphan?.dispose();
    await handler?.kill();
  });

  it('9. refuses an event type outside the configured list, persisting nothing', async () => {
    const id = newId();
    const e = await failure(validating.send(id, command('BadType')));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toBe('invalid event: type.googleapis.com/cos.test.Forbidden');
    expect(await validating.journal(id)).toHaveLength(0);
  });

  it('9. refuses a state type outside the configured list, persisting nothing', async () => {
    const id = newId();
    const e = await failure(validating.send(id, command('BadState')));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toBe('invalid state: type.googleapis.com/cos.test.ForbiddenState');
    expect(await validating.journal(id)).toHaveLength(0);
  });

  it('9. accepts the configured types', async () => {
    const { response } = await validating.send(newId(), command('Emit'));
    expect(response.meta?.revisionNumber).toBe(1);
  });

  it('12. answers UNAVAILABLE when the handler cannot be reached, and keeps serving', async () => {
    const id = newId();
    const e = await failure(orphan.send(id, command('Emit')));
    expect(e.code).toBe(grpc.status.UNAVAILABLE);
    // the caller learns what failed, not where: the address and the socket error stay in the log
    expect(e.details).toBe('write handler unavailable');
    expect(JSON.stringify(e.metadata.getMap())).not.toContain(String(orphanHandlerPort));
    expect(orphan.server.output()).toContain(`127.0.0.1:${orphanHandlerPort}`);
    expect(await orphan.journal(id)).toHaveLength(0);
    const again = await failure(orphan.send(id, command('Emit')));
    expect(again.code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe('settings this version cannot honour', () => {
  it('refuses to start with COS_KAFKA_BROKER set (exit 2), rather than leave events unpublished', async () => {
    const server = startCosServerProcess({
      COS_PORT: String(await freePort()),
      COS_METRICS_PORT: String(await freePort()),
      COS_DATA_DIR: `/tmp/cos-kafka-${process.pid}`,
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: '1',
      COS_KAFKA_BROKER: 'kafka:9092',
    });
    expect(await server.exited).toBe(2);
    expect(server.output()).toMatch(/COS_KAFKA_BROKER is set, but this version of chief-of-state has no Kafka sink.*NATS JetStream or RabbitMQ/);
  });
});
