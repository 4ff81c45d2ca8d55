import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, silentLogger, type Logger } from '@chiefofstate/core';
import { DEFAULT_RETRY, type FailurePolicy, type RetryOptions } from './failure-policy.js';
import type {
  JournalReader,
  ListenPort,
  OffsetPort,
  OwnershipPort,
  ReadSideHandlerPort,
  ReleaseReason,
} from './ports.js';
import {
  startStreamWorker,
  type ControlAction,
  type DeliveryOutcome,
  type StreamStats,
  type StreamWorker,
} from './stream-worker.js';

/** The NOTIFY channel of read-side control signals (pause, resume, restart, skip) between processes. */
export const READ_SIDE_CONTROL_CHANNEL = 'cos_read_side_control';

/** One read side the engine runs. */
export interface ReadSideDefinition {
  readonly readSideId: string;
  readonly handler: ReadSideHandlerPort;
  /** deadline of each HandleReadSide call */
  readonly timeoutMs: number;
  readonly failurePolicy: FailurePolicy;
  /** false: its shards start paused (when they have no stored pause flag yet) */
  readonly autoStart: boolean;
  /** its own retries of REPLAY_STOP / REPLAY_SKIP over the engine's (publishers retry without end) */
  readonly retry?: Partial<RetryOptions>;
}

export interface ReadSideEngineOptions {
  readonly readSides: readonly ReadSideDefinition[];
  /** shards of the journal (COS_NUM_SHARDS) */
  readonly numShards: number;
  readonly journal: JournalReader;
  readonly offsets: OffsetPort;
  /** who runs which (read side, shard) stream; @chiefofstate/leases' lease coordinator */
  readonly ownership: OwnershipPort;
  /** LISTEN for the journal's NOTIFY (payload: comma-separated shards); polling alone without it */
  readonly journalNotifications?: { readonly listen: ListenPort; readonly channel: string };
  /** LISTEN on the offsets' database for control signals of managers in other processes */
  readonly controlNotifications?: { readonly listen: ListenPort; readonly channel?: string };
  readonly logger?: Logger;
  /** events read from the journal at once per stream; default 500 */
  readonly batchSize?: number;
  /** how often an idle, paused or stopped stream looks again without a notification; default 1000 ms */
  readonly pollIntervalMs?: number;
  /** retries of REPLAY_STOP / REPLAY_SKIP; defaults in DEFAULT_RETRY */
  readonly retry?: Partial<RetryOptions>;
  /**
   * While a stream keeps delivering, its offset is committed at most this often (each commit
   * covers every event delivered since); at the end of each batch, when idle and at a stop it is
   * committed at once. Default 100 ms: after a crash a stream re-delivers at most about that
   * much. 0 commits after every event (one commit in flight per stream).
   */
  readonly commitIntervalMs?: number;
  /** each delivery attempt's duration and outcome, for metrics */
  readonly onDelivery?: (readSideId: string, seconds: number, outcome: DeliveryOutcome) => void;
}

/** What `status()` reports per (read side, shard): progress, state and metrics-ready counters. */
export interface ReadSideStreamStatus {
  readonly readSideId: string;
  readonly shard: number;
  /** this process runs the stream now */
  readonly owned: boolean;
  /** the committed offset as this process last saw it (0n when never seen) */
  readonly position: bigint;
  readonly paused: boolean;
  readonly stopped: boolean;
  readonly lastError: string | undefined;
  readonly lastErrorAt: Date | undefined;
  readonly delivered: number;
  readonly failures: number;
  readonly skipped: number;
  readonly stops: number;
}

