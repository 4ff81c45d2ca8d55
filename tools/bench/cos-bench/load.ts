// The benchmark's load generator: a stock @grpc/grpc-js client in its own process, driven over
// IPC by cos-bench.ts. Closed loop: each caller sends its next ProcessCommand as soon as the
// previous one answered. Requests are encoded once up front so the client spends its CPU on gRPC,
// not on protobuf, and answers are not decoded (only their status counts).
import { randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { ChiefOfStateService, ProcessCommandRequestSchema } from '@chiefofstate/protocol';

export interface LoadRequest {
  readonly id: number;
  /**
   * host:port of a ChiefOfStateService, or several (replicas): caller i calls the (i mod n)th,
   * so the callers are split evenly between them, round robin over the same entities
   */
  readonly target: string | readonly string[];
  readonly callers: number;
  /** entity ids are `${prefix}${i}` for i in [0, count) */
  readonly prefix: string;
  readonly count: number;
  /**
   * timed: round robin over the entities for warmupMs, then measured for durationMs;
   * once: one command per entity, then done (measured throughout)
   */
  readonly mode: 'timed' | 'once';
  readonly warmupMs: number;
  readonly durationMs: number;
  /** send a fresh sampled W3C `traceparent` with every call, so a tracing server traces it */
  readonly traceparent?: boolean;
  /** call over TLS, trusting this CA (PEM); the server's certificate must name localhost */
  readonly tlsCa?: string;
  /** send a fresh `x-cos-idempotency-key` with every call (its cost: --idempotency-cost) */
  readonly idempotencyKeys?: boolean;
  /**
   * call the HTTP/JSON front end at `target` instead (--http-cost): POST
   * /v1/commands/{id}/process with the command as base64, over HTTP/1.1 keep-alive connections
   */
  readonly http?: boolean;
}

export interface LoadResult {
  readonly id: number;
  /** calls answered OK inside the measured window */
  readonly ok: number;
  /** every call answered, warm-up included */
  readonly completed: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU this process used in the measured window, ms */
  readonly clientCpuMs: number;
}

const COMMAND = create(AnySchema, { typeUrl: 'type.googleapis.com/bench.v1.Increment', value: new Uint8Array([1]) });
const path = `/${ChiefOfStateService.typeName}/ProcessCommand`;
const identity = (value: Buffer) => value;
const Client = grpc.makeGenericClientConstructor(
  {
    processCommand: {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  'ChiefOfStateService',
);
type Unary = (
  request: Buffer,
  metadata: grpc.Metadata,
  callback: (error: grpc.ServiceError | null, response?: Buffer) => void,
) => void;

// Trace and span ids only need to be unique, not unpredictable: a counter in a random-prefixed
// id keeps the client's cost per call small.
const tracePrefix = randomBytes(8).toString('hex');
let traceCounter = 0;
function tracedMetadata(): grpc.Metadata {
  const n = (++traceCounter).toString(16).padStart(16, '0');
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', `00-${tracePrefix}${n}-${n}-01`);
  return metadata;
}

// Keys only need to be unique: a counter after a random prefix.
const keyPrefix = randomBytes(8).toString('hex');
let keyCounter = 0;
function withKey(metadata: grpc.Metadata): grpc.Metadata {
  metadata.set('x-cos-idempotency-key', `${keyPrefix}-${(++keyCounter).toString(36)}`);
  return metadata;
}

const clients = new Map<string, Unary>();
function clientFor(target: string, tlsCa: string | undefined): Unary {
  const key = `${tlsCa === undefined ? 'h2c' : 'tls'}:${target}`;
  let call = clients.get(key);
  if (call === undefined) {
    const client =
      tlsCa === undefined
        ? new Client(target, grpc.credentials.createInsecure())
        : new Client(target, grpc.credentials.createSsl(Buffer.from(tlsCa)), { 'grpc.ssl_target_name_override': 'localhost' });
    const method = (client as unknown as Record<string, Unary>)['processCommand']!;
    call = method.bind(client);
    clients.set(key, call);
  }
  return call;
}

const encoded = new Map<string, Buffer[]>();
function requestsFor(prefix: string, count: number): Buffer[] {
  const key = `${prefix}\u0000${count}`;
  let requests = encoded.get(key);
  if (requests === undefined) {
    requests = new Array<Buffer>(count);
    for (let i = 0; i < count; i++) {
      requests[i] = Buffer.from(
        toBinary(ProcessCommandRequestSchema, create(ProcessCommandRequestSchema, { entityId: `${prefix}${i}`, command: COMMAND })),
      );
    }
    encoded.set(key, requests);
  }
  return requests;
}

/** HTTP/JSON: the path and the body of each entity's command, encoded once. */
const httpEncoded = new Map<string, Array<{ path: string; body: Buffer }>>();
function httpRequestsFor(prefix: string, count: number): Array<{ path: string; body: Buffer }> {
  const key = `${prefix}\u0000${count}`;
  let requests = httpEncoded.get(key);
  if (requests === undefined) {
    const body = Buffer.from(JSON.stringify({ command: Buffer.from(toBinary(AnySchema, COMMAND)).toString('base64') }));
    requests = Array.from({ length: count }, (_, i) => ({ path: `/v1/commands/${encodeURIComponent(`${prefix}${i}`)}/process`, body }));
    httpEncoded.set(key, requests);
  }
  return requests;
}

/** one keep-alive connection per caller at most; the answer's body is read, not decoded */
const agent = new Agent({ keepAlive: true });
function httpCall(target: string): (request: { path: string; body: Buffer }) => Promise<string | undefined> {
  const colon = target.lastIndexOf(':');
  const host = target.slice(0, colon);
  const port = Number(target.slice(colon + 1));
  return ({ path, body }) =>
    new Promise((resolve) => {
      const sent = httpRequest(
        { host, port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.byteLength } },
        (response) => {
          response.resume();
          response.once('end', () => resolve(response.statusCode === 200 ? undefined : `HTTP ${response.statusCode}`));
        },
      );
      sent.once('error', (error) => resolve(String(error)));
      sent.end(body);
    });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function run(request: LoadRequest): Promise<LoadResult> {
  const targets = typeof request.target === 'string' ? [request.target] : request.target;
  const calls = targets.map((target) => clientFor(target, request.tlsCa));
  const httpCalls = request.http ? targets.map(httpCall) : [];
  const requests = request.http ? [] : requestsFor(request.prefix, request.count);
  const httpRequests = request.http ? httpRequestsFor(request.prefix, request.count) : [];
  const timed = request.mode === 'timed';
  const latencies: number[] = [];
  let ok = 0;
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const t0 = performance.now();
  const windowStart = timed ? t0 + request.warmupMs : t0;
  const windowEnd = timed ? windowStart + request.durationMs : Infinity;
  let cpuAtStart = timed ? undefined : process.cpuUsage();
  const warmupTimer = timed ? setTimeout(() => (cpuAtStart = process.cpuUsage()), request.warmupMs) : undefined;

  const caller = async (_: unknown, c: number) => {
    const call = calls[c % calls.length]!;
    const viaHttp = httpCalls[c % Math.max(1, httpCalls.length)];
    for (;;) {
      const started = performance.now();
      if (started >= windowEnd) return;
      let index: number;
      if (timed) index = next++ % request.count;
      else if (next < request.count) index = next++;
      else return;
      let failed: string | undefined;
      if (viaHttp) {
        failed = await viaHttp(httpRequests[index]!);
      } else {
        let metadata = request.traceparent ? tracedMetadata() : new grpc.Metadata();
        if (request.idempotencyKeys) metadata = withKey(metadata);
        const outcome = await new Promise<grpc.ServiceError | null>((resolve) => call(requests[index]!, metadata, (error) => resolve(error)));
        failed = outcome ? `${grpc.status[outcome.code]}: ${outcome.details}` : undefined;
      }
      const finished = performance.now();
      completed++;
      if (finished < windowStart || finished > windowEnd) continue;
      if (failed !== undefined) {
        errors++;
        firstError ??= failed;
      } else {
        ok++;
        latencies.push(finished - started);
      }
    }
  };
  await Promise.all(Array.from({ length: request.callers }, caller));
  clearTimeout(warmupTimer);
  const cpu = process.cpuUsage(cpuAtStart);
  const seconds = timed ? request.durationMs / 1000 : (performance.now() - t0) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    id: request.id,
    ok,
    completed,
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
    seconds,
    perSecond: ok / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
    clientCpuMs: (cpu.user + cpu.system) / 1000,
  };
}

if (process.send) {
  process.on('message', (message: LoadRequest | 'exit') => {
    if (message === 'exit') process.exit(0);
    void run(message).then(
      (result) => process.send!(result),
      (error: unknown) => process.send!({ id: message.id, fatal: String(error) }),
    );
  });
  process.send('ready');
}
