import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Read at scrape time, so nothing is computed between scrapes. */
export interface MetricsSources {
  /** entity runtime: active entities now, passivated since start, bytes of their cached states */
  entities?: () => { active: number; passivated: number; cacheBytes?: number };
  /** read-side streams: position lag and whether the shard is stopped */
  readSides?: () =>
    | Promise<ReadonlyArray<ReadSideShardSample>>
    | ReadonlyArray<ReadSideShardSample>;
  /** entity shards this replica owns now (several replicas on one database split them) */
  entityShards?: () => number;
  /** database pools by name (store, leases, offsets) */
  pools?: () => ReadonlyArray<PoolSample>;
  /** open subscriptions by kind (`entity`: Subscribe, `all`: SubscribeAll) */
  subscriptions?: () => { readonly entity: number; readonly all: number };
  /** the circuit breakers around handler calls (COS_WRITE_SIDE_BREAKER_*, COS_READ_SIDE_BREAKER_*) */
  breakers?: () => ReadonlyArray<BreakerSample>;
}

export interface BreakerSample {
  /** `write_side`, or `read_side:<id>` */
  readonly handler: string;
  readonly state: 'closed' | 'open' | 'half_open';
  /** times opened since start */
  readonly opened: number;
  /** calls refused at once since start */
  readonly rejected: number;
}

const BREAKER_STATES = ['closed', 'open', 'half_open'] as const;

export interface PoolSample {
  readonly pool: string;
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  /** whether the database answers (false while it is known unreachable) */
  readonly available?: boolean;
  /** connections lost, statements timed out client-side, connects failed, since start */
  readonly connectionFailures?: number;
}

export interface ReadSideShardSample {
  readonly readSideId: string;
  readonly shard: number;
  /** journal positions between the shard's newest event and its committed offset */
  readonly lag: number;
  readonly stopped: boolean;
  readonly paused: boolean;
}

export interface CosMetricsOptions {
  readonly sources?: MetricsSources;
  /** process and Node.js runtime metrics (CPU, memory, event loop); default true */
  readonly defaultMetrics?: boolean;
}

export interface CosMetrics {
  readonly registry: Registry;
  /** counts and times every served call: cos_grpc_server_* */
  readonly serverInterceptor: Interceptor;
  /** times every call to the user's handlers: cos_handler_call_duration_seconds */
  readonly handlerInterceptor: Interceptor;
  /** one journal transaction: its events and how long it took */
  observeJournalBatch(events: number, seconds: number): void;
  /** one HandleReadSide delivery and its outcome (`success`, `failure`, `skipped`) */
  observeReadSideDelivery(readSideId: string, seconds: number, outcome: string): void;
  /**
   * one ProcessCommand or GetState for another replica's shard: sent on to its owner
   * (`forwarded`); the owner refused the connection, refused the call having done nothing, or
   * none is known (`owner_unreachable`, `owner_refused`, `no_owner`: a GetState read here, a
   * command waiting or refused); a forwarding mark without a
   * valid proof, refused (`unauthenticated`)
   */
  observeRoute(method: string, outcome: string): void;
  /**
   * one command refused by a bound: `entity_mailbox`, `in_flight_commands`, `journal_queue`
   * (RESOURCE_EXHAUSTED, nothing done) or `message_too_large` (its state would not fit in a message)
   */
  observeRefusal(reason: string): void;
  /**
   * retry-safe commands (x-cos-idempotency-key): `replayed`, commands answered with the outcome
   * recorded for their key, without running; `stored`, keys recorded; `reused`, commands refused
   * for reusing a key with another body; `expired`, keys removed after the retention window
   */
  observeIdempotency(event: 'replayed' | 'stored' | 'reused' | 'expired', count: number): void;

