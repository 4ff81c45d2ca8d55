// The built cos-server with handlers that speak only HTTP (COS_WRITE_SIDE_PROTOCOL=http and a
// read side with protocol http; test/support/http-handler.ts, a plain node:https server that
// requires a client certificate of the test's CA), the write handler's circuit breaker opening,
// answering at once, half-opening and closing (with /readyz and the metrics), and HTTP/2
// keepalive finding a write handler connection that died silently (a TCP proxy that stops
// forwarding, the handler process SIGSTOPped), over COS_GRPC_CLIENT_POOL_SIZE connections.
import { request as httpsRequest } from 'node:https';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testStoreKinds } from '@chiefofstate/postgres/testing';
import {
  createTestPki,
  pollUntil,
  startTcpProxy,
  timed,
  type IssuedCertificate,
  type RunningProcess,
  type TcpProxy,
  type TestPki,
} from '@chiefofstate/testing';
import { command, failure, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import { startHttpHandler, startTestHandler } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');

interface ReadSideCall {
  r: string;
  e: string;
  v: number;
  ev: string;
  h: string | null;
  t: string | null;
  cn: string | null;
}

describe.runIf(hasServer)('cos-server with HTTP handlers', () => {
  const pki: TestPki = createTestPki('cos-e2e-http-');
  let clientCert: IssuedCertificate;
  let handler: RunningProcess & { port: number };
  let cos: CosFixture;

  /** GET or POST the handler's /control, over its mTLS */
  const control = (mode?: 'ok' | 'unavailable') =>
    new Promise<{ mode: string; commands: number }>((resolve, reject) => {
      const body = mode === undefined ? '' : JSON.stringify({ mode });
      const request = httpsRequest(
        { host: '127.0.0.1', port: handler.port, path: '/control', method: mode ? 'POST' : 'GET', ca: pki.ca, cert: clientCert.cert, key: clientCert.key },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as { mode: string; commands: number }));
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  const readSideCalls = () =>
    handler
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as ReadSideCall);
  const operations = (path: string) => fetch(`http://127.0.0.1:${cos.metricsPort}${path}`);

  beforeAll(async () => {
    const served = pki.issue({ name: 'http-handler', usage: 'server' });
    clientCert = pki.issue({ name: 'cos-client', usage: 'client' });
    handler = await startHttpHandler({ CERT_FILE: served.certFile, KEY_FILE: served.keyFile, CLIENT_CA_FILE: pki.caFile });
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
      COS_WRITE_SIDE_PROTOCOL: 'http',
      COS_WRITE_SIDE_USE_TLS: 'true',
      COS_WRITE_SIDE_TLS_CA_FILE: pki.caFile,
      COS_WRITE_SIDE_TLS_CERT_FILE: clientCert.certFile,
      COS_WRITE_SIDE_TLS_KEY_FILE: clientCert.keyFile,
      COS_WRITE_SIDE_PROPAGATED_HEADERS: 'x-tenant',
      COS_WRITE_SIDE_BREAKER_ENABLED: 'true',
      COS_WRITE_SIDE_BREAKER_MAX_FAILURES: '3',
      COS_WRITE_SIDE_BREAKER_CALL_TIMEOUT: '2s',
      COS_WRITE_SIDE_BREAKER_RESET_TIMEOUT: '1s',
      COS_READ_SIDE_ENABLED: 'true',
      COS_READ_SIDE_CONFIG__HOST__search: '127.0.0.1',
      COS_READ_SIDE_CONFIG__PORT__search: String(handler.port),
      COS_READ_SIDE_CONFIG__PROTOCOL__search: 'http',
      COS_READ_SIDE_CONFIG__TIMEOUT__search: '3s',
      COS_READ_SIDE_CONFIG__USE_TLS__search: 'true',
      COS_READ_SIDE_CONFIG__TLS_CA_FILE__search: pki.caFile,
      COS_READ_SIDE_CONFIG__TLS_CERT_FILE__search: clientCert.certFile,
      COS_READ_SIDE_CONFIG__TLS_KEY_FILE__search: clientCert.keyFile,
    });
  }, 90_000);

  afterAll(async () => {
    await cos?.dispose();
    await handler?.kill();
    pki.remove();
  });

  it('processes commands with the HTTP write handler over mTLS, propagating headers, and delivers the events to the HTTP read side', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    const first = await cos.send('http-1', command('Emit', { events: ['opened', 'funded'] }), { metadata });
    expect(first.response.meta?.revisionNumber).toBe(2);
    const state = stateOf(first.response.state) as unknown as {
      events: string[];
      priorRevision: number;
      priorStateType: string;
      eventRevision: number;
      eventEntityId: string;
      revisionDate: string;
      headers: { command: Record<string, string>; event: Record<string, string> };
    };
    expect(state.events).toEqual(['opened', 'funded']);
    expect(state.priorRevision).toBe(0);
    expect(state.priorStateType).toBe('type.googleapis.com/google.protobuf.Empty');
    expect(state.eventRevision).toBe(2);
    expect(state.eventEntityId).toBe('http-1');
    expect(Number.isNaN(Date.parse(state.revisionDate))).toBe(false);
    expect(state.headers.command['x-tenant']).toBe('acme');
    expect(state.headers.event['x-tenant']).toBe('acme');

    const second = await cos.send('http-1', command('Emit', { events: ['closed'] }));
    expect(second.response.meta?.revisionNumber).toBe(3);
    expect((stateOf(second.response.state) as unknown as { priorRevision: number }).priorRevision).toBe(2);
    const read = await cos.getState('http-1');
    expect((stateOf(read.response.state) as unknown as { events: string[] }).events).toEqual(['opened', 'funded', 'closed']);

    await pollUntil(() => readSideCalls().filter((call) => call.e === 'http-1').length >= 3, 20_000, 'three deliveries to the HTTP read side');
    const delivered = readSideCalls().filter((call) => call.e === 'http-1');
    expect(delivered.map((call) => [call.v, call.ev])).toEqual([
      [1, 'opened'],
      [2, 'funded'],
      [3, 'closed'],
    ]);
    for (const call of delivered) {
      expect(call).toMatchObject({ r: 'search', h: 'http-1', cn: 'cos-client' });
      expect(call.t).toMatch(/^\d+$/);
    }
  });

  it("returns the HTTP handler's refusal as the gRPC status its HTTP status maps to, with its words", async () => {
    const refused = await failure(cos.send('http-2', command('Fail', { status: 412, error: 'insufficient funds' })));
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.details).toBe('insufficient funds');
    const bad = await failure(cos.send('http-2', command('Fail', { status: 400, error: 'amount must be positive' })));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    // refusals are answers: the breaker stays closed
    expect((await cos.send('http-2', command('Emit'))).response.meta?.revisionNumber).toBe(1);
  });

  it('opens the breaker after 3 failures, answers UNAVAILABLE at once without calling, half-opens after 1 s and closes on success', async () => {
    await control('unavailable');
    const before = (await control()).commands;
    for (let i = 0; i < 3; i++) {
      const down = await failure(cos.send('http-3', command('Emit')));
      expect(down.code).toBe(grpc.status.UNAVAILABLE);
      expect(down.details).toBe('the handler is down for maintenance');
    }
    expect((await control()).commands).toBe(before + 3);

    const fast = await timed(() => cos.send('http-3', command('Emit')));
    expect((fast.error as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    expect((fast.error as grpc.ServiceError).details).toBe('write handler unavailable (circuit breaker open)');
    expect(fast.ms).toBeLessThan(200);
    expect((await control()).commands).toBe(before + 3);
    const ready = await operations('/readyz');
    expect([ready.status, await ready.text()]).toEqual([503, 'not ready: write handler circuit breaker open\n']);
    const open = await (await operations('/metrics')).text();
    expect(open).toMatch(/cos_circuit_breaker_state\{handler="write_side",state="open"\} 1/);
    expect(open).toMatch(/cos_circuit_breaker_rejected_total\{handler="write_side"\} [1-9]/);

    // the handler is back; after the reset timeout one trial call goes through and closes it
    await control('ok');
    const waited = await pollUntil(
      async () => (await timed(() => cos.send('http-3', command('Emit')))).error === undefined,
      5000,
      'a command succeeding after the reset timeout',
    );
    expect(waited).toBeLessThan(3000);
    expect((await control()).commands).toBe(before + 4);
    const closed = await (await operations('/metrics')).text();
    expect(closed).toMatch(/cos_circuit_breaker_state\{handler="write_side",state="closed"\} 1/);
    expect(closed).toMatch(/cos_circuit_breaker_opened_total\{handler="write_side"\} 1/);
    await pollUntil(async () => (await operations('/readyz')).status === 200, 5000, '/readyz ready again');
  });
});

