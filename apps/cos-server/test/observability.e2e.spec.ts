// Traces, metrics and health of the real cos-server process.
import * as grpc from '@grpc/grpc-js';
import { spanAttribute, startOtlpReceiver, type OtlpReceiver } from '@chiefofstate/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { command, failure, startCos, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, startTracedHandler, type RunningProcess } from './support/processes.js';

/** the value of one sample of the Prometheus text format */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = line.match(/^([a-z_]+)(\{(.*)\})? (.+)$/);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[4]);
  }
  return undefined;
}

describe('one trace from the caller through COS into a traced handler', () => {
  let receiver: OtlpReceiver | undefined;
  let handler: (RunningProcess & { port: number }) | undefined;
  let cos: CosFixture | undefined;

  afterAll(async () => {
    await cos?.dispose();
    await handler?.kill();
    await receiver?.close();
  });

  it('exports connected spans with the expected names and attributes over OTLP/HTTP', async () => {
    receiver = await startOtlpReceiver();
    handler = await startTracedHandler(receiver.tracesUrl);
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      COS_SERVICE_NAME: 'cos-under-test',
      TEAM_NAME: 'payments',
    });
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const callerSpanId = 'b7ad6b7169203331';
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${traceId}-${callerSpanId}-01`);
    const { response } = await cos.send('traced-1', command('Emit'), { metadata });
    expect(response.meta?.revisionNumber).toBe(1);
    // SIGTERM flushes both processes' span batches
    await cos.stop();
    await handler.kill();

    const spans = receiver.spans.filter((s) => s.traceId === traceId);
    const find = (service: string, name: string, kind: number) => {
      const span = spans.find((s) => s.service === service && s.name === name && s.kind === kind);
      expect(span, `${service} ${name} kind ${kind}; got ${spans.map((s) => `${s.service}:${s.name}:${s.kind}`).join(', ')}`).toBeDefined();
      return span!;
    };
    const processCommand = find('cos-under-test', 'chief_of_state.v1.ChiefOfStateService/ProcessCommand', 2);
    const handleCommandClient = find('cos-under-test', 'chief_of_state.v1.WriteSideHandlerService/HandleCommand', 3);
    const handleEventClient = find('cos-under-test', 'chief_of_state.v1.WriteSideHandlerService/HandleEvent', 3);
    const handleCommandServer = find('traced-handler', 'chief_of_state.v1.WriteSideHandlerService/HandleCommand', 2);
    const handleEventServer = find('traced-handler', 'chief_of_state.v1.WriteSideHandlerService/HandleEvent', 2);

    expect(processCommand.parentSpanId).toBe(callerSpanId);
    expect(handleCommandServer.parentSpanId).toBe(handleCommandClient.spanId);
    expect(handleEventServer.parentSpanId).toBe(handleEventClient.spanId);
    // the entity's work sits under the call, the handler calls under it, and it is linked to the
    // journal write: the batch transaction's span, in a trace of its own
    const entityWork = find('cos-under-test', 'cos.entity.command', 1);
    expect(entityWork.parentSpanId).toBe(processCommand.spanId);
    expect(spanAttribute(entityWork, 'cos.entity_id')).toBe('traced-1');
    expect(handleCommandClient.parentSpanId).toBe(entityWork.spanId);
    expect(handleEventClient.parentSpanId).toBe(entityWork.spanId);
    const batchId = spanAttribute(entityWork, 'cos.journal.batch_span_id');
    const batch = receiver.spans.find((s) => s.name === 'cos.journal.batch' && s.spanId === batchId);
    expect(batch?.links?.map((l) => l.spanId)).toContain(entityWork.spanId);
    expect(entityWork.links?.map((l) => l.spanId)).toContain(batchId);
    expect(spanAttribute(batch!, 'cos.journal.batch_events')).toBeGreaterThanOrEqual(1);
    expect(spans.filter((s) => s.name === 'cos.journal.append')).toEqual([]);
    expect(spanAttribute(processCommand, 'rpc.system')).toBe('grpc');
    expect(spanAttribute(processCommand, 'rpc.grpc.status_code')).toBe(0);
    expect(receiver.resources.find((r) => r['service.name'] === 'cos-under-test')).toMatchObject({ 'team.name': 'payments' });
  });
});

describe('metrics and health endpoints', () => {
  let handler: (RunningProcess & { port: number }) | undefined;
  let cos: CosFixture | undefined;

  afterAll(async () => {
    await cos?.dispose();
    await handler?.kill();
  });

  it('counts a known workload and reports readiness', async () => {
    handler = await startTestHandler();
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
    });
    const ops = (path: string) => fetch(`http://127.0.0.1:${cos!.metricsPort}${path}`);
    expect((await ops('/healthz')).status).toBe(200);
    expect((await ops('/readyz')).status).toBe(200);

    for (const id of ['m-1', 'm-2', 'm-1', 'm-2', 'm-1']) await cos.send(id, command('Emit', { events: ['a', 'b'] }));
    await failure(cos.send('', command('Emit')));
    await failure(cos.send('m-3', command('Fail', { code: grpc.status.FAILED_PRECONDITION })));
    await failure(cos.getState('never-seen'));
    await cos.getState('m-1');

    const text = await (await ops('/metrics')).text();
    const server = (method: string, code: string) =>
      sample(text, 'cos_grpc_server_handled_total', { service: 'chief_of_state.v1.ChiefOfStateService', method, code });
    expect(server('ProcessCommand', 'OK')).toBe(5);
    expect(server('ProcessCommand', 'INVALID_ARGUMENT')).toBe(1);
    expect(server('ProcessCommand', 'FAILED_PRECONDITION')).toBe(1);
    expect(server('GetState', 'NOT_FOUND')).toBe(1);
    expect(server('GetState', 'OK')).toBe(1);
    expect(sample(text, 'cos_grpc_server_handling_seconds_count', { method: 'ProcessCommand' })).toBe(7);
    const handlerCalls = (method: string, code: string) => sample(text, 'cos_handler_call_duration_seconds_count', { method, code });
    expect(handlerCalls('HandleCommand', 'OK')).toBe(5);
    expect(handlerCalls('HandleCommand', 'FAILED_PRECONDITION')).toBe(1);
    expect(handlerCalls('HandleEvent', 'OK')).toBe(10);
    expect(sample(text, 'cos_journal_batch_events_sum')).toBe(10);
    expect(sample(text, 'cos_journal_write_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'cos_entities_active')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'cos_db_pool_connections', { pool: 'store', state: 'total' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);

    // the handler goes away: not ready (the probe caches for 2 s), still alive
    await handler.kill();
    await expect.poll(async () => (await ops('/readyz')).status, { timeout: 5000, interval: 250 }).toBe(503);
    expect((await ops('/healthz')).status).toBe(200);
  });
});
