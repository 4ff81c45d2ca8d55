import { create } from '@bufbuild/protobuf';
import { StringValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { ROOT_CONTEXT, SpanKind, trace, type Context } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { HandlerFailedError, HandlerUnavailableError } from '@chiefofstate/core';
import {
  HandleCommandRequestSchema,
  HandleReadSideRequestSchema,
  MetaDataSchema,
  ReadSideHandlerService,
  WriteSideHandlerService,
  emptyState,
  packAny,
} from '@chiefofstate/protocol';
import { startTestGrpcServer, type TestGrpcServer } from '@chiefofstate/testing';
import { createTracing, type Tracing } from '@chiefofstate/tracing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createReadSideClient } from './read-side-client.js';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

describe('client spans of handler calls', () => {
  // No context manager (createTracing's default): parents are passed explicitly, as COS does.
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  const traceparents: string[] = [];
  let server: TestGrpcServer;
  let client: WriteSideClient;

  beforeAll(async () => {
    tracing = createTracing({ serviceName: 'client-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
    server = await startTestGrpcServer((router) => {
      router.service(WriteSideHandlerService, {
        handleCommand: (request, context) => {
          traceparents.push(context.requestHeader.get('traceparent') ?? '');
          if (request.priorEventMeta?.entityId === 'refused') {
            throw new ConnectError('no such account', Code.FailedPrecondition);
          }
          return { events: [] };
        },
        handleEvent: () => ({}),
      });
      router.service(ReadSideHandlerService, {
        handleReadSide: (_request, context) => {
          traceparents.push(context.requestHeader.get('traceparent') ?? '');
          return { successful: true };
        },
      });
    });
    client = createWriteSideClient({ host: '127.0.0.1', port: server.port });
  });

  afterAll(async () => {
    await client.close();
    await server.stop();
    await tracing.shutdown();
  });

  beforeEach(() => {
    exporter.reset();
    traceparents.length = 0;
  });

  const command = (entityId: string) =>
    create(HandleCommandRequestSchema, {
      command: packAny(StringValueSchema, create(StringValueSchema, { value: 'x' })),
      priorState: emptyState(),
      priorEventMeta: create(MetaDataSchema, { entityId }),
    });
  const callerContext = (): Context => {
    const caller = tracing.tracer.startSpan('cos.entity.command');
    return trace.setSpan(ROOT_CONTEXT, caller);
  };

  it("is a child of the call's trace context, and its traceparent replaces the caller's", async () => {
    const parent = callerContext();
    await client.handleCommand(command('a'), {
      headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`, 'x-tenant': 't1' },
      traceContext: parent,
    });
    const [span] = exporter.getFinishedSpans();
    const parentSpan = trace.getSpan(parent)!.spanContext();
    expect(span?.name).toBe('chief_of_state.v1.WriteSideHandlerService/HandleCommand');
    expect(span?.kind).toBe(SpanKind.CLIENT);
    expect(span?.parentSpanContext?.spanId).toBe(parentSpan.spanId);
    expect(span?.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.method': 'HandleCommand', 'rpc.grpc.status_code': 0 });
    expect(traceparents).toEqual([`00-${parentSpan.traceId}-${span?.spanContext().spanId}-01`]);
  });

  it('records a failed call with its gRPC status', async () => {
    await expect(client.handleCommand(command('refused'), { traceContext: callerContext() })).rejects.toBeInstanceOf(
      HandlerFailedError,
    );
    const [span] = exporter.getFinishedSpans();
    expect(span?.attributes['rpc.grpc.status_code']).toBe(Code.FailedPrecondition);
    expect(span?.status).toMatchObject({ code: 2, message: 'no such account' });
  });

  it("records an unreachable handler without its address (the log has it, the trace does not)", async () => {
    const unused = await startTestGrpcServer(() => {});
    const port = unused.port;
    await unused.stop();
    const unreachable = createWriteSideClient({ host: '127.0.0.1', port });
    try {
      const error = await unreachable.handleCommand(command('a'), { traceContext: callerContext() }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HandlerUnavailableError);
      expect((error as HandlerUnavailableError).message).toContain(`127.0.0.1:${port}`);
      expect((error as HandlerUnavailableError).publicMessage).toBe('write handler unavailable');
    } finally {
      await unreachable.close();
    }
    const [span] = exporter.getFinishedSpans();
    expect(span?.status).toMatchObject({ code: 2, message: 'write handler unavailable' });
    const recorded = JSON.stringify({ attributes: span?.attributes, status: span?.status, events: span?.events });
    expect(recorded).not.toContain(String(port));
    expect(recorded).not.toContain('ECONNREFUSED');
  });

  it("makes no span, and passes the caller's traceparent on, when the trace is not recorded", async () => {
    const raw = `00-${CALLER_TRACE}-${CALLER_SPAN}-00`;
    await client.handleCommand(command('a'), { headers: { traceparent: raw } });
    expect(exporter.getFinishedSpans()).toEqual([]);
    expect(traceparents).toEqual([raw]);
  });

  it('traces read-side calls the same way', async () => {
    const readSide = createReadSideClient({ host: '127.0.0.1', port: server.port });
    try {
      await readSide.handleReadSide(create(HandleReadSideRequestSchema, { readSideId: 'rs' }), {
        traceContext: callerContext(),
      });
    } finally {
      await readSide.close();
    }
    const [span] = exporter.getFinishedSpans();
    expect(span?.name).toBe('chief_of_state.v1.ReadSideHandlerService/HandleReadSide');
    expect(traceparents[0]).toContain(span?.spanContext().spanId);
  });
});
