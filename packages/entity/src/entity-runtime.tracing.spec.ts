import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createTracing, type Tracing } from '@chiefofstate/tracing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEntityRuntime } from './entity-runtime.js';
import { InMemoryJournal } from './test-support/in-memory-stores.js';
import { startTestHandler, str, type TestHandler } from './test-support/test-handler.js';

describe('entity runtime tracing', () => {
  let tracing: Tracing;
  let handler: TestHandler;
  const exporter = new InMemorySpanExporter();

  beforeAll(async () => {
    // No context manager (the default): the trace context is passed explicitly all the way.
    tracing = createTracing({ serviceName: 'entity-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
    handler = await startTestHandler();
  });

  afterAll(async () => {
    await handler.stop();
    await tracing.shutdown();
  });

  it("keeps each queued command in its own caller's trace", async () => {
    const runtime = createEntityRuntime({
      journal: new InMemoryJournal(),
      handler: handler.client(),
    });
    const callerA = tracing.tracer.startSpan('caller-a');
    const callerB = tracing.tracer.startSpan('caller-b');
    const send = (caller: typeof callerA, command: string) =>
      runtime.processCommand({
        entityId: 'shared',
        command: str(command),
        traceContext: trace.setSpan(ROOT_CONTEXT, caller),
      });
    // B queues behind A on the same entity, so B runs from the mailbox loop A started
    const [a, b] = await Promise.all([send(callerA, 'slow:50:a'), send(callerB, 'emit:b')]);
    callerA.end();
    callerB.end();
    await runtime.close();
    expect([a.meta.revisionNumber, b.meta.revisionNumber]).toEqual([1, 2]);

    const traceIdOf = (headers: Headers) => headers.get('traceparent')?.split('-')[1];
    expect(handler.commands.map((c) => traceIdOf(c.headers))).toEqual([
      callerA.spanContext().traceId,
      callerB.spanContext().traceId,
    ]);
    expect(handler.events.map((e) => traceIdOf(e.headers))).toEqual([
      callerA.spanContext().traceId,
      callerB.spanContext().traceId,
    ]);
    const commands = exporter.getFinishedSpans().filter((s) => s.name === 'cos.entity.command');
    expect(commands.map((s) => s.parentSpanContext?.spanId).sort()).toEqual(
      [callerA.spanContext().spanId, callerB.spanContext().spanId].sort(),
    );
    expect(commands.map((s) => s.attributes['cos.revision']).sort()).toEqual([1, 2]);
    const clients = exporter.getFinishedSpans().filter((s) => s.name.startsWith('chief_of_state.v1.WriteSideHandlerService/'));
    expect(clients.map((s) => s.parentSpanContext?.spanId).sort()).toEqual(
      [...commands, ...commands].map((s) => s.spanContext().spanId).sort(),
    );
  });

  it('traces nothing when the caller passes no recorded context', async () => {
    exporter.reset();
    const runtime = createEntityRuntime({ journal: new InMemoryJournal(), handler: handler.client() });
    // without a context manager, context.with does not make the span active for the runtime
    const caller = tracing.tracer.startSpan('caller');
    await context.with(trace.setSpan(ROOT_CONTEXT, caller), () =>
      runtime.processCommand({ entityId: 'quiet', command: str('emit:x') }),
    );
    caller.end();
    await runtime.close();
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['caller']);
    expect(handler.commands.at(-1)?.headers.get('traceparent')).toBeNull();
  });
});
