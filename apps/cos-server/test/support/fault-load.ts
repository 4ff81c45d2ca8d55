import { create, fromBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { ChiefOfStateService, EventWrapperSchema, ProcessCommandRequestSchema } from '@chiefofstate/protocol';
import type { OwnPostgres, RunningProcess } from '@chiefofstate/testing';
import { command, type CosFixture, type CosTestStore } from './cos-fixture.js';

/**
 * Load and bookkeeping for the fault-injection suite: callers sending commands that each carry a
 * unique marker (the event's name), every outcome recorded with its timing, and a judge that
 * holds the outcomes against the journal table. The server's deadline is sent as the
 * `grpc-timeout` header without a client-side deadline, so the time to an answer is the
 * server's, not grpc-js's own timer; a watchdog cuts a call the server never answers.
 */

const decoder = new TextDecoder();

/** A PostgreSQL the test owns, as the store of cos-server fixtures. */
export function ownStore(server: OwnPostgres): CosTestStore {
  return {
    cosEnv: (schema) => server.cosEnv(schema),
    connection: () => ({ host: server.host, port: server.port, user: server.user, database: server.database }),
  };
}

export interface CallOutcome {
  readonly marker: string;
  readonly entityId: string;
  readonly startedAt: number;
  readonly deadlineAt: number;
  readonly endedAt: number;
  /** 'OK', a gRPC status name, or 'NO_ANSWER' when the watchdog cut the call */
  readonly status: string;
  readonly revision?: number;
  readonly details?: string;
}

export interface LoadOptions {
  /** prefix of every marker: names the scenario */
  readonly name: string;
  readonly entities: readonly string[];
  /** concurrent callers (default 8) */
  readonly callers?: number;
  /** the deadline each call sends, ms (default 3000) */
  readonly deadlineMs?: number;
  /** how long past its deadline a call may go unanswered before the watchdog cuts it, ms (default 5000) */
  readonly watchdogMs?: number;
}

export interface MarkedLoad {
  readonly outcomes: readonly CallOutcome[];
  acks(): number;
  /** the first call started at or after `at` that succeeded */
  firstSuccessAfter(at: number): CallOutcome | undefined;
  stop(): Promise<void>;
}

export function startMarkedLoad(target: CosFixture, options: LoadOptions): MarkedLoad {
  const deadlineMs = options.deadlineMs ?? 3000;
  const watchdogMs = options.watchdogMs ?? 5000;
  const outcomes: CallOutcome[] = [];
  let acks = 0;
  let running = true;

  const call = async (entityId: string, marker: string): Promise<CallOutcome> => {
    const metadata = new grpc.Metadata();
    metadata.set('grpc-timeout', `${deadlineMs}m`);
    const startedAt = Date.now();
    const abort = new AbortController();
    const watchdog = setTimeout(() => abort.abort(), deadlineMs + watchdogMs);
    const base = { marker, entityId, startedAt, deadlineAt: startedAt + deadlineMs };
    try {
      const request = create(ProcessCommandRequestSchema, { entityId, command: command('Emit', { events: [marker] }) });
      const { response } = await target.client.unary(ChiefOfStateService.method.processCommand, request, { metadata, signal: abort.signal });
      return { ...base, endedAt: Date.now(), status: 'OK', revision: Number(response.meta?.revisionNumber ?? -1) };
    } catch (error) {
      const { code, details } = error as grpc.ServiceError;
      const status = abort.signal.aborted ? 'NO_ANSWER' : (grpc.status[code] ?? String(code));
      return { ...base, endedAt: Date.now(), status, details };
    } finally {
      clearTimeout(watchdog);
    }
  };

  const caller = async (c: number) => {
    for (let i = 0; running; i++) {
      const entityId = options.entities[(c * 5 + i * 3) % options.entities.length]!;
      const outcome = await call(entityId, `${options.name}-c${c}-${i}`);
      outcomes.push(outcome);
      if (outcome.status === 'OK') acks++;
      // a failing server answers at once: do not spin
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const done = Promise.all(Array.from({ length: options.callers ?? 8 }, (_, c) => caller(c)));
  return {
    outcomes,
    acks: () => acks,
    firstSuccessAfter: (at) => outcomes.filter((o) => o.status === 'OK' && o.startedAt >= at).sort((a, b) => a.endedAt - b.endedAt)[0],
    async stop() {
      running = false;
      await done;
    },
  };
}

export interface JournalRow {
  readonly entityId: string;
  readonly revision: number;
  /** the event's name: the marker of the command that produced it */
  readonly marker: string;
}

export async function readJournal(store: CosTestStore, schema: string): Promise<JournalRow[]> {
  const client = new pg.Client({ ...store.connection(schema), connectionTimeoutMillis: 10_000, query_timeout: 20_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    const result = await client.query<{ entity_id: string; revision: string; payload: Buffer }>(
      `select entity_id, revision, payload from ${pg.escapeIdentifier(schema)}.cos_journal order by entity_id, revision`,
    );
    return result.rows.map((row) => {
      const wrapper = fromBinary(EventWrapperSchema, row.payload);
      const event = JSON.parse(decoder.decode(wrapper.event?.value ?? new Uint8Array())) as { name?: string };
      return { entityId: row.entity_id, revision: Number(row.revision), marker: event.name ?? '' };
    });
  } finally {
    await client.end().catch(() => {});
  }
}

/** Statuses a fault may produce; anything else (INTERNAL...) is a bug. */
const EXPECTED = new Set(['OK', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'UNKNOWN', 'DEADLINE_EXCEEDED']);
/** Statuses that promise nothing was written. */
const NOT_PERSISTED = new Set(['UNAVAILABLE', 'RESOURCE_EXHAUSTED']);

export interface Verdict {
  readonly problems: string[];
  readonly figures: Record<string, unknown>;
}

/**
 * Holds the outcomes against the journal: an acknowledged command's event is there exactly once
 * at the acknowledged revision; one refused as UNAVAILABLE or RESOURCE_EXHAUSTED is not there; one
 * whose outcome is unknown is there at most once; every entity's revisions run 1..n; and no call
 * went unanswered more than `maxOverrunMs` past its deadline.
 */
export function judge(outcomes: readonly CallOutcome[], journal: readonly JournalRow[], maxOverrunMs = 1000): Verdict {
  const problems: string[] = [];
  const report = (kind: string, items: string[]) => {
    if (items.length > 0) problems.push(`${kind}: ${items.length} (${items.slice(0, 5).join('; ')}${items.length > 5 ? '; ...' : ''})`);
  };
  const byMarker = new Map<string, JournalRow[]>();
  for (const row of journal) byMarker.set(row.marker, [...(byMarker.get(row.marker) ?? []), row]);

  const overrun = (o: CallOutcome) => o.endedAt - o.deadlineAt;
  const overruns = outcomes.filter((o) => overrun(o) > maxOverrunMs).sort((a, b) => overrun(b) - overrun(a));
  report(
    `calls answered more than ${maxOverrunMs} ms past their deadline (or never)`,
    overruns.map((o) => `${o.marker} ${o.status} sent ${clock(o.startedAt)}, +${overrun(o)} ms`),
  );
  report('unexpected statuses', outcomes.filter((o) => !EXPECTED.has(o.status) && o.status !== 'NO_ANSWER').map((o) => `${o.marker} ${o.status}: ${o.details}`));

  const lost: string[] = [];
  const misplaced: string[] = [];
  const refusedButWritten: string[] = [];
  const twice: string[] = [];
  for (const o of outcomes) {
    const rows = byMarker.get(o.marker) ?? [];
    if (rows.length > 1) twice.push(`${o.marker} ${o.status} x${rows.length}`);
    if (o.status === 'OK') {
      if (rows.length === 0) lost.push(`${o.marker} (${o.entityId} revision ${o.revision})`);
      else if (rows[0]!.entityId !== o.entityId || rows[0]!.revision !== o.revision) {
        misplaced.push(`${o.marker} acknowledged ${o.entityId}@${o.revision}, journal ${rows[0]!.entityId}@${rows[0]!.revision}`);
      }
    } else if (NOT_PERSISTED.has(o.status) && rows.length > 0) {
      refusedButWritten.push(`${o.marker} ${o.status} "${o.details}" is ${o.entityId}@${rows[0]!.revision}`);
    }
  }
  report('acknowledged commands missing from the journal', lost);
  report('acknowledged commands at another revision', misplaced);
  report('commands in the journal more than once', twice);
  report('commands refused as not persisted that are in the journal', refusedButWritten);

  const sent = new Set(outcomes.map((o) => o.marker));
  report('journal events no call sent', journal.filter((row) => !sent.has(row.marker)).map((row) => `${row.entityId}@${row.revision} ${row.marker}`));
  const gaps: string[] = [];
  const revisions = new Map<string, number[]>();
  for (const row of journal) revisions.set(row.entityId, [...(revisions.get(row.entityId) ?? []), row.revision]);
  for (const [entityId, list] of revisions) {
    if (list.some((revision, i) => revision !== i + 1)) gaps.push(`${entityId}: ${list.join(',')}`);
  }
  report('entities whose revisions are not 1..n', gaps);

  const byStatus: Record<string, number> = {};
  for (const o of outcomes) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
  return {
    problems,
    figures: {
      calls: outcomes.length,
      acks: byStatus['OK'] ?? 0,
      byStatus,
      maxOverrunMs: Math.max(0, ...outcomes.map(overrun)),
      // the latest answers past the deadline, with their statuses
      topOverruns: outcomes
        .filter((o) => overrun(o) > 0)
        .sort((a, b) => overrun(b) - overrun(a))
        .slice(0, 5)
        .map((o) => `${o.status} +${overrun(o)}`),
      failedButInJournal: outcomes.filter((o) => o.status !== 'OK' && byMarker.has(o.marker)).length,
      // how fast failures came: a server that fails fast answers within milliseconds
      failureLatencyMs: percentiles(outcomes.filter((o) => o.status !== 'OK').map((o) => o.endedAt - o.startedAt)),
      failureMessages: failureMessages(outcomes),
      journalRows: journal.length,
    },
  };
}

/** Per failure status, its distinct messages (up to 3, shortened, ids replaced by '…') and their counts. */
function failureMessages(outcomes: readonly CallOutcome[]): Record<string, Record<string, number>> {
  const messages: Record<string, Record<string, number>> = {};
  for (const o of outcomes) {
    if (o.status === 'OK') continue;
    const message = (o.details ?? '').replace(/"[^"]*"/g, '…').slice(0, 100);
    const byMessage = (messages[o.status] ??= {});
    if (message in byMessage || Object.keys(byMessage).length < 3) byMessage[message] = (byMessage[message] ?? 0) + 1;
  }
  return messages;
}

/** p50, p90 and max of the values, or undefined when there are none. */
function percentiles(values: number[]): { p50: number; p90: number; max: number } | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50: at(0.5), p90: at(0.9), max: sorted.at(-1)! };
}

/** A time of day (UTC) to the millisecond, to match against the servers' logs. */
export function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

/** The exit of a process, as soon as it happens (undefined while it runs). */
export function exitOf(process: RunningProcess): () => number | NodeJS.Signals | undefined {
  let value: number | NodeJS.Signals | undefined;
  void process.exited.then((v) => (value = v));
  return () => value;
}

/** Waits until `condition` holds or `timeoutMs` passes; resolves with whether it held. */
export async function within(timeoutMs: number, condition: () => boolean | Promise<boolean>, intervalMs = 25): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= until) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Lines of a process's output worth showing when it died: errors, and the last few lines. */
export function lastWords(output: string, lines = 8): string {
  const all = output
    .trimEnd()
    .split('\n')
    .map((line) => (line.length > 300 ? `${line.slice(0, 300)}...` : line));
  const errors = all.filter((line) => /error|unhandled|fatal/i.test(line)).slice(-lines);
  return [...errors, '--- last lines:', ...all.slice(-lines)].join('\n');
}
