import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import { StringValueSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { DeadlineExceededError, HandlerFailedError, HandlerUnavailableError, MAX_TIMER_MS } from '@chiefofstate/core';
import {
  HandleCommandRequestSchema,
  HandleCommandResponseSchema,
  WriteSideHandlerService,
  emptyState,
  type HandleCommandRequest,
} from '@chiefofstate/protocol';
import { GrpcJsStatusError, encodeRpcStatus, startGrpcJsServer, type GrpcJsServer } from '@chiefofstate/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

/** The client against the reference implementation, @grpc/grpc-js, as a user's handler would be. */
describe('WriteSideClient against a @grpc/grpc-js handler', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function serve(
    handleCommand: (request: HandleCommandRequest, call: grpc.ServerUnaryCall<unknown, unknown>) => unknown,
    port = 0,
  ): Promise<GrpcJsServer> {
    const server = await startGrpcJsServer(
      [{ service: WriteSideHandlerService, implementation: { handleCommand: handleCommand as never } }],
      port,
    );
    cleanups.push(async () => server.server.forceShutdown());
    return server;
  }

  function client(port: number, timeoutMs = 2000): WriteSideClient {
    const c = createWriteSideClient({ host: '127.0.0.1', port, timeoutMs });
    cleanups.push(() => c.close());
    return c;
  }

  const request = create(HandleCommandRequestSchema, { command: emptyState(), priorState: emptyState() });

  it('round-trips a call with metadata', async () => {
    let tenant: unknown;
    const server = await serve((req, call) => {
      tenant = call.metadata.get('x-tenant')[0];
      return create(HandleCommandResponseSchema, { events: [req.command!] });
    });
    const response = await client(server.port).handleCommand(request, { headers: { 'x-tenant': 'acme' } });
    expect(response.events[0]?.typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    expect(tenant).toBe('acme');
  });

  it('carries a grpc-js status with rich details verbatim', async () => {
    const details = [
      {
        typeUrl: 'type.googleapis.com/google.protobuf.StringValue',
        value: toBinary(StringValueSchema, create(StringValueSchema, { value: 'balance 5' })),
      },
    ];
    const server = await serve(() => {
      const metadata = new grpc.Metadata();
      metadata.set(
        'grpc-status-details-bin',
        Buffer.from(encodeRpcStatus({ code: grpc.status.FAILED_PRECONDITION, message: 'insufficient funds', details })),
      );
      throw new GrpcJsStatusError(grpc.status.FAILED_PRECONDITION, 'insufficient funds', metadata);
    });
    const error = await client(server.port)
      .handleCommand(request)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandlerFailedError);
    const failed = error as HandlerFailedError;
    expect(failed.statusCode).toBe(grpc.status.FAILED_PRECONDITION);
    expect(failed.statusMessage).toBe('insufficient funds');
    expect(failed.details).toEqual(details);
  });

  it('keeps deadlines of days and weeks: they neither overflow the timer nor the grpc-timeout header', async () => {
    let seenTimeout: unknown;
    const server = await serve(async (req, call) => {
      seenTimeout = call.getDeadline();
      await sleep(30);
      return create(HandleCommandResponseSchema, { events: [req.command!] });
    });
    const day = 24 * 3600 * 1000;
    // 2 days: more than the 8 digits grpc-timeout allows in ms; 30 days: past a Node timer's
    // 2^31-1 ms, and past what a grpc-js server takes, so the handler sees the cap (24.8 days)
    for (const [days, expected] of [
      [2, 2 * day],
      [30, MAX_TIMER_MS],
    ] as const) {
      const before = Date.now();
      const response = await client(server.port, 40 * day).handleCommand(request, { timeoutMs: days * day });
      expect(response.events).toHaveLength(1);
      const deadline = seenTimeout instanceof Date ? seenTimeout.getTime() : Number(seenTimeout);
      expect(deadline - before).toBeGreaterThanOrEqual(expected - 1000);
      expect(deadline - before).toBeLessThanOrEqual(expected + 2000);
    }
  });

  it('reports a slow grpc-js handler as DeadlineExceededError', async () => {
    const server = await serve(async () => {
      await sleep(800);
      return create(HandleCommandResponseSchema, {});
    });
    await expect(client(server.port, 150).handleCommand(request)).rejects.toBeInstanceOf(DeadlineExceededError);
  });

  it('reconnects after the grpc-js handler is killed and restarted on the same port', async () => {
    const reply = () => create(HandleCommandResponseSchema, {});
    const first = await serve(reply);
    const c = client(first.port);
    await c.handleCommand(request);
    first.server.forceShutdown();
    await expect(c.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
    await serve(reply, first.port);
    await expect(c.handleCommand(request)).resolves.toBeDefined();
  });
});
