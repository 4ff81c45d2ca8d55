// What createTracing exports and how: protocol, sampler and batching, against a real OTLP receiver.
// Spans are made with `tracing.tracer` directly, with explicit parent contexts.
import { ROOT_CONTEXT, TraceFlags, trace, type Context } from '@opentelemetry/api';
import { startOtlpReceiver, type OtlpReceiver } from '@chiefofstate/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createTracing, type Tracing, type TracingOptions } from './tracing.js';

const CALLER_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN_ID = '00f067aa0ba902b7';

/** The context of a caller's traceparent, sampled or not. */
function remoteParent(sampled: boolean): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: CALLER_TRACE_ID,
    spanId: CALLER_SPAN_ID,
    traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  });
}

describe('createTracing export', () => {
  let tracing: Tracing | undefined;
  let receiver: OtlpReceiver | undefined;
  afterEach(async () => {
    await tracing?.shutdown();
    await receiver?.close();
    tracing = undefined;
    receiver = undefined;
    vi.unstubAllEnvs();
  });

  async function start(options: Omit<TracingOptions, 'serviceName' | 'tracesEndpoint'>) {
    receiver = await startOtlpReceiver();
    tracing = createTracing({ serviceName: 'cos-test', teamName: 'payments', tracesEndpoint: receiver.tracesUrl, ...options });
    return { tracer: tracing.tracer, receiver };
  }

  /** Flushes and unregisters, so what was recorded has reached the receiver. */
  async function stop() {
    await tracing?.shutdown();
    tracing = undefined;
  }

  it.each([
    [{ protocol: 'http/protobuf' as const }, 'application/x-protobuf'],
    [{ protocol: 'http/json' as const }, 'application/json'],
    [{}, 'application/x-protobuf'],
  ])('with %o sends %s, and the spans arrive whole', async (options, contentType) => {
    const { tracer, receiver } = await start(options);
    const parent = tracer.startSpan('cos.parent', { attributes: { 'cos.entity_id': 'e-1' } }, remoteParent(true));
    const child = tracer.startSpan(
      'cos.child',
      { attributes: { 'cos.events': 3, 'cos.share': 0.5, 'cos.ok': true, 'cos.tags': ['a', 'b'] } },
      trace.setSpan(ROOT_CONTEXT, parent),
    );
    child.end();
    parent.end();
    await stop();

    expect(receiver.requests.length).toBeGreaterThan(0);
    expect(receiver.requests.map((request) => [request.contentType, request.status])).toEqual(
      receiver.requests.map(() => [contentType, 200]),
    );
    const byName = (name: string) => receiver.spans.find((span) => span.name === name)!;
    expect(receiver.spans.map((span) => span.traceId)).toEqual([CALLER_TRACE_ID, CALLER_TRACE_ID]);
    expect(byName('cos.parent').parentSpanId).toBe(CALLER_SPAN_ID);
    expect(byName('cos.child').parentSpanId).toBe(byName('cos.parent').spanId);
    expect(byName('cos.child').spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(byName('cos.child').attributes).toEqual([
      { key: 'cos.events', value: { intValue: 3 } },
      { key: 'cos.share', value: { doubleValue: 0.5 } },
      { key: 'cos.ok', value: { boolValue: true } },
      { key: 'cos.tags', value: { arrayValue: { values: [{ stringValue: 'a' }, { stringValue: 'b' }] } } },
    ]);
    expect(byName('cos.parent').attributes).toEqual([{ key: 'cos.entity_id', value: { stringValue: 'e-1' } }]);
    expect(byName('cos.parent').kind).toBe(1);
    expect(receiver.resources[0]).toMatchObject({ 'service.name': 'cos-test', 'team.name': 'payments' });
  });

  it('records nothing with always_off, even under a sampled caller', async () => {
    const { tracer, receiver } = await start({ sampler: { name: 'always_off' } });
    const span = tracer.startSpan('cos.dropped', {}, remoteParent(true));
    expect(span.isRecording()).toBe(false);
    span.end();
    tracer.startSpan('cos.dropped-root').end();
    await stop();
    expect(receiver.spans).toEqual([]);
  });

  it('with parentbased_traceidratio 0 records no new trace, but follows a caller that sampled', async () => {
    const { tracer, receiver } = await start({ sampler: { name: 'parentbased_traceidratio', ratio: 0 } });
    tracer.startSpan('cos.new-trace').end();
    tracer.startSpan('cos.unsampled-caller', {}, remoteParent(false)).end();
    tracer.startSpan('cos.sampled-caller', {}, remoteParent(true)).end();
    await stop();
    expect(receiver.spans.map((span) => [span.name, span.traceId, span.parentSpanId])).toEqual([
      ['cos.sampled-caller', CALLER_TRACE_ID, CALLER_SPAN_ID],
    ]);
  });

  it('with traceidratio 0 ignores the caller and records nothing; with ratio 1 records every new trace', async () => {
    const { tracer, receiver: first } = await start({ sampler: { name: 'traceidratio', ratio: 0 } });
    tracer.startSpan('cos.sampled-caller', {}, remoteParent(true)).end();
    tracer.startSpan('cos.new-trace').end();
    await stop();
    expect(first.spans).toEqual([]);
    await first.close();

    const { tracer: all, receiver: second } = await start({ sampler: { name: 'traceidratio', ratio: 1 } });
    for (let i = 0; i < 5; i++) all.startSpan(`cos.new-trace-${i}`).end();
    await stop();
    expect(second.spans).toHaveLength(5);
  });

  it('exports at most maxExportBatchSize spans per request', async () => {
    const { tracer, receiver } = await start({ batch: { maxExportBatchSize: 2, scheduleDelayMs: 60_000 } });
    for (let i = 0; i < 5; i++) tracer.startSpan(`cos.span-${i}`).end();
    await stop();
    expect(receiver.requests.map((request) => request.spans).sort()).toEqual([1, 2, 2]);
  });

  it('exports after scheduleDelayMs, before any flush', async () => {
    const { tracer, receiver } = await start({ batch: { scheduleDelayMs: 50 } });
    tracer.startSpan('cos.early').end();
    await vi.waitFor(() => expect(receiver.spans.map((span) => span.name)).toEqual(['cos.early']), {
      timeout: 2_000,
      interval: 20,
    });
  });

  it('takes sampler and batching from its options only, not from OTEL_* in process.env', async () => {
    vi.stubEnv('OTEL_TRACES_SAMPLER', 'always_off');
    vi.stubEnv('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', '1');
    const { tracer, receiver } = await start({});
    tracer.startSpan('cos.one').end();
    tracer.startSpan('cos.two').end();
    await stop();
    expect(receiver.spans.map((span) => span.name)).toEqual(['cos.one', 'cos.two']);
    expect(receiver.requests.map((request) => request.spans)).toEqual([2]);
  });
});
