// The processor's batching, queue bound, failure handling and shutdown, with spans from the real
// SDK; over HTTP to the test receiver (the stock transport) where the wire matters.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { startOtlpReceiver, type OtlpReceiver } from '@chiefofstate/testing';
import { TRACER_NAME } from '@chiefofstate/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createOtlpSpanProcessor,
  type EncodedSpans,
  type OtlpExportFailure,
  type OtlpSpanProcessorOptions,
} from './otlp-span-processor.js';

describe('createOtlpSpanProcessor', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    vi.unstubAllEnvs();
  });

  function tracerWith(options: OtlpSpanProcessorOptions) {
    const processor = createOtlpSpanProcessor(options);
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'cos-test' }),
      spanProcessors: [processor],
    });
    cleanups.push(() => provider.shutdown());
    return { tracer: provider.getTracer(TRACER_NAME), processor };
  }

  async function receiver(): Promise<OtlpReceiver> {
    const started = await startOtlpReceiver();
    cleanups.push(() => started.close());
    return started;
  }

  /** An OTLP endpoint that answers every request with `status`, counting them. */
  async function answering(status: number): Promise<{ url: string; requests: () => number }> {
    let requests = 0;
    const server: Server = createServer((request, response) => {
      requests++;
      request.resume();
      request.on('end', () => response.writeHead(status).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, requests: () => requests };
  }

  it('exports over OTLP/HTTP protobuf in batches of at most maxExportBatchSize, each span once', async () => {
    const otlp = await receiver();
    const { tracer, processor } = tracerWith({ url: otlp.tracesUrl, maxExportBatchSize: 4, scheduleDelayMs: 60_000 });
    for (let i = 0; i < 10; i++) tracer.startSpan(`span-${i}`).end();
    await processor.forceFlush();
    expect(otlp.requests.map((request) => [request.contentType, request.status, request.spans])).toEqual([
      ['application/x-protobuf', 200, 4],
      ['application/x-protobuf', 200, 4],
      ['application/x-protobuf', 200, 2],
    ]);
    expect(otlp.spans.map((span) => span.name)).toEqual(Array.from({ length: 10 }, (_, i) => `span-${i}`));
    expect(otlp.resources[0]).toMatchObject({ 'service.name': 'cos-test' });
  });

  it('skips spans that are not sampled', async () => {
    const sent: EncodedSpans[] = [];
    const { tracer, processor } = tracerWith({ send: async (batch) => void sent.push(batch) });
    const unsampled = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      traceFlags: TraceFlags.NONE,
    });
    // The SDK's default sampler follows the parent, so this span records but is not sampled.
    tracer.startSpan('unsampled', {}, unsampled).end();
    tracer.startSpan('sampled').end();
    await processor.forceFlush();
    expect(sent.map((batch) => batch.spans)).toEqual([1]);
  });

  it('holds at most maxQueueSize spans while an export is stuck, and reports how many it dropped', async () => {
    const sends: Array<{ batch: EncodedSpans; finish: () => void }> = [];
    const dropped: number[] = [];
    const { tracer, processor } = tracerWith({
      send: (batch) => new Promise<void>((resolve) => sends.push({ batch, finish: resolve })),
      maxQueueSize: 6,
      maxExportBatchSize: 2,
      scheduleDelayMs: 60_000,
      onDropped: (spans) => dropped.push(spans),
    });
    for (let i = 0; i < 10; i++) tracer.startSpan(`span-${i}`).end();
    // One request in flight, two more ready: six spans queued; four dropped.
    expect(sends.map((send) => send.batch.spans)).toEqual([2]);
    sends[0]!.finish();
    await vi.waitFor(() => expect(sends).toHaveLength(2));
    tracer.startSpan('after-room').end();
    expect(dropped).toEqual([4]);
    const flushed = processor.forceFlush();
    for (let i = 1; i < 4; i++) {
      await vi.waitFor(() => expect(sends.length).toBeGreaterThan(i));
      sends[i]!.finish();
    }
    await flushed;
    expect(sends.map((send) => send.batch.spans)).toEqual([2, 2, 2, 1]);
  });

  it('reports a request the collector refused, and goes on with the next', async () => {
    const refusing = await answering(400);
    const failures: OtlpExportFailure[] = [];
    const { tracer, processor } = tracerWith({
      url: refusing.url,
      maxExportBatchSize: 3,
      onExportFailure: (failure) => failures.push(failure),
    });
    for (let i = 0; i < 5; i++) tracer.startSpan(`span-${i}`).end();
    await processor.forceFlush();
    expect(refusing.requests()).toBe(2);
    expect(failures.map((failure) => failure.spans)).toEqual([3, 2]);
    expect(failures[0]!.error.message).toMatch(/400|Bad Request/);
  });

  it('gives up on an export after exportTimeoutMs and sends the next', async () => {
    const sent: number[] = [];
    const failures: OtlpExportFailure[] = [];
    let first = true;
    const { tracer, processor } = tracerWith({
      send: (batch) => {
        sent.push(batch.spans);
        if (!first) return Promise.resolve();
        first = false;
        return new Promise<void>(() => {});
      },
      maxExportBatchSize: 1,
      exportTimeoutMs: 50,
      onExportFailure: (failure) => failures.push(failure),
    });
    tracer.startSpan('stuck').end();
    tracer.startSpan('next').end();
    await processor.forceFlush();
    expect(sent).toEqual([1, 1]);
    expect(failures.map((failure) => failure.error.message)).toEqual(['OTLP export timed out after 50 ms']);
  });

  it('exports after scheduleDelayMs without a flush; shutdown sends what is left and ignores later spans', async () => {
    const sent: number[] = [];
    const { tracer, processor } = tracerWith({ send: async (batch) => void sent.push(batch.spans), scheduleDelayMs: 30 });
    tracer.startSpan('early').end();
    await vi.waitFor(() => expect(sent).toEqual([1]), { timeout: 2_000, interval: 10 });
    tracer.startSpan('a').end();
    tracer.startSpan('b').end();
    await processor.shutdown();
    expect(sent).toEqual([1, 2]);
    tracer.startSpan('too-late').end();
    await processor.forceFlush();
    // longer than scheduleDelayMs: a span taken after shutdown would have been sent by now
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(sent).toEqual([1, 2]);
  });

  it('honours OTEL_EXPORTER_OTLP_TRACES_COMPRESSION through the stock transport', async () => {
    vi.stubEnv('OTEL_EXPORTER_OTLP_TRACES_COMPRESSION', 'gzip');
    const otlp = await receiver();
    const { tracer, processor } = tracerWith({ url: otlp.tracesUrl });
    tracer.startSpan('zipped').end();
    await processor.forceFlush();
    expect(otlp.requests.map((request) => [request.gzip, request.status, request.spans])).toEqual([[true, 200, 1]]);
    expect(otlp.spans.map((span) => span.name)).toEqual(['zipped']);
  });

  it('needs a url or a send function', () => {
    expect(() => createOtlpSpanProcessor({})).toThrow(/url or a send/);
  });
});
