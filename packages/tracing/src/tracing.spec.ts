import { createServer as createHttp2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createClient, type ConnectRouter, type Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport } from '@connectrpc/connect-node';
import { ChiefOfStateService, WriteSideHandlerService } from '@chiefofstate/protocol';
import { startOtlpReceiver as startReceiver } from '@chiefofstate/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createClientTracingInterceptor, createServerTracingInterceptor } from './interceptors.js';
import { createTracing, type Tracing } from './tracing.js';

async function serve(routes: (router: ConnectRouter) => void, interceptors: Interceptor[]) {
  const server: Http2Server = createHttp2Server(connectNodeAdapter({ routes, interceptors }));
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => sessions.add(session));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const session of sessions) session.destroy();
    });
  return { close, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('tracing', () => {
  let tracing: Tracing | undefined;
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await tracing?.shutdown();
    tracing = undefined;
  });

  it('exports one connected trace: caller -> COS server span -> client span -> handler server span', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    tracing = createTracing({ serviceName: 'cos-test', teamName: 'payments', tracesEndpoint: receiver.tracesUrl });
    expect(tracing.enabled).toBe(true);

    const seenTraceparent: string[] = [];
    const logFieldsInHandler: Array<{ trace_id?: string }> = [];
    const handler = await serve(
      (router) =>
        router.service(WriteSideHandlerService, {
          handleCommand(_request, ctx) {
            seenTraceparent.push(ctx.requestHeader.get('traceparent') ?? '');
            return {};
          },
          handleEvent: () => ({}),
        }),
      [createServerTracingInterceptor()],
    );
    closers.push(handler.close);
    const handlerClient = createClient(
      WriteSideHandlerService,
      createGrpcTransport({ baseUrl: handler.baseUrl, interceptors: [createClientTracingInterceptor()] }),
    );
    const cos = await serve(
      (router) =>
        router.service(ChiefOfStateService, {
          async processCommand(request) {
            logFieldsInHandler.push(tracing!.logFields());
            await handlerClient.handleCommand({});
            return { meta: { entityId: request.entityId } };
          },
          getState: () => ({}),
        }),
      [createServerTracingInterceptor()],
    );
    closers.push(cos.close);

    const callerTraceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpanId = '00f067aa0ba902b7';
    await createClient(ChiefOfStateService, createGrpcTransport({ baseUrl: cos.baseUrl })).processCommand(
      { entityId: 'a' },
      { headers: { traceparent: `00-${callerTraceId}-${callerSpanId}-01` } },
    );
    await tracing.shutdown();
    tracing = undefined;

    const byName = (name: string, kind: number) => receiver.spans.find((s) => s.name === name && s.kind === kind)!;
    const cosServer = byName('chief_of_state.v1.ChiefOfStateService/ProcessCommand', 2);
    const client = byName('chief_of_state.v1.WriteSideHandlerService/HandleCommand', 3);
    const handlerServer = byName('chief_of_state.v1.WriteSideHandlerService/HandleCommand', 2);
    expect(receiver.spans.map((s) => s.traceId)).toEqual(receiver.spans.map(() => callerTraceId));
    expect(cosServer.parentSpanId).toBe(callerSpanId);
    expect(client.parentSpanId).toBe(cosServer.spanId);
    expect(handlerServer.parentSpanId).toBe(client.spanId);
    expect(seenTraceparent[0]).toBe(`00-${callerTraceId}-${client.spanId}-01`);
    expect(logFieldsInHandler[0]).toEqual({ trace_id: callerTraceId, span_id: cosServer.spanId });
    expect(cosServer.attributes).toContainEqual({ key: 'rpc.system', value: { stringValue: 'grpc' } });
    expect(receiver.resources[0]).toMatchObject({ 'service.name': 'cos-test', 'team.name': 'payments' });
  });

  it('marks failed calls with their gRPC status', async () => {
    const receiver = await startReceiver();
    closers.push(receiver.close);
    tracing = createTracing({ serviceName: 'cos-test', tracesEndpoint: receiver.tracesUrl });
    const cos = await serve(
      (router) =>
        router.service(ChiefOfStateService, {
          processCommand() {
            throw new Error('boom');
          },
          getState: () => ({}),
        }),
      [createServerTracingInterceptor()],
    );
    closers.push(cos.close);
    await createClient(ChiefOfStateService, createGrpcTransport({ baseUrl: cos.baseUrl }))
      .processCommand({ entityId: 'a' })
      .catch(() => {});
    await tracing.shutdown();
    tracing = undefined;
    const [span] = receiver.spans;
    expect(span!.attributes).toContainEqual({ key: 'rpc.grpc.status_code', value: { intValue: 2 } });
  });

  it('stays off with no collector: nothing exported, no log fields', async () => {
    tracing = createTracing({ serviceName: 'cos-test' });
    expect(tracing.enabled).toBe(false);
    expect(tracing.logFields()).toEqual({});
  });
});