  /**
   * one event sent to a subscriber: its kind (`entity`, `all`), where it was read (`tail`: the
   * shared newest events; `journal`: the subscriber's own read, behind or catching up) and the
   * seconds since the event was written
   */
  observeSubscriptionEvent(kind: string, source: string, lagSeconds: number): void;
  /** the sources sampled at scrape time; settable after creation, for late-built parts */
  setSources(sources: MetricsSources): void;
  /** Prometheus text format */
  scrape(): Promise<string>;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function codeName(code: Code | 0): string {
  return code === 0 ? 'OK' : Code[code].replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

function statusOf(error: unknown): string {
  return codeName(ConnectError.from(error).code);
}

/** The instruments of one COS process, in a registry of its own. */
export function createMetrics(options: CosMetricsOptions = {}): CosMetrics {
  const registry = new Registry();
  let sources: MetricsSources = options.sources ?? {};
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const serverCalls = new Counter({
    name: 'cos_grpc_server_handled_total',
    help: 'gRPC calls served by COS, by service, method and status code',
    labelNames: ['service', 'method', 'code'] as const,
    registers: [registry],
  });
  const serverLatency = new Histogram({
    name: 'cos_grpc_server_handling_seconds',
    help: 'time to serve a gRPC call (ProcessCommand: until the events are committed)',
    labelNames: ['service', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const handlerLatency = new Histogram({
    name: 'cos_handler_call_duration_seconds',
    help: "calls to the user's handlers (HandleCommand, HandleEvent, HandleReadSide), by method and status code",
    labelNames: ['method', 'code'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const journalWrite = new Histogram({
    name: 'cos_journal_write_duration_seconds',
    help: 'one group-commit journal transaction, from send to commit',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const journalBatch = new Histogram({
    name: 'cos_journal_batch_events',
    help: 'events written by one group-commit journal transaction',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    registers: [registry],
  });
  const readSideDelivery = new Histogram({
    name: 'cos_read_side_delivery_duration_seconds',
    help: 'one event delivered to a read side, by outcome',
    labelNames: ['read_side', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  new Gauge({
    name: 'cos_entities_active',
    help: 'entities held in memory',
    registers: [registry],
    collect() {
      const stats = sources.entities?.();
      if (stats) this.set(stats.active);
    },
  });
  new Gauge({
    name: 'cos_entity_cache_bytes',
    help: 'serialized bytes of the entity states and metas held in memory (bounded by COS_ENTITY_CACHE_MAX_BYTES)',
    registers: [registry],
    collect() {
      const bytes = sources.entities?.().cacheBytes;
      if (bytes !== undefined) this.set(bytes);
    },
  });
  const refusals = new Counter({
    name: 'cos_commands_refused_total',
    help: 'commands refused by a bound, by reason: entity_mailbox, in_flight_commands, journal_queue, message_too_large',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // ---- retry-safe commands ----
  const idempotency = {
    replayed: new Counter({
      name: 'cos_idempotent_replays_total',
      help: 'commands answered with the outcome recorded for their idempotency key, without running again',
      registers: [registry],
    }),
    stored: new Counter({
      name: 'cos_idempotency_keys_stored_total',
      help: 'idempotency keys recorded with their commands\' outcomes',
      registers: [registry],
    }),
    reused: new Counter({
      name: 'cos_idempotency_key_reuses_total',
      help: 'commands refused (INVALID_ARGUMENT) for reusing an idempotency key with a different command body',
      registers: [registry],
    }),
    expired: new Counter({
      name: 'cos_idempotency_keys_expired_total',
      help: 'idempotency keys removed after the retention window (COS_IDEMPOTENCY_RETENTION)',
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'cos_entity_shards_owned',
    help: 'entity shards this replica owns (keeps in memory and handles for the other replicas)',
    registers: [registry],
    collect() {
      const owned = sources.entityShards?.();
      if (owned !== undefined) this.set(owned);
    },
  });
  const routed = new Counter({
    name: 'cos_forwarded_calls_total',
    help: "calls for entities of another replica's shard, by outcome: forwarded, owner_unreachable, owner_refused, no_owner (a GetState read here, a command waiting or refused), unauthenticated (a forwarding mark without valid proof, refused)",
    labelNames: ['method', 'outcome'],
    registers: [registry],
  });
  let lastPassivated = 0;
  new Counter({
    name: 'cos_entities_passivated_total',
    help: 'entities passivated (idle or over the cap) since start',
    registers: [registry],
    collect() {
      const stats = sources.entities?.();
      if (stats && stats.passivated > lastPassivated) {
        this.inc(stats.passivated - lastPassivated);
        lastPassivated = stats.passivated;
      }
    },
  });
  // The three read-side gauges share one sample per scrape (prom-client runs their collectors
  // concurrently); the next scrape takes a fresh one.
  let pendingSample: Promise<ReadonlyArray<ReadSideShardSample>> | undefined;
  const readSideSample = () => {
    pendingSample ??= Promise.resolve(sources.readSides?.() ?? []).finally(() =>
      setImmediate(() => (pendingSample = undefined)),
    );
    return pendingSample;
  };
  new Gauge({
    name: 'cos_read_side_lag_positions',
    help: "journal positions between a shard's newest event and the read side's committed offset",
    labelNames: ['read_side', 'shard'] as const,
    registers: [registry],
    async collect() {
      const samples = await readSideSample();
      this.reset();
      for (const s of samples) this.set({ read_side: s.readSideId, shard: String(s.shard) }, s.lag);
    },
  });
  new Gauge({
    name: 'cos_read_side_shards_stopped',
    help: 'shards of a read side stopped by its failure policy',
    labelNames: ['read_side'] as const,
    registers: [registry],
    async collect() {
      const samples = await readSideSample();
      this.reset();
      for (const s of samples) this.inc({ read_side: s.readSideId }, s.stopped ? 1 : 0);
    },
  });
  new Gauge({
    name: 'cos_read_side_shards_paused',
    help: 'shards of a read side paused through the manager API',
    labelNames: ['read_side'] as const,
    registers: [registry],
    async collect() {
      const samples = await readSideSample();
      this.reset();
      for (const s of samples) this.inc({ read_side: s.readSideId }, s.paused ? 1 : 0);
    },
  });
  new Gauge({
    name: 'cos_db_pool_connections',
    help: 'database pool connections by pool and state (total, idle, waiting clients)',
    labelNames: ['pool', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const p of sources.pools?.() ?? []) {
        this.set({ pool: p.pool, state: 'total' }, p.total);
        this.set({ pool: p.pool, state: 'idle' }, p.idle);
        this.set({ pool: p.pool, state: 'waiting' }, p.waiting);
      }
    },
  });
  new Gauge({
    name: 'cos_db_available',
    help: 'whether the database of the pool answers: 1, or 0 while it is known unreachable (calls then fail at once with UNAVAILABLE)',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const p of sources.pools?.() ?? []) if (p.available !== undefined) this.set({ pool: p.pool }, p.available ? 1 : 0);
    },
  });
  new Counter({
    name: 'cos_db_connection_failures_total',
    help: 'database connections lost, statements timed out on the client side, and connects failed, by pool',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect() {
      // the pools count since start; the counter shows their count
      this.reset();
      for (const p of sources.pools?.() ?? []) {
        if (p.connectionFailures !== undefined) this.inc({ pool: p.pool }, p.connectionFailures);
      }
    },
  });

  new Gauge({
    name: 'cos_circuit_breaker_state',
    help: 'state of each circuit breaker around handler calls: 1 for its current state (closed, open, half_open), 0 for the others',
    labelNames: ['handler', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const b of sources.breakers?.() ?? []) {
        for (const state of BREAKER_STATES) this.set({ handler: b.handler, state }, b.state === state ? 1 : 0);
      }
    },
  });
  new Counter({
    name: 'cos_circuit_breaker_opened_total',
    help: 'times a circuit breaker around handler calls opened',
    labelNames: ['handler'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const b of sources.breakers?.() ?? []) this.inc({ handler: b.handler }, b.opened);
    },
  });
  new Counter({
    name: 'cos_circuit_breaker_rejected_total',
    help: 'handler calls refused at once by an open circuit breaker (UNAVAILABLE, nothing sent)',
    labelNames: ['handler'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const b of sources.breakers?.() ?? []) this.inc({ handler: b.handler }, b.rejected);
    },
  });
  new Gauge({
    name: 'cos_subscriptions_active',
    help: 'subscriptions open on this process, by kind (entity: Subscribe, all: SubscribeAll)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const open = sources.subscriptions?.();
      this.reset();
      if (open) for (const kind of ['entity', 'all'] as const) this.set({ kind }, open[kind]);
    },
  });
  const subscriptionEvents = new Counter({
    name: 'cos_subscription_events_total',
    help: 'events sent to subscribers, by kind and source (tail: caught up; journal: read on their own, behind)',
    labelNames: ['kind', 'source'] as const,
    registers: [registry],
  });
  const subscriptionLag = new Histogram({
    name: 'cos_subscription_lag_seconds',
    help: 'from an event being written to it being sent to a subscriber (catch-up included)',
    labelNames: ['kind'] as const,
    buckets: [...LATENCY_BUCKETS, 30, 60, 300],
    registers: [registry],
  });

  /** by kind: its lag child and its events children by source */
  const subscriptionChildren = new Map<
    string,
    { readonly lag: ReturnType<typeof subscriptionLag.labels>; readonly events: Map<string, ReturnType<typeof subscriptionEvents.labels>> }
  >();

  const serverInterceptor: Interceptor = (next) => async (request) => {
    const labels = { service: request.service.typeName, method: request.method.name };
    const end = serverLatency.startTimer(labels);
    try {
      const response = await next(request);
      serverCalls.inc({ ...labels, code: 'OK' });
      return response;
    } catch (error) {
      serverCalls.inc({ ...labels, code: statusOf(error) });
      throw error;
    } finally {
      end();
    }
  };
  const handlerInterceptor: Interceptor = (next) => async (request) => {
    const end = handlerLatency.startTimer({ method: request.method.name });
    try {
      const response = await next(request);
      end({ code: 'OK' });
      return response;
    } catch (error) {
      end({ code: statusOf(error) });
      throw error;
    }
  };

  return {
    registry,
    serverInterceptor,
    handlerInterceptor,
    observeJournalBatch(events, seconds) {
      journalBatch.observe(events);
      journalWrite.observe(seconds);
    },
    observeReadSideDelivery(readSideId, seconds, outcome) {
      readSideDelivery.observe({ read_side: readSideId, outcome }, seconds);
    },
    observeRoute(method, outcome) {
      routed.inc({ method, outcome });
    },
    observeRefusal(reason) {
      refusals.inc({ reason });
    },
    observeIdempotency(event, count) {
      idempotency[event].inc(count);
    },
    observeSubscriptionEvent(kind, source, lagSeconds) {
      // once per delivery, 100,000 times a second with 100 subscribers: the labelled children are
      // looked up once, not hashed from the labels each time
      let children = subscriptionChildren.get(kind);
      if (children === undefined) subscriptionChildren.set(kind, (children = { lag: subscriptionLag.labels({ kind }), events: new Map() }));
      let events = children.events.get(source);
      if (events === undefined) children.events.set(source, (events = subscriptionEvents.labels({ kind, source })));
      events.inc();
      children.lag.observe(lagSeconds);
    },
    setSources(next) {
      sources = next;
    },
    scrape: () => registry.metrics(),
  };
}
