import { constants as http2Constants, createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import { StringValueSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import {
  CommitOutcomeUnknownError,
  DeadlineExceededError,
  HandlerFailedError,
  HandlerUnavailableError,
  PeerRefusedError,
  PeerUnreachableError,
} from '@chiefofstate/core';
import {
  ChiefOfStateService,
  FORWARDED_BY_HEADER,
  GetStateResponseSchema,
  MetaDataSchema,
  ProcessCommandRequestSchema,
  ProcessCommandResponseSchema,
  REFUSED_TRAILER,
  packAny,
  type GetStateRequest,
  type ProcessCommandRequest,
} from '@chiefofstate/protocol';
import { GrpcJsStatusError, encodeRpcStatus, freePort, startGrpcJsServer, type GrpcJsServer } from '@chiefofstate/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createPeerClients, type PeerClients } from './peer-client.js';

const SELF = '10.0.0.1:9000';

type Call = grpc.ServerUnaryCall<unknown, unknown>;

/** What the peer received: the request, its metadata and the deadline it was given. */
interface Received {
  method: 'processCommand' | 'getState';
  request: ProcessCommandRequest | GetStateRequest;
  metadata: grpc.Metadata;
  /** ms left until the call's deadline when it arrived; Infinity for none */
  remainingMs: number;
}

function str(value: string) {
  return packAny(StringValueSchema, create(StringValueSchema, { value }));
}

/** Another COS replica's ChiefOfStateService, served by the reference gRPC implementation. */
describe('peer clients against a @grpc/grpc-js ChiefOfStateService', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const received: Received[] = [];

  function record(method: Received['method'], request: Received['request'], call: Call): void {
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    received.push({ method, request, metadata: call.metadata, remainingMs: at === Infinity ? Infinity : at - Date.now() });
  }

  async function peer(
    processCommand: (request: ProcessCommandRequest, call: Call) => unknown = (request) =>
      create(ProcessCommandResponseSchema, {
        state: str(`state of ${request.entityId}`),
        meta: create(MetaDataSchema, { entityId: request.entityId, revisionNumber: 3 }),
      }),
  ): Promise<GrpcJsServer> {
    received.length = 0;
    const server = await startGrpcJsServer([
      {
        service: ChiefOfStateService,
        implementation: {
          processCommand: ((request: ProcessCommandRequest, call: Call) => {
            record('processCommand', request, call);
            return processCommand(request, call);
          }) as never,
          getState: ((request: GetStateRequest, call: Call) => {
            record('getState', request, call);
            return create(GetStateResponseSchema, {
              state: str(`read ${request.entityId}`),
              meta: create(MetaDataSchema, { entityId: request.entityId, revisionNumber: 4 }),
            });
          }) as never,
        },
      },
    ]);
    cleanups.push(async () => server.server.forceShutdown());
    return server;
  }

  function clients(timeoutMs = 3000): PeerClients {
    const c = createPeerClients({ self: SELF, timeoutMs });
    cleanups.push(() => c.close());
    return c;
  }

  const request = (entityId: string) => create(ProcessCommandRequestSchema, { entityId, command: str('deposit') });

  it('forwards ProcessCommand with x-cos-forwarded-by and the given headers, and returns the reply', async () => {
    const server = await peer();
    const reply = await clients().processCommand(server.address, request('acc-1'), {
      headers: {
        'x-tenant': 'acme',
        // persisted binary headers travel base64, as the router sends them
        'x-sig-bin': Buffer.from([0, 255, 1, 2]).toString('base64'),
      },
    });
    expect(reply.state).toEqual(str('state of acc-1'));
    expect(reply.meta?.entityId).toBe('acc-1');
    expect(reply.meta?.revisionNumber).toBe(3);

    expect(received).toHaveLength(1);
    const [call] = received;
    expect(call!.method).toBe('processCommand');
    expect((call!.request as ProcessCommandRequest).entityId).toBe('acc-1');
    const { command } = call!.request as ProcessCommandRequest;
    expect(command?.typeUrl).toBe(str('deposit').typeUrl);
    expect([...command!.value]).toEqual([...str('deposit').value]);
    expect(call!.metadata.get(FORWARDED_BY_HEADER)).toEqual([SELF]);
    expect(call!.metadata.get('x-tenant')).toEqual(['acme']);
    expect(call!.metadata.get('x-sig-bin')).toEqual([Buffer.from([0, 255, 1, 2])]);
  });

  it('names this replica as the forwarder even when the headers carry another x-cos-forwarded-by', async () => {
    const server = await peer();
    await clients().processCommand(server.address, request('acc-1'), {
      headers: new Headers({ [FORWARDED_BY_HEADER]: 'someone-else:1', 'x-tenant': 'acme' }),
    });
    expect(received[0]!.metadata.get(FORWARDED_BY_HEADER)).toEqual([SELF]);
    expect(received[0]!.metadata.get('x-tenant')).toEqual(['acme']);
  });

  it('forwards GetState the same way', async () => {
    const server = await peer();
    const reply = await clients().getState(server.address, { entityId: 'acc-2' } as GetStateRequest, {
      headers: { 'x-tenant': 'acme' },
    });
    expect(reply.state).toEqual(str('read acc-2'));
    expect(reply.meta?.revisionNumber).toBe(4);
    expect(received.map((r) => [r.method, r.request.entityId])).toEqual([['getState', 'acc-2']]);
    expect(received[0]!.metadata.get(FORWARDED_BY_HEADER)).toEqual([SELF]);
    expect(received[0]!.metadata.get('x-tenant')).toEqual(['acme']);
  });

  it("passes the peer's status through with its code, message and google.rpc.Status details", async () => {
    const details = [
      {
        typeUrl: 'type.googleapis.com/google.protobuf.StringValue',
        value: toBinary(StringValueSchema, create(StringValueSchema, { value: 'balance 5' })),
      },
      { typeUrl: 'example.com/custom/bank.v1.Insufficient', value: new Uint8Array([1, 2, 3, 250]) },
    ];
    const message = 'fonds insuffisants: 5 € < 10 €';
    const server = await peer(() => {
      const metadata = new grpc.Metadata();
      metadata.set(
        'grpc-status-details-bin',
        Buffer.from(encodeRpcStatus({ code: grpc.status.FAILED_PRECONDITION, message, details })),
      );
      throw new GrpcJsStatusError(grpc.status.FAILED_PRECONDITION, message, metadata);
    });
    const error = await clients().processCommand(server.address, request('acc-1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandlerFailedError);
    const failed = error as HandlerFailedError;
    expect(failed.statusCode).toBe(grpc.status.FAILED_PRECONDITION);
    expect(failed.statusMessage).toBe(message);
    expect(failed.details.map((d) => d.typeUrl)).toEqual(details.map((d) => d.typeUrl));
    expect(failed.details.map((d) => [...d.value])).toEqual(details.map((d) => [...d.value]));
  });

  it('passes a status without details through too, even UNAVAILABLE, never as unreachable', async () => {
    const server = await peer(() => {
      throw new GrpcJsStatusError(grpc.status.UNAVAILABLE, 'shutting down');
    });
    const call = clients().processCommand(server.address, request('acc-1'));
    const error = (await call.catch((e: unknown) => e)) as HandlerFailedError;
    expect(error).toBeInstanceOf(HandlerFailedError);
    expect(error.statusCode).toBe(grpc.status.UNAVAILABLE);
    expect(error.statusMessage).toBe('shutting down');
    expect(error.details).toEqual([]);
  });

  it('reports a refusal the peer marked as having written nothing as PeerRefusedError', async () => {
    const server = await peer(() => {
      const metadata = new grpc.Metadata();
      metadata.set(REFUSED_TRAILER, 'COS_FENCED');
      throw new GrpcJsStatusError(grpc.status.UNAVAILABLE, 'its shard is changing owner; nothing was written, retry', metadata);
    });
    const error = await clients().processCommand(server.address, request('acc-1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PeerRefusedError);
    expect((error as Error).message).toContain(server.address);
    expect((error as Error).cause).toBeInstanceOf(HandlerFailedError);
  });

  it('reports a port nobody listens on as PeerUnreachableError', async () => {
    const port = await freePort();
    const error = await clients().processCommand(`127.0.0.1:${port}`, request('acc-1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PeerUnreachableError);
    expect((error as Error).message).toContain(`127.0.0.1:${port}`);
    expect((error as Error).message).toContain('ECONNREFUSED');
    expect((error as PeerUnreachableError).publicMessage).not.toContain(String(port));
    await expect(clients().getState(`127.0.0.1:${port}`, { entityId: 'acc-1' } as GetStateRequest)).rejects.toBeInstanceOf(
      PeerUnreachableError,
    );
  });

  it('reports a call the peer refused with REFUSED_STREAM (a stopping peer after GOAWAY) as PeerUnreachableError, another reset not', async () => {
    const resetWith = async (code: number): Promise<unknown> => {
      const server = createHttp2Server();
      server.on('stream', (stream) => {
        stream.on('error', () => {}); // the server's side of the reset
        stream.close(code);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      return clients().processCommand(address, request('acc-1')).catch((e: unknown) => e);
    };
    expect(await resetWith(http2Constants.NGHTTP2_REFUSED_STREAM)).toBeInstanceOf(PeerUnreachableError);
    const reset = await resetWith(http2Constants.NGHTTP2_INTERNAL_ERROR);
    // the command reached the peer and may have run there
    expect(reset).toBeInstanceOf(CommitOutcomeUnknownError);
  });

  it('does not report a peer that went away during the call as unreachable: the call may have run there', async () => {
    const server: GrpcJsServer = await peer(async () => {
      server.server.forceShutdown();
      await sleep(1000);
      return create(ProcessCommandResponseSchema, {});
    });
    const error = await clients().processCommand(server.address, request('acc-1')).catch((e: unknown) => e);
    expect(received).toHaveLength(1);
    expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
  });

  it('reports a GetState reset after it was sent as the peer being unavailable (a read is safe to retry)', async () => {
    const server = createHttp2Server();
    server.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const error = await clients().getState(address, { entityId: 'acc-1' } as GetStateRequest).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandlerUnavailableError);
  });

  it("gives the peer the caller's remaining time as the call's deadline", async () => {
    const server = await peer();
    await clients(3000).processCommand(server.address, request('acc-1'), { timeoutMs: 700 });
    expect(received[0]!.remainingMs).toBeGreaterThan(450);
    expect(received[0]!.remainingMs).toBeLessThanOrEqual(700);
    // without one, the per-call timeout
    await clients(3000).getState(server.address, { entityId: 'acc-1' } as GetStateRequest);
    expect(received[1]!.remainingMs).toBeGreaterThan(2500);
    expect(received[1]!.remainingMs).toBeLessThanOrEqual(3000);
  });

  it('fails with DeadlineExceededError when the peer does not answer in time', async () => {
    const server = await peer(async () => {
      await sleep(1000);
      return create(ProcessCommandResponseSchema, {});
    });
    const started = performance.now();
    const call = clients().processCommand(server.address, request('acc-1'), { timeoutMs: 150 });
    const error = await call.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - started).toBeLessThan(900);
  });
});