describe.runIf(hasServer)('cos-server keepalive on write handler connections', () => {
  let handler: RunningProcess & { port: number };
  let proxy: TcpProxy;
  let cos: CosFixture;

  beforeAll(async () => {
    handler = await startTestHandler();
    proxy = await startTcpProxy({ host: '127.0.0.1', port: handler.port });
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(proxy.port),
      COS_GRPC_CLIENT_POOL_SIZE: '3',
      COS_GRPC_KEEPALIVE_ENABLED: 'true',
      COS_GRPC_KEEPALIVE_TIME: '1s',
      COS_GRPC_KEEPALIVE_TIMEOUT: '1s',
      COS_GRPC_KEEPALIVE_WITHOUT_CALLS: 'true',
      COS_COMMAND_HANDLER_TIMEOUT: '30',
      COS_GRPC_CALLS_TIMEOUT: '30000',
    });
  }, 90_000);

  afterAll(async () => {
    await cos?.dispose();
    await proxy?.close();
    await handler?.kill();
  });

  it('uses 3 connections, drops the ones that went silent, replaces them, and fails a call on a silent one (a stalled proxy, a frozen handler) long before its deadline', async () => {
    for (let i = 0; i < 6; i++) await cos.send(`ka-${i}`, command('Emit'));
    expect(proxy.open).toBe(3);

    // nothing answers any more, nothing is closed: the idle connections' PINGs go unanswered
    proxy.stall();
    const dropped = await pollUntil(() => proxy.open === 0, 10_000, 'the silent connections dropped');
    expect(dropped).toBeLessThan(5000);
    proxy.restore();
    for (let i = 0; i < 3; i++) await cos.send(`ka-${i}`, command('Emit'));
    expect(proxy.open).toBe(3);

    // a command on a connection that goes silent fails UNAVAILABLE in seconds, not after 30 s
    proxy.stall();
    const stuck = await timed(() => cos.send('ka-stuck', command('Emit')));
    expect((stuck.error as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    expect(stuck.ms).toBeLessThan(5000);
    proxy.restore();
    await pollUntil(async () => (await timed(() => cos.send('ka-after', command('Emit')))).error === undefined, 10_000, 'commands again');

    // the handler process frozen (SIGSTOP): its kernel still takes the bytes, nothing answers
    handler.child.kill('SIGSTOP');
    try {
      const frozen = await timed(() => cos.send('ka-frozen', command('Emit')));
      expect((frozen.error as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
      expect(frozen.ms).toBeLessThan(5000);
    } finally {
      handler.child.kill('SIGCONT');
    }
    await pollUntil(async () => (await timed(() => cos.send('ka-thawed', command('Emit')))).error === undefined, 10_000, 'commands after SIGCONT');
  });
});
