import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport } from '@connectrpc/connect-node';
import { ChiefOfStateService } from '@chiefofstate/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from './cos-metrics.js';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';

/** the value of one sample line of the Prometheus text format */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = line.match(/^([a-z_]+)(\{(.*)\})? (.+)$/);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[4]);
  }
  return undefined;
}

describe('metrics', () => {
  const metrics = createMetrics({ defaultMetrics: false });
  let ready = false;
  let http: MetricsServer;
  let grpc: Http2Server;
  const sessions = new Set<ServerHttp2Session>();
  let baseUrl: string;

  beforeAll(async () => {
    grpc = createServer(
      connectNodeAdapter({
        interceptors: [metrics.serverInterceptor],
        routes: (router) =>
          router.service(ChiefOfStateService, {
            processCommand(request) {
              if (request.entityId === '') throw new ConnectError('empty entity ID', Code.InvalidArgument);
              return {};
            },
            getState() {
              throw new ConnectError('not found', Code.NotFound);
            },
          }),
      }),
    );
    grpc.on('session', (s) => sessions.add(s));
    await new Promise<void>((resolve) => grpc.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(grpc.address() as AddressInfo).port}`;
    http = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => ready });
  });

  afterAll(async () => {
    await http.close();
    await new Promise<void>((resolve) => {
      grpc.close(() => resolve());
      for (const s of sessions) s.destroy();
    });
  });

  const scrape = async () => (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();

  it('counts served calls by method and status code, and times them', async () => {
    // the client side goes through the handler interceptor, as COS's handler clients do
    const client = createClient(
      ChiefOfStateService,
      createGrpcTransport({ baseUrl, interceptors: [metrics.handlerInterceptor] }),
    );
    await client.processCommand({ entityId: 'a' });
    await client.processCommand({ entityId: 'b' });
    await client.processCommand({ entityId: 'c' });
    await client.processCommand({ entityId: '' }).catch(() => {});
    await client.getState({ entityId: 'a' }).catch(() => {});
    const text = await scrape();
    const svc = 'chief_of_state.v1.ChiefOfStateService';
    expect(sample(text, 'cos_grpc_server_handled_total', { service: svc, method: 'ProcessCommand', code: 'OK' })).toBe(3);
    expect(sample(text, 'cos_grpc_server_handled_total', { method: 'ProcessCommand', code: 'INVALID_ARGUMENT' })).toBe(1);
    expect(sample(text, 'cos_grpc_server_handled_total', { method: 'GetState', code: 'NOT_FOUND' })).toBe(1);
    expect(sample(text, 'cos_grpc_server_handling_seconds_count', { method: 'ProcessCommand' })).toBe(4);
    expect(sample(text, 'cos_handler_call_duration_seconds_count', { method: 'ProcessCommand', code: 'OK' })).toBe(3);
    expect(sample(text, 'cos_handler_call_duration_seconds_count', { method: 'GetState', code: 'NOT_FOUND' })).toBe(1);
  });

  it('records journal batches and read-side deliveries', async () => {
    metrics.observeJournalBatch(10, 0.002);
    metrics.observeJournalBatch(30, 0.004);
    metrics.observeReadSideDelivery('balances', 0.001, 'success');
    const text = await scrape();
    expect(sample(text, 'cos_journal_batch_events_sum')).toBe(40);
    expect(sample(text, 'cos_journal_batch_events_count')).toBe(2);
    expect(sample(text, 'cos_journal_batch_events_bucket', { le: '16' })).toBe(1);
    expect(sample(text, 'cos_journal_write_duration_seconds_count')).toBe(2);
    expect(sample(text, 'cos_read_side_delivery_duration_seconds_count', { read_side: 'balances', outcome: 'success' })).toBe(1);
  });

  it('counts refused commands by reason', async () => {
    metrics.observeRefusal('entity_mailbox');
    metrics.observeRefusal('entity_mailbox');
    metrics.observeRefusal('message_too_large');
    const text = await scrape();
    expect(sample(text, 'cos_commands_refused_total', { reason: 'entity_mailbox' })).toBe(2);
    expect(sample(text, 'cos_commands_refused_total', { reason: 'message_too_large' })).toBe(1);
  });

  it('counts idempotency keys: replays, keys stored, reuses refused and keys expired', async () => {
    metrics.observeIdempotency('stored', 3);
    metrics.observeIdempotency('replayed', 1);
    metrics.observeIdempotency('replayed', 1);
    metrics.observeIdempotency('reused', 1);
    metrics.observeIdempotency('expired', 500);
    const text = await scrape();
    expect(sample(text, 'cos_idempotency_keys_stored_total')).toBe(3);
    expect(sample(text, 'cos_idempotent_replays_total')).toBe(2);
    expect(sample(text, 'cos_idempotency_key_reuses_total')).toBe(1);
    expect(sample(text, 'cos_idempotency_keys_expired_total')).toBe(500);
  });

  it('counts subscription events by kind and source, their lag, and open subscriptions', async () => {
    metrics.observeSubscriptionEvent('all', 'journal', 2);
    metrics.observeSubscriptionEvent('all', 'tail', 0.004);
    metrics.observeSubscriptionEvent('entity', 'tail', 0.001);
    metrics.setSources({ subscriptions: () => ({ entity: 3, all: 1 }) });
    const text = await scrape();
    expect(sample(text, 'cos_subscription_events_total', { kind: 'all', source: 'journal' })).toBe(1);
    expect(sample(text, 'cos_subscription_events_total', { kind: 'all', source: 'tail' })).toBe(1);
    expect(sample(text, 'cos_subscription_lag_seconds_bucket', { kind: 'all', le: '0.005' })).toBe(1);
    expect(sample(text, 'cos_subscription_lag_seconds_count', { kind: 'entity' })).toBe(1);
    expect(sample(text, 'cos_subscriptions_active', { kind: 'entity' })).toBe(3);
    expect(sample(text, 'cos_subscriptions_active', { kind: 'all' })).toBe(1);
  });

  it('shows each circuit breaker state, how often it opened and the calls it refused', async () => {
    metrics.setSources({
      breakers: () => [
        { handler: 'write_side', state: 'open', opened: 2, rejected: 17 },
        { handler: 'read_side:orders', state: 'closed', opened: 0, rejected: 0 },
      ],
    });
    const text = await scrape();
    expect(sample(text, 'cos_circuit_breaker_state', { handler: 'write_side', state: 'open' })).toBe(1);
    expect(sample(text, 'cos_circuit_breaker_state', { handler: 'write_side', state: 'closed' })).toBe(0);
    expect(sample(text, 'cos_circuit_breaker_state', { handler: 'read_side:orders', state: 'closed' })).toBe(1);
    expect(sample(text, 'cos_circuit_breaker_opened_total', { handler: 'write_side' })).toBe(2);
    expect(sample(text, 'cos_circuit_breaker_rejected_total', { handler: 'write_side' })).toBe(17);
    metrics.setSources({});
  });

  it('samples entities, read sides and pools at scrape time', async () => {
    let passivated = 5;
    let failures = 3;
    metrics.setSources({
      entities: () => ({ active: 42, passivated, cacheBytes: 1234 }),
      readSides: () => [
        { readSideId: 'balances', shard: 0, lag: 7, stopped: false, paused: false },
        { readSideId: 'balances', shard: 1, lag: 0, stopped: true, paused: true },
      ],
      pools: () => [
        { pool: 'journal', total: 5, idle: 3, waiting: 0, available: false, connectionFailures: failures },
        { pool: 'leases', total: 1, idle: 1, waiting: 0, available: true, connectionFailures: 0 },
      ],
    });
    let text = await scrape();
    expect(sample(text, 'cos_entities_active')).toBe(42);
    expect(sample(text, 'cos_entities_passivated_total')).toBe(5);
    expect(sample(text, 'cos_entity_cache_bytes')).toBe(1234);
    expect(sample(text, 'cos_read_side_lag_positions', { read_side: 'balances', shard: '0' })).toBe(7);
    expect(sample(text, 'cos_read_side_shards_stopped', { read_side: 'balances' })).toBe(1);
    expect(sample(text, 'cos_read_side_shards_paused', { read_side: 'balances' })).toBe(1);
    expect(sample(text, 'cos_db_pool_connections', { pool: 'journal', state: 'idle' })).toBe(3);
    expect(sample(text, 'cos_db_available', { pool: 'journal' })).toBe(0);
    expect(sample(text, 'cos_db_available', { pool: 'leases' })).toBe(1);
    expect(sample(text, 'cos_db_connection_failures_total', { pool: 'journal' })).toBe(3);
    passivated = 9;
    failures = 4;
    text = await scrape();
    expect(sample(text, 'cos_entities_passivated_total')).toBe(9);
    expect(sample(text, 'cos_db_connection_failures_total', { pool: 'journal' })).toBe(4);
  });

  it('answers liveness always and readiness only when ready', async () => {
    const status = async (path: string) => (await fetch(`http://127.0.0.1:${http.port}${path}`)).status;
    expect(await status('/healthz')).toBe(200);
    expect(await status('/readyz')).toBe(503);
    ready = true;
    expect(await status('/readyz')).toBe(200);
    expect(await status('/nope')).toBe(404);
  });
});
