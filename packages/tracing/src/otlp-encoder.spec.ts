// The encoder is held to the stock one: for every kind of span the SDK makes, its request must be
// byte for byte what @opentelemetry/otlp-transformer's ProtobufTraceSerializer produces.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Context } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { TRACER_NAME } from '@chiefofstate/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { createSpanBatch } from './otlp-encoder.js';

/** A provider whose ended spans are collected, to encode both ways. */
function collecting(attributes: Record<string, string>) {
  const spans: ReadableSpan[] = [];
  const processor: SpanProcessor = {
    onStart: () => {},
    onEnd: (span) => void spans.push(span),
    forceFlush: async () => {},
    shutdown: async () => {},
  };
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes(attributes), spanProcessors: [processor] });
  return { provider, spans };
}

function remoteParent(traceState?: string): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
    ...(traceState ? { traceState: new TraceState(traceState) } : {}),
  });
}

function expectSameBytes(spans: readonly ReadableSpan[]): Uint8Array {
  const batch = createSpanBatch();
  for (const span of spans) batch.add(span);
  expect(batch.size).toBe(spans.length);
  const ours = batch.take();
  const stock = ProtobufTraceSerializer.serializeRequest([...spans]);
  expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(stock!).toString('hex'));
  expect(batch.size).toBe(0);
  return ours;
}

describe('createSpanBatch', () => {
  it("encodes COS's spans as the stock serializer does: kinds, parents, links both ways, status", () => {
    const { provider, spans } = collecting({ 'service.name': 'chief-of-state', 'team.name': 'payments' });
    const tracer = provider.getTracer(TRACER_NAME);
    const server = tracer.startSpan(
      'chief_of_state.v1.ChiefOfStateService/ProcessCommand',
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': 'chief_of_state.v1.ChiefOfStateService', 'rpc.method': 'ProcessCommand' },
      },
      remoteParent('vendor=value,other=1'),
    );
    const entity = tracer.startSpan('cos.entity.command', { attributes: { 'cos.entity_id': 'account-1' } }, trace.setSpan(ROOT_CONTEXT, server));
    const handler = tracer.startSpan(
      'chief_of_state.v1.WriteSideHandlerService/HandleCommand',
      { kind: SpanKind.CLIENT },
      trace.setSpan(ROOT_CONTEXT, entity),
    );
    handler.setAttribute('rpc.grpc.status_code', 9);
    handler.setStatus({ code: SpanStatusCode.ERROR, message: 'the handler said no' });
    handler.end();
    const batch = tracer.startSpan('cos.journal.batch', {
      root: true,
      links: [{ context: entity.spanContext(), attributes: { 'cos.note': 'joined' } }],
      attributes: { 'cos.journal.batch_events': 3, 'cos.journal.batch_appends': 1 },
    });
    entity.setAttribute('cos.journal.batch_span_id', batch.spanContext().spanId);
    entity.addLink({ context: batch.spanContext() });
    batch.end();
    entity.end();
    server.setStatus({ code: SpanStatusCode.OK });
    server.end();
    expectSameBytes(spans);
  });

  it('encodes every attribute type, events, unicode, and lengths on each side of a varint byte', () => {
    const { provider, spans } = collecting({ 'service.name': 'svc', 'host.cores': '2' });
    const tracer = provider.getTracer('other-scope', '1.2.3');
    const span = tracer.startSpan('ünïcödé span ✓', {
      kind: SpanKind.PRODUCER,
      attributes: {
        text: 'plain',
        unicode: 'grüße 👋',
        empty: '',
        yes: true,
        no: false,
        zero: 0,
        small: 127,
        varint2: 128,
        big: 2 ** 40 + 3,
        negative: -1,
        veryNegative: -(2 ** 40),
        half: 0.5,
        nan: Number.NaN,
        huge: 2 ** 70,
        strings: ['a', 'β', ''],
        numbers: [1, 2.5, -3],
        flags: [true, false],
        none: [],
      },
      startTime: [4_102_444_800, 999_999_999],
    });
    span.addEvent('exception', { 'exception.message': 'x'.repeat(200) }, [4_102_444_801, 1]);
    span.addEvent('plain');
    span.setAttribute('long', 'y'.repeat(20_000));
    span.end([4_102_444_802, 5]);
    tracer.startSpan('s').end();
    expectSameBytes(spans);
  });

  it('groups spans by resource and by scope in the order first seen, and forgets them after take', () => {
    const first = collecting({ 'service.name': 'a' });
    const second = collecting({ 'service.name': 'b' });
    const mixed: ReadableSpan[] = [];
    const tracers = [
      first.provider.getTracer('one'),
      second.provider.getTracer('one'),
      first.provider.getTracer('two', '0.1.0', { schemaUrl: 'https://opentelemetry.io/schemas/1.21.0' }),
    ];
    for (let i = 0; i < 9; i++) tracers[i % 3]!.startSpan(`span-${i}`, { attributes: { i } }).end();
    mixed.push(...first.spans, ...second.spans);
    mixed.sort((x, y) => (x.attributes['i'] as number) - (y.attributes['i'] as number));
    expectSameBytes(mixed);

    // A later batch: groups are reused, and one that received nothing is left out.
    first.spans.length = 0;
    tracers[0]!.startSpan('later').end();
    expectSameBytes(first.spans);
  });

  it('encodes 512 spans (a full export) the same, and the same again from reused buffers', () => {
    const { provider, spans } = collecting({ 'service.name': 'svc' });
    const tracer = provider.getTracer(TRACER_NAME);
    for (let i = 0; i < 512; i++) {
      tracer.startSpan('cos.entity.command', { attributes: { 'cos.entity_id': `entity-${i}` } }, remoteParent()).end();
    }
    const batch = createSpanBatch();
    for (const span of spans) batch.add(span);
    const once = Buffer.from(batch.take());
    for (const span of spans) batch.add(span);
    expect(Buffer.from(batch.take()).equals(once)).toBe(true);
    expectSameBytes(spans);
  });
});
