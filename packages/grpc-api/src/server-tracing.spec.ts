import { create } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { trace, type Context } from '@opentelemetry/api';
import { InvalidArgumentError, silentLogger } from '@chiefofstate/core';
import {
  ChiefOfStateService,
  Health,
  HealthCheckRequestSchema,
  MetaDataSchema,
  ProcessCommandRequestSchema,
} from '@chiefofstate/protocol';
import { createGrpcJsClient, type GrpcJsClient } from '@chiefofstate/testing';
import { createTracing, type Tracing } from '@chiefofstate/tracing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createChiefOfStateService } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';
import { createHealthStatus } from './health-service.js';
import { createServerTracingInterceptor } from './server-tracing.js';
import { logCallFailure } from './status.js';

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

function traceparent(flags: '01' | '00'): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', `00-${CALLER_TRACE}-${CALLER_SPAN}-${flags}`);
  return metadata;
}

describe('server tracing', () => {
  const exporter = new InMemorySpanExporter();
  const seen: Array<Context | undefined> = [];
  const logged: Array<Record<string, unknown>> = [];
  let tracing: Tracing;
  let server: GrpcServer;
  let client: GrpcJsClient;
  let health: GrpcJsClient;

  beforeAll(async () => {
    // no context manager (the default): the trace context must travel in the call's values
    tracing = createTracing({ serviceName: 'edge-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const logger = { ...silentLogger, debug: (fields: object) => logged.push({ ...fields }), error: (fields: object) => logged.push({ ...fields }) };
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 64 * 1024,
      interceptors: [createServerTracingInterceptor({ ignoreServices: [Health.typeName] })],
      routes: (router) => {
        router.service(
          ChiefOfStateService,
          createChiefOfStateService({
            processor: {
              processCommand: async (request) => {
                seen.push(request.traceContext);
                if (request.entityId === 'bad') throw new InvalidArgumentError('bad command');
                return { state: create(AnySchema), meta: create(MetaDataSchema, { entityId: request.entityId }) };
              },
              getState: () => Promise.reject(new Error('unused')),
            },
            headers: { propagated: [], persisted: [] },
            commandTimeoutMs: 5000,
            onError: logCallFailure(logger),
          }),
        );
        router.service(Health, createHealthStatus({ services: [] }).service);
      },
    });
    client = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${server.port}` });
    health = createGrpcJsClient({ service: Health, address: `127.0.0.1:${server.port}` });
  });

  afterAll(async () => {
    client.close();
    health.close();
    await server.close();
    await tracing.shutdown();
  });

  beforeEach(() => {
    exporter.reset();
    seen.length = 0;
    logged.length = 0;
  });

  const processCommand = (entityId: string, metadata: grpc.Metadata) =>
    client.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId }), {
      metadata,
    });

  it("continues the caller's trace and hands the server span's context to the processor", async () => {
    await processCommand('a', traceparent('01'));
    const [span] = exporter.getFinishedSpans();
    expect(span?.name).toBe('chief_of_state.v1.ChiefOfStateService/ProcessCommand');
    expect(span?.spanContext().traceId).toBe(CALLER_TRACE);
    expect(span?.parentSpanContext?.spanId).toBe(CALLER_SPAN);
    expect(span?.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'chief_of_state.v1.ChiefOfStateService',
      'rpc.method': 'ProcessCommand',
      'rpc.grpc.status_code': 0,
    });
    expect(trace.getSpan(seen[0]!)?.spanContext().spanId).toBe(span?.spanContext().spanId);
  });

  it('marks a failed call with its gRPC status and logs it with the trace ids', async () => {
    await expect(processCommand('bad', traceparent('01'))).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const [span] = exporter.getFinishedSpans();
    expect(span?.attributes['rpc.grpc.status_code']).toBe(grpc.status.INVALID_ARGUMENT);
    expect(span?.status).toMatchObject({ code: 2, message: 'bad command' });
    expect(logged).toEqual([
      expect.objectContaining({ method: 'ProcessCommand', trace_id: CALLER_TRACE, span_id: span?.spanContext().spanId }),
    ]);
  });

  it('records nothing and passes no context when the caller did not sample', async () => {
    await processCommand('a', traceparent('00'));
    expect(exporter.getFinishedSpans()).toEqual([]);
    expect(seen).toEqual([undefined]);
  });

  it('leaves ignored services untraced', async () => {
    await health.unary(Health.method.check, create(HealthCheckRequestSchema), { metadata: traceparent('01') });
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
