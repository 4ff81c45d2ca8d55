import { create, fromBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import type * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import {
  ChiefOfStateService,
  EventWrapperSchema,
  GetStateRequestSchema,
  ProcessCommandRequestSchema,
  type EventWrapper,
  type GetStateResponse,
  type ProcessCommandResponse,
} from '@chiefofstate/protocol';
import { testPostgresConnection, testPostgresEnv, uniqueSchemaName } from '@chiefofstate/postgres/testing';
import { createGrpcJsClient, type GrpcJsClient, type GrpcJsUnaryResult } from '@chiefofstate/testing';
import { freePort, startCosServerProcess, type RunningProcess } from './processes.js';
import type { TestState } from './test-write-handler.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function command(verb: string, args: Record<string, unknown> = {}): Any {
  return create(AnySchema, { typeUrl: `type.googleapis.com/cos.test.${verb}`, value: encoder.encode(JSON.stringify(args)) });
}

export function stateOf(any: Any | undefined): TestState {
  return JSON.parse(decoder.decode(any?.value ?? new Uint8Array())) as TestState;
}

export interface CosFixture {
  readonly server: RunningProcess;
  readonly port: number;
  /** the operations HTTP port: /metrics, /healthz, /readyz */
  readonly metricsPort: number;
  readonly schema: string;
  readonly client: GrpcJsClient;
  send(
    entityId: string,
    cmd: Any | undefined,
    options?: { metadata?: grpc.Metadata; deadlineMs?: number },
  ): Promise<GrpcJsUnaryResult<ProcessCommandResponse>>;
  getState(entityId: string): Promise<GrpcJsUnaryResult<GetStateResponse>>;
  /** the entity's journal rows, decoded */
  journal(entityId: string): Promise<Array<{ revision: bigint; wrapper: EventWrapper }>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** drops the schema */
  dispose(): Promise<void>;
}

/** The PostgreSQL a fixture runs on: the shared test server, or one the test owns (startOwnPostgres). */
export interface CosTestStore {
  /** the COS_POSTGRES_* environment of a schema */
  cosEnv(schema: string): Record<string, string>;
  connection(schema: string): pg.PoolConfig;
}

export const sharedTestStore: CosTestStore = { cosEnv: testPostgresEnv, connection: testPostgresConnection };

/**
 * Starts the built cos-server on the real PostgreSQL, in a schema of its own, and waits for the
 * log line `started` (default: the one saying it serves).
 */
export async function startCos(
  env: Record<string, string>,
  schema = uniqueSchemaName('e2e'),
  started: RegExp = /chief-of-state serving/,
  store: CosTestStore = sharedTestStore,
): Promise<CosFixture> {
  const db = store.connection(schema);
  const port = await freePort();
  const metricsPort = await freePort();
  const server = startCosServerProcess({
    COS_PORT: String(port),
    COS_METRICS_PORT: String(metricsPort),
    COS_ADDRESS: '127.0.0.1',
    ...store.cosEnv(schema),
    ...env,
  });
  await server.waitFor(started);
  const client = createGrpcJsClient({ service: ChiefOfStateService, address: `127.0.0.1:${port}` });
  const pool = new pg.Pool({ ...db, max: 2 });
  // an idle connection cut by a fault test's restart is no failure of the test
  pool.on('error', () => {});
  return {
    server,
    port,
    metricsPort,
    schema,
    client,
    send: (entityId, cmd, options = {}) =>
      client.unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId, ...(cmd ? { command: cmd } : {}) }), {
        ...(options.metadata ? { metadata: options.metadata } : {}),
        ...(options.deadlineMs !== undefined ? { deadline: Date.now() + options.deadlineMs } : {}),
      }),
    getState: (entityId) =>
      client.unary(ChiefOfStateService.method.getState, create(GetStateRequestSchema, { entityId })),
    async journal(entityId) {
      const result = await pool.query<{ revision: string; payload: Buffer }>(
        `select revision, payload from ${pg.escapeIdentifier(schema)}.cos_journal where entity_id = $1 order by revision`,
        [entityId],
      );
      return result.rows.map((row) => ({ revision: BigInt(row.revision), wrapper: fromBinary(EventWrapperSchema, row.payload) }));
    },
    async stop(signal = 'SIGTERM') {
      client.close();
      await server.kill(signal);
    },
    async dispose() {
      client.close();
      await server.kill('SIGKILL');
      await pool.query(`drop schema if exists ${pg.escapeIdentifier(schema)} cascade`);
      await pool.end();
    },
  };
}

/** Awaits a call that must fail; returns its gRPC error. */
export async function failure(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: unknown) => error as grpc.ServiceError,
  );
}
