import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { createJournal, type Journal } from '@chiefofstate/journal';
import { createDatabase, type Database } from '@chiefofstate/postgres';
import { testPostgresConnection, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import { ReadSideManagerService } from '@chiefofstate/protocol';
import { createGrpcJsClient, eventPayload, freePort, startProcess, type GrpcJsClient, type RunningProcess } from '@chiefofstate/testing';
import type { HandlerCall, Rule } from './read-side-handler.js';

export type { HandlerCall, Rule } from './read-side-handler.js';
export { eventPayload, freePort, type RunningProcess } from '@chiefofstate/testing';

export const APP_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const NUM_SHARDS = 8;

/** The test read-side handler in its own process, answering as `rules` (rewritable) say. */
export async function startHandler(rulesFile: string): Promise<
  RunningProcess & { port: number; calls(): HandlerCall[]; setRules(rules: Rule[]): void }
> {
  writeFileSync(rulesFile, '[]');
  const handler = startProcess(
    process.execPath,
    ['--import', 'tsx', `${APP_ROOT}/test/support/read-side-handler.ts`],
    { PORT: '0', RULES_FILE: rulesFile, NODE_OPTIONS: '--conditions=@chiefofstate/source' },
    { cwd: APP_ROOT },
  );
  const match = await handler.waitFor(/listening (\d+)/);
  return Object.assign(handler, {
    port: Number(match[1]),
    calls: () =>
      handler
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{') && line.endsWith('}'))
        .map((line) => JSON.parse(line) as HandlerCall),
    setRules: (rules: Rule[]) => writeFileSync(rulesFile, JSON.stringify(rules)),
  });
}

export interface ReadSideSpec {
  readonly id: string;
  readonly policy?: 'STOP' | 'SKIP' | 'REPLAY_STOP' | 'REPLAY_SKIP';
  readonly autoStart?: boolean;
}

/** COS_READ_SIDE_CONFIG__<SETTING>__<ID> variables for read sides served by the handler on `port`. */
export function readSidesEnv(port: number, sides: readonly ReadSideSpec[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const side of sides) {
    env[`COS_READ_SIDE_CONFIG__HOST__${side.id}`] = '127.0.0.1';
    env[`COS_READ_SIDE_CONFIG__PORT__${side.id}`] = String(port);
    if (side.policy) env[`COS_READ_SIDE_CONFIG__FAILURE_POLICY__${side.id}`] = side.policy;
    if (side.autoStart === false) env[`COS_READ_SIDE_CONFIG__AUTO_START__${side.id}`] = 'false';
  }
  return env;
}

export interface Readside extends RunningProcess {
  readonly port: number;
  readonly metricsPort: number;
  readonly manager: GrpcJsClient;
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

/** The built cos-readside (the Nx test target builds it first), serving once it says so. */
export async function startReadside(env: Record<string, string>): Promise<Readside> {
  const port = await freePort();
  const metricsPort = await freePort();
  const child = startProcess(
    process.execPath,
    [`${APP_ROOT}/dist/main.js`],
    {
      COS_ADDRESS: '127.0.0.1',
      COS_PORT: String(port),
      COS_METRICS_PORT: String(metricsPort),
      COS_NUM_SHARDS: String(NUM_SHARDS),
      LOG_LEVEL: 'info',
      ...env,
    },
    { cwd: APP_ROOT },
  );
  await child.waitFor(/cos-readside serving/, 60_000);
  const manager = createGrpcJsClient({ service: ReadSideManagerService, address: `127.0.0.1:${port}` });
  return Object.assign(child, {
    port,
    metricsPort,
    manager,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      manager.close();
      return child.kill(signal);
    },
  });
}



/** The test's own connection to the store: the real journal to write events, SQL to look. */
export interface Store {
  readonly database: Database;
  readonly journal: Journal;
  readonly schema: string;
  /** appends `count` events to the entity, one append each, in revision order */
  append(entityId: string, count?: number): Promise<void>;
  /** the entity's latest revision written by this store */
  revision(entityId: string): number;
  /** the highest journal position of each shard */
  latestPositions(): Promise<bigint[]>;
  /** lease owners and how many (read side, shard) streams each holds now */
  leaseOwners(): Promise<Map<string, number>>;
  close(): Promise<void>;
  /** drops the schema */
  dispose(): Promise<void>;
}

export async function openStore(schema: string): Promise<Store> {
  const database = await createDatabase(testPostgresConnection(schema));
  const journal = createJournal({ database, numShards: NUM_SHARDS });
  const revisions = new Map<string, number>();
  return {
    database,
    journal,
    schema,
    async append(entityId, count = 1) {
      for (let i = 0; i < count; i++) {
        const revision = revisions.get(entityId) ?? 0;
        await journal.append({ entityId, expectedRevision: BigInt(revision), events: [eventPayload(entityId, revision + 1)] });
        revisions.set(entityId, revision + 1);
      }
    },
    revision: (entityId) => revisions.get(entityId) ?? 0,
    latestPositions: () => Promise.all(Array.from({ length: NUM_SHARDS }, (_, shard) => journal.latestPosition(shard))),
    async leaseOwners() {
      const { rows } = await sql<{ owner: string; n: number }>`
        SELECT owner, count(*)::int AS n FROM cos_stream_leases WHERE expires_at > now() GROUP BY owner`.execute(database.kysely);
      return new Map(rows.map((row) => [row.owner, row.n]));
    },
    close: () => database.close(),
    async dispose() {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(database.kysely).catch(() => {});
      await database.close();
    },
  };
}

export function newSchema(): string {
  return uniqueSchemaName('rs');
}

/** Waits until `condition()` holds, polling. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The revisions each entity received on a read side, in arrival order. */
export function revisionsOf(calls: readonly HandlerCall[], readSideId: string, answered?: HandlerCall['a']): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const call of calls) {
    if (call.r !== readSideId || (answered !== undefined && call.a !== answered)) continue;
    const list = map.get(call.e) ?? [];
    list.push(call.v);
    map.set(call.e, list);
  }
  return map;
}
