import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { createTracing, type Tracing } from './tracing.js';

describe('createTracing', () => {
  let tracing: Tracing | undefined;
  afterEach(async () => {
    await tracing?.shutdown();
    tracing = undefined;
  });

  it('stays off with no collector: no SDK, nothing recorded, no log fields', async () => {
    tracing = createTracing({ serviceName: 'cos-test' });
    expect(tracing.enabled).toBe(false);
    const span = tracing.tracer.startSpan('x');
    expect(span.isRecording()).toBe(false);
    expect(tracing.logFields()).toEqual({});
  });

  it('registers no context manager by default: spans are parented explicitly', async () => {
    const exporter = new InMemorySpanExporter();
    tracing = createTracing({ serviceName: 'cos-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const parent = tracing.tracer.startSpan('parent');
    const inside = context.with(trace.setSpan(ROOT_CONTEXT, parent), () => ({
      active: trace.getActiveSpan(),
      fields: tracing!.logFields(),
    }));
    expect(inside).toEqual({ active: undefined, fields: {} });
    const child = tracing.tracer.startSpan('child', {}, trace.setSpan(ROOT_CONTEXT, parent));
    child.end();
    parent.end();
    const [finished] = exporter.getFinishedSpans();
    expect(finished?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
  });

  it('with asyncContext, the active span follows async calls and fills the log fields', async () => {
    tracing = createTracing({
      serviceName: 'cos-test',
      spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
      asyncContext: true,
    });
    const span = tracing.tracer.startSpan('request');
    const fields = await context.with(trace.setSpan(ROOT_CONTEXT, span), async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return tracing!.logFields();
    });
    span.end();
    expect(fields).toEqual({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
  });
});
