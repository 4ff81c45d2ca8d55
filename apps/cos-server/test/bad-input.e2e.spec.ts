// Bad input and HTTP/2 abuse at the gRPC edge, end to end: the built cos-server on the real
// PostgreSQL with a stock grpc-js write handler, called by stock grpc-js and Connect clients and
// by hand-written node:http2 and TCP clients. Every call must end with a clear status in bounded
// time, and the server must keep serving. Calls with `grpc-encoding: gzip` take the Connect
// adapter's path; plain gRPC unary calls take the server's own unary path: both are covered.
import type * as http2 from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { ChiefOfStateService, GetStateRequestSchema, ProcessCommandRequestSchema } from '@chiefofstate/protocol';
import { createGrpcJsClient, decodeRpcStatus, type GrpcJsClient } from '@chiefofstate/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { command, failure, startCos, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';
import { connectRaw, frame, gzipFrame, rawCall, type RawOutcome } from './support/raw-grpc.js';

const PROCESS_COMMAND = '/chief_of_state.v1.ChiefOfStateService/ProcessCommand';
const GET_STATE = '/chief_of_state.v1.ChiefOfStateService/GetState';
const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_HEADER_BYTES = 16 * 1024;
const DAY = 24 * 3600 * 1000;

let counter = 0;
const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${counter++}`;

/** protobuf for `{ entity_id = 1 }` with the id's bytes as given (they need not be UTF-8). */
function entityIdMessage(idBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + idBytes.byteLength);
  out[0] = 0x0a; // field 1, length-delimited
  out[1] = idBytes.byteLength; // < 128 in these tests
  out.set(idBytes, 2);
  return out;
}

/** The two paths a unary gRPC call can take through the edge. */
const PATHS = {
  unary: { headers: {}, framed: (message: Uint8Array) => frame(message) },
  connect: { headers: { 'grpc-encoding': 'gzip' }, framed: (message: Uint8Array) => gzipFrame(message) },
} as const;

describe('the gRPC edge under bad input and HTTP/2 abuse', () => {
  let handler: RunningProcess & { port: number };
  let cos: CosFixture;
  /** grpc-js compressing every call: its calls go through the Connect adapter */
  let gzipClient: GrpcJsClient;
  let connectClient: Client<typeof ChiefOfStateService>;
  let rawSession: http2.ClientHttp2Session | undefined;
  /** a raw connection; a new one when the server closed the last (COS_GRPC_IDLE_TIMEOUT is short here) */
  const raw = async () => {
    if (rawSession === undefined || rawSession.closed || rawSession.destroyed) rawSession = await connectRaw(cos.port);
    return rawSession;
  };
  /**
   * rawCall on the raw connection, once more on a new one when the server closed that one for
   * idleness just as the call started (a GOAWAY in flight; the call was not processed).
   */
  const callRaw = async (call: Parameters<typeof rawCall>[1]): Promise<RawOutcome> => {
    const session = await raw();
    const closed = () => session.closed || session.destroyed;
    try {
      const outcome = await rawCall(session, call);
      if (outcome.status !== undefined || !closed()) return outcome;
    } catch (error) {
      if (!closed()) throw error;
    }
    return rawCall(await raw(), call);
  };
  const knownId = newId('known');

  beforeAll(async () => {
    handler = await startTestHandler();
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_GRPC_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
      COS_GRPC_MAX_HEADER_BYTES: String(MAX_HEADER_BYTES),
      COS_GRPC_MAX_CONCURRENT_STREAMS: '8',
      COS_GRPC_RECEIVE_TIMEOUT: '1',
      COS_GRPC_IDLE_TIMEOUT: '2',
    });
    gzipClient = createGrpcJsClient({
      service: ChiefOfStateService,
      address: `127.0.0.1:${cos.port}`,
      channelOptions: { 'grpc.default_compression_algorithm': 2 /* gzip */ },
    });
    connectClient = createClient(
      ChiefOfStateService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${cos.port}`, httpVersion: '2' }),
    );
    await cos.send(knownId, command('Emit', { events: ['opened'] }));
  }, 60_000);

  afterAll(async () => {
    rawSession?.destroy();
    gzipClient?.close();
    await cos?.dispose();
    await handler?.kill();
  });

  /** The server still serves: a valid call on a fresh stream of the stock client succeeds. */
  async function stillServing(): Promise<void> {
    const { response } = await cos.getState(knownId);
    expect(response.meta?.entityId).toBe(knownId);
  }

  describe('entity ids PostgreSQL cannot store are INVALID_ARGUMENT (not UNAVAILABLE from the store)', () => {
    it('refuses a NUL in the id, on both paths and both methods', async () => {
      const id = `nul\0${newId('id')}`;
      const request = create(ProcessCommandRequestSchema, { entityId: id, command: command('Emit') });
      for (const client of [cos.client, gzipClient]) {
        const processed = await failure(client.unary(ChiefOfStateService.method.processCommand, request));
        expect(processed.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(processed.details).toBe('entity ID contains a NUL character');
        const read = await failure(client.unary(ChiefOfStateService.method.getState, create(GetStateRequestSchema, { entityId: id })));
        expect(read.code).toBe(grpc.status.INVALID_ARGUMENT);
      }
    });

    it('refuses an id that is not UTF-8 on the wire, on both paths', async () => {
      for (const [name, path] of Object.entries(PATHS)) {
        for (const method of [PROCESS_COMMAND, GET_STATE]) {
          const outcome = await callRaw({
            path: method,
            headers: path.headers,
            body: path.framed(entityIdMessage(new Uint8Array([0x61, 0xff, 0xfe, 0x62]))),
          });
          expect(outcome.status, `${name} ${method}`).toBe(grpc.status.INVALID_ARGUMENT);
          expect(outcome.message, `${name} ${method}`).toMatch(/^parse binary: /);
        }
      }
      await stillServing();
    });
  });

  describe('deadlines longer than a Node timer holds (2^31-1 ms, about 24.8 days)', () => {
    it('serves a call with a 30-day deadline from grpc-js, on both paths', async () => {
      for (const client of [cos.client, gzipClient]) {
        const request = create(ProcessCommandRequestSchema, { entityId: newId('long'), command: command('Slow', { ms: 150 }) });
        const { response } = await client.unary(ChiefOfStateService.method.processCommand, request, {
          deadline: Date.now() + 30 * DAY,
        });
        expect(response.meta?.revisionNumber).toBe(1);
      }
    });

    it('serves a call with a 30-day deadline from a Connect client', async () => {
      // The Connect client's own timer would overflow too, so the deadline goes as its header.
      const response = await connectClient.processCommand(
        { entityId: newId('long'), command: command('Slow', { ms: 150 }) },
        { headers: { 'connect-timeout-ms': String(30 * DAY) } },
      );
      expect(response.meta?.revisionNumber).toBe(1);
    });
  });

  it("passes a handler's rich error details through with their type URL, on both paths", async () => {
    const typeUrl = 'example.com/custom/x.v1.Custom';
    for (const client of [cos.client, gzipClient]) {
      const request = create(ProcessCommandRequestSchema, { entityId: newId('fail'), command: command('Fail', { typeUrl }) });
      const error = await failure(client.unary(ChiefOfStateService.method.processCommand, request));
      expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
      const status = decodeRpcStatus(error.metadata.get('grpc-status-details-bin')[0] as Buffer);
      expect(status.details.map((d) => d.typeUrl)).toEqual([typeUrl]);
      expect(status.message).toBe('refused');
    }
  });

  describe('HTTP/2 limits', () => {
    it('refuses request headers over COS_GRPC_MAX_HEADER_BYTES at once, and keeps the connection working', async () => {
      const big = new grpc.Metadata();
      big.set('x-big', 'a'.repeat(2 * MAX_HEADER_BYTES));
      const many = new grpc.Metadata();
      for (let i = 0; i < 200; i++) many.set(`x-h${i}`, 'v');
      for (const metadata of [big, many]) {
        const startedAt = performance.now();
        const error = await failure(cos.send(newId('hdr'), command('Emit'), { metadata, deadlineMs: 20_000 }));
        expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
        expect(performance.now() - startedAt).toBeLessThan(2000);
        await stillServing();
      }
    });

    it('answers a request body that does not arrive within COS_GRPC_RECEIVE_TIMEOUT with DEADLINE_EXCEEDED, on both paths', async () => {
      for (const [name, path] of Object.entries(PATHS)) {
        const whole = path.framed(entityIdMessage(new TextEncoder().encode(knownId)));
        const outcome = await callRaw({
          path: GET_STATE,
          headers: path.headers,
          body: whole.subarray(0, 7),
          keepOpen: true,
        });
        expect(outcome.status, name).toBe(grpc.status.DEADLINE_EXCEEDED);
        expect(outcome.ms, name).toBeGreaterThanOrEqual(900);
        expect(outcome.ms, name).toBeLessThan(3000);
      }
      await stillServing();
    });

    it('advertises COS_GRPC_MAX_CONCURRENT_STREAMS; clients queue calls beyond it', async () => {
      expect((await raw()).remoteSettings.maxConcurrentStreams).toBe(8);
      const calls = Array.from({ length: 20 }, () =>
        cos.send(newId('many'), command('Slow', { ms: 100 }), { deadlineMs: 20_000 }),
      );
      const replies = await Promise.all(calls);
      expect(replies.every((r) => r.response.meta?.revisionNumber === 1)).toBe(true);
    });

    it('closes a connection that breaks the protocol (GOAWAY, then the socket within COS_GRPC_IDLE_TIMEOUT); others keep working', async () => {
      const socket = tcpConnect(cos.port, '127.0.0.1');
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      // the preface, an empty SETTINGS, then a DATA frame on stream 0, which RFC 9113 makes a connection error
      socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'));
      socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
      socket.write(Buffer.from([0, 0, 1, 0, 0, 0, 0, 0, 0, 0x61]));
      await Promise.race([
        closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('connection not closed within 6 s')), 6000)),
      ]);
      expect(frameTypes(Buffer.concat(received))).toContain(7 /* GOAWAY */);
      await stillServing();
      expect((await callRaw({ path: GET_STATE, body: frame(entityIdMessage(new TextEncoder().encode(knownId))) })).status).toBe(0);
    });
  });

  it('fuzz: malformed input to ProcessCommand and GetState gets a clear status, and the server keeps serving', async () => {
    const cases = fuzzCases(20_251_205);
    const seen: string[] = [];
    for (const [pathName, path] of Object.entries(PATHS)) {
      for (const method of [PROCESS_COMMAND, GET_STATE]) {
        for (const fuzz of cases) {
          if (fuzz.unaryOnly && pathName !== 'unary') continue;
          const outcome: RawOutcome = await callRaw({
            path: method,
            headers: { ...path.headers, ...fuzz.headers },
            ...(fuzz.framed !== undefined
              ? { body: fuzz.framed }
              : fuzz.message !== undefined
                ? { body: path.framed(fuzz.message) }
                : {}),
          });
          const label = `${pathName} ${method.slice(method.lastIndexOf('/') + 1)} ${fuzz.name}: ${outcome.status} ${outcome.message ?? ''}`;
          seen.push(label);
          expect(outcome.status, label).toBeDefined();
          expect([grpc.status.INTERNAL, grpc.status.UNKNOWN], label).not.toContain(outcome.status);
          if (fuzz.expect !== undefined) expect(outcome.status, label).toBe(fuzz.expect);
          await stillServing();
        }
      }
    }
    expect(seen.length).toBeGreaterThan(100);
  }, 60_000);

  it('logged no COS fault (error level) and nothing unhandled while being abused', () => {
    const lines = cos.server.output().split('\n');
    const faults = lines.filter((line) => /"level":(50|60)/.test(line) || /Unhandled|uncaught/i.test(line));
    expect(faults).toEqual([]);
  });
});

