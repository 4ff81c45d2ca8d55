import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createReadSideClient } from '@chiefofstate/handler-client';
import { createJournal, JOURNAL_NOTIFY_CHANNEL } from '@chiefofstate/journal';
import { createLeaseCoordinator } from '@chiefofstate/leases';
import { createOffsetStore } from '@chiefofstate/offset-store';
import { migrateToLatest } from '@chiefofstate/postgres';
import { openTestDatabase } from '@chiefofstate/postgres/testing';
import { createTracing } from '@chiefofstate/tracing';
import { describe, expect, it } from 'vitest';
import { createReadSideEngine } from './engine.js';
import { engineTestMigrations, eventPayload, startRecordingHandler, until } from './test-support/fixtures.js';

describe('read-side tracing', () => {
  it('traces each delivery, with the handler call under it', async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = createTracing({ serviceName: 'read-side-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const database = await openTestDatabase('embedded');
    const handler = await startRecordingHandler();
    const client = createReadSideClient({ host: '127.0.0.1', port: handler.server.port });
    try {
      await migrateToLatest({ database, migrations: engineTestMigrations });
      const journal = createJournal({ database, numShards: 2 });
      await journal.append({ entityId: 'acc-1', expectedRevision: 0n, events: [eventPayload('acc-1', 1)] });
      await journal.append({ entityId: 'acc-1', expectedRevision: 1n, events: [eventPayload('acc-1', 2)] });
      const engine = createReadSideEngine({
        readSides: [{ readSideId: 'balances', handler: client, timeoutMs: 2000, failurePolicy: 'REPLAY_STOP', autoStart: true }],
        numShards: 2,
        journal,
        offsets: createOffsetStore({ database }),
        ownership: createLeaseCoordinator({ database, leaseMs: 1000, renewIntervalMs: 100 }),
        journalNotifications: { listen: (channel, listener) => database.listen(channel, listener), channel: JOURNAL_NOTIFY_CHANNEL },
        controlNotifications: { listen: (channel, listener) => database.listen(channel, listener) },
        pollIntervalMs: 100,
      });
      await engine.start();
      await until(() => handler.accepted.length >= 2);
      await engine.close();

      const spans = exporter.getFinishedSpans();
      const deliveries = spans.filter((s) => s.name === 'cos.read_side.deliver');
      expect(deliveries.map((s) => s.attributes['cos.position'])).toEqual([1, 2]);
      expect(deliveries.every((s) => s.attributes['cos.read_side_id'] === 'balances')).toBe(true);
      expect(deliveries.every((s) => s.attributes['cos.entity_id'] === 'acc-1' && s.attributes['cos.read_side.successful'] === true)).toBe(true);
      // each delivery is its own trace, with the HandleReadSide client span under it
      expect(new Set(deliveries.map((s) => s.spanContext().traceId)).size).toBe(2);
      const calls = spans.filter((s) => s.name === 'chief_of_state.v1.ReadSideHandlerService/HandleReadSide');
      expect(calls.map((s) => s.parentSpanContext?.spanId).sort()).toEqual(deliveries.map((s) => s.spanContext().spanId).sort());
    } finally {
      await client.close();
      await handler.close();
      await database.dispose();
      await tracing.shutdown();
    }
  });
});
