// The fast paths' fallbacks end to end: one cos-server with its hand-written gRPC paths (the
// default) and one with COS_GRPC_SERVER_FAST_PATH=false and COS_GRPC_CLIENT_FAST_PATH=false
// (Connect's stock handler and transport), each in its own schema, the same stock grpc-js write
// handler behind both. The same calls, from a stock grpc-js client, must give the same answers.
// The protocol-level differential suites are packages/grpc-api/src/unary-differential.spec.ts
// and packages/handler-client/src/transport-differential.spec.ts.
import { clone, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import {
  GetStateResponseSchema,
  ProcessCommandResponseSchema,
  type GetStateResponse,
  type ProcessCommandResponse,
} from '@chiefofstate/protocol';
import { decodeRpcStatus } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, startCos, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';

type Outcome =
  | { ok: true; message: string; headers: string[] }
  | { ok: false; code: number; details: string; statusDetails: string[]; trailers: string[] };

/** What a stock client sees of a call, without what differs per process (timestamps, dates). */
async function outcome<T>(call: Promise<{ response: T; metadata: grpc.Metadata }>, encode: (response: T) => string): Promise<Outcome> {
  try {
    const { response, metadata } = await call;
    return { ok: true, message: encode(response), headers: Object.keys(metadata.getMap()).filter((k) => k !== 'date').sort() };
  } catch (error) {
    const e = error as grpc.ServiceError;
    const bin = e.metadata?.get('grpc-status-details-bin')[0];
    return {
      ok: false,
      code: e.code,
      details: e.details,
      statusDetails: Buffer.isBuffer(bin) ? decodeRpcStatus(bin).details.map((d) => `${d.typeUrl}=${Buffer.from(d.value).toString('hex')}`) : [],
      trailers: Object.keys(e.metadata?.getMap() ?? {}).filter((k) => k !== 'date').sort(),
    };
  }
}

describe('cos-server with its gRPC fast paths off answers as with them on', () => {
  let handler: RunningProcess & { port: number };
  const cos: Partial<Record<'fast' | 'stock', CosFixture>> = {};

  beforeAll(async () => {
    handler = await startTestHandler();
    const env = {
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_WRITE_SIDE_PROPAGATED_HEADERS: 'x-tenant',
    };
    cos.fast = await startCos(env);
    cos.stock = await startCos({ ...env, COS_GRPC_SERVER_FAST_PATH: 'false', COS_GRPC_CLIENT_FAST_PATH: 'false' });
  }, 90_000);

  afterAll(async () => {
    await cos.fast?.dispose();
    await cos.stock?.dispose();
    await handler?.kill();
  });

  /** The same scenario on each process; the answers side by side. */
  async function both(scenario: (fixture: CosFixture) => Promise<Outcome[]>): Promise<{ fast: Outcome[]; stock: Outcome[] }> {
    return { fast: await scenario(cos.fast!), stock: await scenario(cos.stock!) };
  }

  // revision dates differ from process to process; the rest of the answer must not
  const processed = (response: ProcessCommandResponse) => {
    const copy = clone(ProcessCommandResponseSchema, response);
    if (copy.meta) copy.meta.revisionDate = undefined;
    return Buffer.from(toBinary(ProcessCommandResponseSchema, copy)).toString('hex');
  };
  const state = (response: GetStateResponse) => {
    const copy = clone(GetStateResponseSchema, response);
    if (copy.meta) copy.meta.revisionDate = undefined;
    return Buffer.from(toBinary(GetStateResponseSchema, copy)).toString('hex');
  };

  it('commands, state, a handler failure with details, bad input and an unknown entity', async () => {
    const seen = await both(async (fixture) => {
      const metadata = new grpc.Metadata();
      metadata.set('x-tenant', 'acme');
      return [
        await outcome(fixture.send('acc-1', command('Emit', { events: ['opened'] }), { metadata }), processed),
        await outcome(fixture.send('acc-1', command('Emit', { events: ['deposited'] })), processed),
        await outcome(fixture.getState('acc-1'), state),
        await outcome(fixture.send('acc-1', command('Fail', { code: grpc.status.FAILED_PRECONDITION, message: 'insufficient funds: 5 < 10 ü%' })), processed),
        await outcome(fixture.send('', command('Emit')), processed),
        await outcome(fixture.getState('nobody'), state),
      ];
    });
    expect(seen.fast).toEqual(seen.stock);
    expect(seen.fast.map((o) => (o.ok ? 'ok' : o.code))).toEqual([
      'ok',
      'ok',
      'ok',
      grpc.status.FAILED_PRECONDITION,
      grpc.status.INVALID_ARGUMENT,
      grpc.status.NOT_FOUND,
    ]);
    expect(seen.fast[3]).toMatchObject({ details: 'insufficient funds: 5 < 10 ü%', statusDetails: [expect.stringMatching(/^type\.googleapis\.com\/cos\.test\.Detail=/)] });
  });
});