interface FuzzCase {
  readonly name: string;
  /** the protobuf message, framed per path; undefined sends no body */
  readonly message?: Uint8Array;
  /** a body framed by hand instead */
  readonly framed?: Uint8Array;
  readonly headers?: http2.OutgoingHttpHeaders;
  readonly expect?: grpc.status;
  /** only meaningful without grpc-encoding */
  readonly unaryOnly?: boolean;
}

/** mulberry32: a small seeded generator, so a failing case is the same on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function fuzzCases(seed: number): FuzzCase[] {
  const next = random(seed);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
  const valid = toBinary(
    ProcessCommandRequestSchema,
    create(ProcessCommandRequestSchema, { entityId: 'fuzz-valid', command: command('Noop') }),
  );
  const encoder = new TextEncoder();
  const cases: FuzzCase[] = [
    { name: 'wrong wire type for entity_id (varint)', message: new Uint8Array([0x08, 0x01]), expect: grpc.status.INVALID_ARGUMENT },
    { name: 'wrong wire type for command (fixed32)', message: new Uint8Array([0x15, 1, 2, 3, 4]), expect: grpc.status.INVALID_ARGUMENT },
    { name: 'length past the end', message: new Uint8Array([0x0a, 0x7f, 0x61]), expect: grpc.status.INVALID_ARGUMENT },
    { name: 'truncated varint', message: new Uint8Array([0x0a, 0xff]), expect: grpc.status.INVALID_ARGUMENT },
    { name: 'invalid UTF-8', message: entityIdMessage(new Uint8Array([0xc3, 0x28])), expect: grpc.status.INVALID_ARGUMENT },
    { name: 'NUL in the id', message: entityIdMessage(encoder.encode('a\0b')), expect: grpc.status.INVALID_ARGUMENT },
    {
      name: 'huge id (10,000 characters)',
      message: toBinary(ProcessCommandRequestSchema, create(ProcessCommandRequestSchema, { entityId: 'x'.repeat(10_000) })),
      expect: grpc.status.INVALID_ARGUMENT,
    },
    { name: 'empty id', message: new Uint8Array(0), expect: grpc.status.INVALID_ARGUMENT },
    { name: 'no body at all' },
    {
      name: 'frame shorter than its length prefix',
      framed: frame(valid, { length: valid.byteLength + 10 }),
      expect: grpc.status.INVALID_ARGUMENT,
      unaryOnly: true,
    },
    { name: 'frame cut inside the prefix', framed: new Uint8Array([0, 0, 0]), unaryOnly: true },
    {
      name: 'length prefix of 4 GiB',
      framed: frame(valid, { length: 0xffff_ffff }),
      expect: grpc.status.RESOURCE_EXHAUSTED,
      unaryOnly: true,
    },
    {
      name: 'message over COS_GRPC_MAX_MESSAGE_BYTES',
      message: new Uint8Array(MAX_MESSAGE_BYTES + 100),
      expect: grpc.status.RESOURCE_EXHAUSTED,
    },
    { name: 'two messages in a unary call', framed: Buffer.concat([frame(valid), frame(valid)]), unaryOnly: true },
    {
      name: 'compressed flag without grpc-encoding',
      framed: frame(valid, { compressed: true }),
      expect: grpc.status.INVALID_ARGUMENT,
      unaryOnly: true,
    },
    { name: 'gzip flag on bytes that are not gzip', framed: frame(bytes(20), { compressed: true }), headers: { 'grpc-encoding': 'gzip' } },
    { name: 'unknown grpc-encoding', message: valid, headers: { 'grpc-encoding': 'br-fantasy' } },
  ];
  for (const timeout of ['abc', '1x', '123456789S', '-1m', '1.5S', '1 S', 'H']) {
    cases.push({ name: `grpc-timeout ${JSON.stringify(timeout)}`, message: valid, headers: { 'grpc-timeout': timeout }, expect: grpc.status.INVALID_ARGUMENT });
  }
  // random bytes, and a valid request with random bytes flipped: seeded, bounded
  for (let i = 0; i < 12; i++) cases.push({ name: `random bytes #${i}`, message: bytes(1 + Math.floor(next() * 48)) });
  for (let i = 0; i < 12; i++) {
    const mutated = Uint8Array.from(valid);
    for (let flips = 0; flips < 3; flips++) {
      const at = Math.floor(next() * mutated.length);
      mutated[at] = mutated[at]! ^ (1 << Math.floor(next() * 8));
    }
    cases.push({ name: `mutated request #${i}`, message: mutated });
  }
  return cases;
}

/** The types of the HTTP/2 frames in what the server sent (after its SETTINGS). */
function frameTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  let at = 0;
  while (at + 9 <= bytes.length) {
    const length = bytes.readUIntBE(at, 3);
    types.push(bytes[at + 3]!);
    at += 9 + length;
  }
  return types;
}