export interface ReadSideEngine {
  readonly numShards: number;
  readonly readSideIds: readonly string[];
  /** identifies this engine in control signals, so it ignores the ones its own manager sent */
  readonly instanceId: string;
  /** Creates missing offset rows, listens, and joins the ownership of streams. */
  start(): Promise<void>;
  /** Every (read side, shard) stream, in read side then shard order. */
  status(): ReadSideStreamStatus[];
  /**
   * Tells this process's streams of a read side (one shard, or all) what the manager did to
   * their stored offsets or pause flags; resume, restart and skip also lift stops.
   */
  control(readSideId: string, shard: number | undefined, action: ControlAction): void;
  /** Stops every stream (each finishes its event and commits), gives up the leases. */
  close(): Promise<void>;
}

const noop = () => {};
const CONTROL_ACTIONS: readonly ControlAction[] = ['pause', 'resume', 'restart', 'skip'];

interface Stream {
  readonly key: string;
  readonly readSide: ReadSideDefinition;
  readonly shard: number;
  readonly stats: StreamStats;
  worker: StreamWorker | undefined;
  stopping: Promise<void> | undefined;
}

/**
 * The read-side engine: for each read side and each shard one ordered stream, run by whichever
 * process holds its lease. Streams progress independently; new events wake their shard's
 * streams through the journal's NOTIFY, and polling covers missed notifications.
 */
