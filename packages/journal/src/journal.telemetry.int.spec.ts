import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { openTestDatabase, type TestDatabase } from '@chiefofstate/postgres/testing';
import { createTracing, type Tracing } from '@chiefofstate/tracing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJournal, type JournalBatchInfo } from './journal.js';
import { journalMigrations } from './schema.js';
import { migrateToLatest } from '@chiefofstate/postgres';

describe('journal telemetry', () => {
  let database: TestDatabase;
  let tracing: Tracing;
  const exporter = new InMemorySpanExporter();

  beforeAll(async () => {
    database = await openTestDatabase('embedded');
    await migrateToLatest({ database, migrations: journalMigrations });
    tracing = createTracing({ serviceName: 'journal-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
  });

  afterAll(async () => {
    await tracing.shutdown();
    await database.dispose();
  });

  it('reports each batch, and joins traced appends to the batch span they went out in', async () => {
    const batches: JournalBatchInfo[] = [];
    const journal = createJournal({ database, numShards: 4, onBatch: (b) => batches.push(b) });
    const payload = new Uint8Array([1, 2, 3]);
    const parent = tracing.tracer.startSpan('command');
    const traceContext = trace.setSpan(ROOT_CONTEXT, parent);
    await Promise.all([
      journal.append({ entityId: 'a', expectedRevision: 0n, events: [payload, payload], traceContext }),
      journal.append({ entityId: 'b', expectedRevision: 0n, events: [payload], traceContext }),
      journal.append({ entityId: 'c', expectedRevision: 5n, events: [payload], traceContext }).catch(() => undefined),
    ]);
    parent.end();
    // untraced appends make no spans
    await journal.append({ entityId: 'd', expectedRevision: 0n, events: [payload] });
    await journal.close();

    expect(batches.reduce((n, b) => n + b.events, 0)).toBe(5);
    expect(batches[0]).toMatchObject({ events: 4, appends: 3 });
    expect(batches.every((b) => b.seconds > 0)).toBe(true);

    const spans = exporter.getFinishedSpans();
    // no span per append: the transaction's span is the journal write, linked both ways
    expect(spans.filter((s) => s.name === 'cos.journal.append')).toEqual([]);
    const [batch] = spans.filter((s) => s.name === 'cos.journal.batch');
    const [command] = spans.filter((s) => s.name === 'command');
    expect(batch!.attributes).toMatchObject({ 'cos.journal.batch_events': 4, 'cos.journal.batch_appends': 3 });
    expect(batch!.parentSpanContext).toBeUndefined();
    expect(batch!.links.map((l) => l.context.spanId)).toEqual([parent.spanContext().spanId, parent.spanContext().spanId, parent.spanContext().spanId]);
    expect(command!.links.map((l) => l.context.spanId)).toContain(batch!.spanContext().spanId);
    expect(command!.attributes['cos.journal.batch_span_id']).toBe(batch!.spanContext().spanId);
    expect(typeof command!.attributes['cos.journal.first_position']).toBe('number');
    // the conflict of 'c' is an exception event on the caller's span, not its status
    expect(command!.events.map((e) => e.name)).toEqual(['exception']);
    expect(command!.status.code).toBe(0);
  });
});
