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
    const appends = spans.filter((s) => s.name === 'cos.journal.append');
    const [batch] = spans.filter((s) => s.name === 'cos.journal.batch');
    expect(appends).toHaveLength(3);
    expect(appends.every((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId)).toBe(true);
    expect(batch!.attributes['cos.journal.batch_events']).toBe(4);
    expect(batch!.links.map((l) => l.context.spanId).sort()).toEqual(appends.map((s) => s.spanContext().spanId).sort());
    expect(appends.every((s) => s.attributes['cos.journal.batch_span_id'] === batch!.spanContext().spanId)).toBe(true);
    const refused = appends.find((s) => s.attributes['cos.entity_id'] === 'c')!;
    expect(refused.status.code).toBe(2); // ERROR: the conflict
  });
});