export function createReadSideEngine(options: ReadSideEngineOptions): ReadSideEngine {
  const { numShards, journal, offsets, ownership } = options;
  if (!Number.isInteger(numShards) || numShards < 1) throw new InvalidArgumentError(`numShards must be a positive integer, got ${numShards}`);
  const ids = options.readSides.map((side) => side.readSideId);
  const duplicate = ids.find((id, i) => ids.indexOf(id) !== i);
  if (duplicate !== undefined) throw new InvalidArgumentError(`read side ${JSON.stringify(duplicate)} is defined twice`);
  if (ids.some((id) => id.length === 0)) throw new InvalidArgumentError('a read side id must not be empty');
  const logger = options.logger ?? silentLogger;
  const batchSize = options.batchSize ?? 500;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const retry: RetryOptions = { ...DEFAULT_RETRY, ...options.retry };
  const commitIntervalMs = options.commitIntervalMs ?? 100;

  const instanceId = randomUUID();
  const streams = new Map<string, Stream>();
  const byShard: Stream[][] = Array.from({ length: numShards }, () => []);
  const byReadSide = new Map<string, Stream[]>();
  for (const readSide of options.readSides) {
    const list: Stream[] = [];
    for (let shard = 0; shard < numShards; shard++) {
      const stream: Stream = {
        key: `${readSide.readSideId}#${shard}`,
        readSide,
        shard,
        stats: {
          owned: false,
          position: 0n,
          paused: false,
          stopped: false,
          lastError: undefined,
          lastErrorAt: undefined,
          delivered: 0,
          failures: 0,
          skipped: 0,
          stops: 0,
        },
        worker: undefined,
        stopping: undefined,
      };
      streams.set(stream.key, stream);
      byShard[shard]!.push(stream);
      list.push(stream);
    }
    byReadSide.set(readSide.readSideId, list);
  }

  const unsubscribes: (() => Promise<void>)[] = [];
  let closing: Promise<void> | undefined;

  const onJournal = (payload: string) => {
    for (const part of payload.split(',')) {
      const shard = Number(part);
      const list = Number.isInteger(shard) ? byShard[shard] : undefined;
      if (list) for (const stream of list) stream.worker?.wake();
      // an unreadable payload: wake everything rather than miss something
      else if (part !== '') for (const stream of streams.values()) stream.worker?.wake();
    }
  };

  const control = (readSideId: string, shard: number | undefined, action: ControlAction) => {
    const list = byReadSide.get(readSideId);
    if (!list) return;
    for (const stream of shard === undefined ? list : list.filter((s) => s.shard === shard)) {
      if (action !== 'pause') stream.stats.stopped = false;
      stream.worker?.control(action);
    }
  };

  const onControl = (payload: string) => {
    try {
      const signal = JSON.parse(payload) as { r?: unknown; s?: unknown; a?: unknown; o?: unknown };
      if (typeof signal.r !== 'string' || !CONTROL_ACTIONS.includes(signal.a as ControlAction)) return;
      // this process's manager told its engine directly; a second restart would replay twice
      if (signal.o === instanceId) return;
      control(signal.r, typeof signal.s === 'number' ? signal.s : undefined, signal.a as ControlAction);
    } catch {
      // not ours
    }
  };

  const host = {
    acquired(key: string) {
      const stream = streams.get(key);
      if (!stream || closing) return;
      // a stream taken over starts afresh, as on a new owner: a stop of the policy is not kept
      stream.stats.owned = true;
      stream.stats.stopped = false;
      const start = () => {
        stream.worker = startStreamWorker({
          readSideId: stream.readSide.readSideId,
          shard: stream.shard,
          handler: stream.readSide.handler,
          timeoutMs: stream.readSide.timeoutMs,
          failurePolicy: stream.readSide.failurePolicy,
          journal,
          offsets,
          logger,
          batchSize,
          pollIntervalMs,
          retry: stream.readSide.retry ? { ...retry, ...stream.readSide.retry } : retry,
          commitIntervalMs,
          stats: stream.stats,
          onDelivery: options.onDelivery,
        });
        logger.debug({ readSideId: stream.readSide.readSideId, shard: stream.shard }, 'read side stream started');
      };
      // re-acquired while the previous run still winds down: start after it
      if (stream.stopping) void stream.stopping.then(() => stream.stats.owned && !stream.worker && start());
      else start();
    },
    async released(key: string, reason: ReleaseReason) {
      const stream = streams.get(key);
      const worker = stream?.worker;
      if (!stream || !worker) return;
      stream.worker = undefined;
      stream.stats.owned = false;
      const stopping = worker.stop(reason);
      stream.stopping = stopping;
      await stopping;
      if (stream.stopping === stopping) stream.stopping = undefined;
      logger.debug({ readSideId: stream.readSide.readSideId, shard: stream.shard, reason }, 'read side stream released');
    },
  };

  return {
    numShards,
    readSideIds: ids,
    instanceId,

    async start() {
      for (const readSide of options.readSides) {
        await offsets.ensure(readSide.readSideId, numShards, { paused: !readSide.autoStart });
      }
      if (options.journalNotifications) {
        const { listen, channel } = options.journalNotifications;
        unsubscribes.push(await listen(channel, onJournal));
      }
      if (options.controlNotifications) {
        const { listen, channel = READ_SIDE_CONTROL_CHANNEL } = options.controlNotifications;
        unsubscribes.push(await listen(channel, onControl));
      }
      await ownership.start([...streams.keys()], host);
      logger.info({ readSides: ids, shards: numShards }, 'read sides started');
    },

    status() {
      return [...streams.values()].map(({ readSide, shard, stats }) => ({
        readSideId: readSide.readSideId,
        shard,
        owned: stats.owned,
        position: stats.position,
        paused: stats.paused,
        stopped: stats.stopped,
        lastError: stats.lastError,
        lastErrorAt: stats.lastErrorAt,
        delivered: stats.delivered,
        failures: stats.failures,
        skipped: stats.skipped,
        stops: stats.stops,
      }));
    },

    control,

    close() {
      closing ??= (async () => {
        await ownership.close();
        // whatever ownership did not release (it was never started, or failed)
        await Promise.all([...streams.values()].map((stream) => (stream.worker ? host.released(stream.key, 'closing') : stream.stopping)));
        await Promise.all(unsubscribes.map((unsubscribe) => unsubscribe().catch(noop)));
      })();
      return closing;
    },
  };
}

/** The payload of a control signal on READ_SIDE_CONTROL_CHANNEL. */
export function controlPayload(readSideId: string, shard: number | undefined, action: ControlAction, origin?: string): string {
  return JSON.stringify({ r: readSideId, s: shard ?? null, a: action, o: origin ?? null });
}
