import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, NotFoundError, StoreError } from '@chiefofstate/core';
import { ReadSideManagerService } from '@chiefofstate/protocol';
import { createGrpcJsClient, type GrpcJsClient } from '@chiefofstate/testing';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import { createReadSideManagerService, type ReadSideManagerPort } from './read-side-manager-service.js';

const NUM_SHARDS = 4;

/**
 * A manager over an in-memory table, with the real one's argument rules: the edge (request and
 * response mapping, status codes, a stock client) is under test here; the real manager is
 * proven end to end in apps/cos-readside.
 */
function memoryManager() {
  const positions = new Map<string, bigint[]>([['orders', [0n, 7n, 0n, 12n]]]);
  const paused = new Set<string>();
  const calls: string[] = [];
  const rows = (readSideId: string) => {
    if (readSideId === 'broken') throw new StoreError('database down');
    const found = positions.get(readSideId);
    if (!found) throw new NotFoundError(`read side ${JSON.stringify(readSideId)} is not configured`);
    return found;
  };
  const check = (readSideId: string, shard?: number) => {
    const found = rows(readSideId);
    if (shard !== undefined && (shard < 0 || shard >= NUM_SHARDS)) {
      throw new InvalidArgumentError(`cluster_shard_number ${shard} is out of range 0..${NUM_SHARDS - 1}`);
    }
    return found;
  };
  const manager: ReadSideManagerPort = {
    latestOffsets: async (id) => check(id).map((position, shard) => ({ shard, position })),
    latestOffset: async (id, shard) => ({ shard, position: check(id, shard)[shard]! }),
    restart: async (id, shard) => {
      const found = check(id, shard);
      calls.push(`restart ${id} ${shard ?? '*'}`);
      for (let s = 0; s < NUM_SHARDS; s++) if (shard === undefined || s === shard) found[s] = 0n;
    },
    pause: async (id, shard) => {
      check(id, shard);
      calls.push(`pause ${id} ${shard ?? '*'}`);
      paused.add(`${id}/${shard ?? '*'}`);
    },
    resume: async (id, shard) => {
      check(id, shard);
      calls.push(`resume ${id} ${shard ?? '*'}`);
      paused.delete(`${id}/${shard ?? '*'}`);
    },
    skip: async (id, shard) => {
      const found = check(id, shard);
      calls.push(`skip ${id} ${shard ?? '*'}`);
      return shard === undefined || found[shard]! > 0n;
    },
  };
  return { manager, calls, paused };
}

describe('ReadSideManagerService over gRPC, called by a stock grpc-js client', () => {
  const memory = memoryManager();
  const errors: string[] = [];
  let server: GrpcServer;
  let client: GrpcJsClient;
  const method = (name: string) => ReadSideManagerService.methods.find((m) => m.name === name)!;
  const call = async (name: string, request: Record<string, unknown>) => {
    const m = method(name);
    // only the fields the request has (the by-shard ones have cluster_shard_number)
    const fields = Object.fromEntries(Object.entries(request).filter(([key]) => m.input.fields.some((f) => f.localName === key)));
    return (await client.unary(m, create(m.input, fields) as never)).response as Record<string, unknown>;
  };
  const failure = async (name: string, request: Record<string, unknown>) => {
    try {
      await call(name, request);
    } catch (error) {
      const { code, details } = error as grpc.ServiceError;
      return { code, details };
    }
    throw new Error('expected the call to fail');
  };

  beforeAll(async () => {
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 4 * 1024 * 1024,
      routes: (router) => {
        router.service(
          ReadSideManagerService,
          createReadSideManagerService({ manager: memory.manager, onError: (m) => errors.push(m) }),
        );
      },
    });
    client = createGrpcJsClient({ service: ReadSideManagerService, address: `127.0.0.1:${server.port}` });
  });
  afterAll(async () => {
    client?.close();
    await server?.close(0);
  });

  it('GetLatestOffset lists every shard with its offset', async () => {
    const response = await call('GetLatestOffset', { readSideId: 'orders' });
    expect(response['offsets']).toEqual(
      [0n, 7n, 0n, 12n].map((offset, shard) => expect.objectContaining({ clusterShardNumber: BigInt(shard), offset })),
    );
  });

  it('GetLatestOffsetByShard answers one ReadSideOffset in the field `offsets`', async () => {
    const response = await call('GetLatestOffsetByShard', { readSideId: 'orders', clusterShardNumber: 3n });
    expect(response['offsets']).toEqual(expect.objectContaining({ clusterShardNumber: 3n, offset: 12n }));
  });

  it('restart, pause, resume and skip reach the manager and answer successful', async () => {
    expect(await call('PauseReadSide', { readSideId: 'orders' })).toMatchObject({ successful: true });
    expect(await call('PauseReadSideByShard', { readSideId: 'orders', clusterShardNumber: 2n })).toMatchObject({ successful: true });
    expect(await call('ResumeReadSide', { readSideId: 'orders' })).toMatchObject({ successful: true });
    expect(await call('ResumeReadSideByShard', { readSideId: 'orders', clusterShardNumber: 2n })).toMatchObject({ successful: true });
    expect(await call('SkipOffsetByShard', { readSideId: 'orders', clusterShardNumber: 1n })).toMatchObject({ successful: true });
    expect(await call('SkipOffset', { readSideId: 'orders' })).toMatchObject({ successful: true });
    expect(await call('RestartReadSideByShard', { readSideId: 'orders', clusterShardNumber: 1n })).toMatchObject({ successful: true });
    expect(await call('RestartReadSide', { readSideId: 'orders' })).toMatchObject({ successful: true });
    expect(memory.calls).toEqual([
      'pause orders *',
      'pause orders 2',
      'resume orders *',
      'resume orders 2',
      'skip orders 1',
      'skip orders *',
      'restart orders 1',
      'restart orders *',
    ]);
    // after the restart every shard is back to 0, and there is nothing left to skip
    const response = await call('GetLatestOffset', { readSideId: 'orders' });
    expect((response['offsets'] as { offset: bigint }[]).map((o) => o.offset)).toEqual([0n, 0n, 0n, 0n]);
    expect(await call('SkipOffsetByShard', { readSideId: 'orders', clusterShardNumber: 3n })).toMatchObject({ successful: false });
  });

  it('an unknown read side is NOT_FOUND, for every method', async () => {
    for (const name of ReadSideManagerService.methods.map((m) => m.name)) {
      const result = await failure(name, { readSideId: 'nope', clusterShardNumber: 0n });
      expect(result, name).toEqual({ code: grpc.status.NOT_FOUND, details: 'read side "nope" is not configured' });
    }
  });

  it('a shard out of range is INVALID_ARGUMENT, also beyond 32 bits', async () => {
    expect(await failure('PauseReadSideByShard', { readSideId: 'orders', clusterShardNumber: 4n })).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'cluster_shard_number 4 is out of range 0..3',
    });
    expect(await failure('SkipOffsetByShard', { readSideId: 'orders', clusterShardNumber: 2n ** 63n })).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: `cluster_shard_number ${2n ** 63n} is out of range`,
    });
  });

  it('a store failure is UNAVAILABLE and is reported to onError', async () => {
    errors.length = 0;
    expect((await failure('GetLatestOffset', { readSideId: 'broken' })).code).toBe(grpc.status.UNAVAILABLE);
    expect(errors).toEqual(['GetLatestOffset']);
  });
});
