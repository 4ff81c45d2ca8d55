// docker/healthcheck.mjs, the images' HEALTHCHECK (checkHealth of @chiefofstate/handler-client
// behind a parseArgs command line): the probe against real servers (the grpc-api health service,
// the sample bank handler, servers that refuse, stall or answer garbage), in-process through the
// fast transport and Connect's stock one alike, and as the CLI Docker runs.
import { execFile } from 'node:child_process';
import { createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHealthStatus, ServingStatus as GrpcApiServingStatus, startGrpcServer, type GrpcServer } from '@chiefofstate/grpc-api';
import { ChiefOfStateService, Health } from '@chiefofstate/protocol';
import { startBankHandlerServer, type BankHandlerServer } from '@chiefofstate/sample-bank';
import { freePort } from '@chiefofstate/testing';
// docker/ is not a workspace project: the script ships in the images as a plain file.
// eslint-disable-next-line @nx/enforce-module-boundaries
import { checkHealth as checkHealthFast, parseArguments, ServingStatus } from '../../../docker/healthcheck.mjs';

/** Every in-process probe runs twice, through the fast transport and through Connect's own, and both must agree. */
async function checkHealth(options: Parameters<typeof checkHealthFast>[0]): ReturnType<typeof checkHealthFast> {
  const fast = await checkHealthFast(options);
  const stock = await checkHealthFast({ ...options, fastTransport: false });
  expect(stock).toEqual(fast);
  return fast;
}

const SCRIPT = fileURLToPath(new URL('../../../docker/healthcheck.mjs', import.meta.url));
const run = promisify(execFile);

/** Runs the CLI as Docker does; resolves with its exit code and output. */
async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [SCRIPT, ...args], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      timeout: 20_000,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('the arguments', () => {
  it('defaults to COS_PORT, or 9000, on loopback', () => {
    expect(parseArguments([], {})).toMatchObject({ host: '127.0.0.1', port: 9000, service: '' });
    expect(parseArguments([], { COS_PORT: '7000' }).port).toBe(7000);
    expect(parseArguments([], { COS_ADDRESS: '0.0.0.0' }).host).toBe('127.0.0.1');
    expect(parseArguments([], { COS_ADDRESS: '::' }).host).toBe('127.0.0.1');
    expect(parseArguments([], { COS_ADDRESS: '10.1.2.3' }).host).toBe('10.1.2.3');
  });

  it('calls through Connect\'s stock transport with COS_GRPC_CLIENT_FAST_PATH=false', () => {
    expect(parseArguments([], { COS_GRPC_CLIENT_FAST_PATH: 'false' }).fastTransport).toBe(false);
    expect(parseArguments([], { COS_GRPC_CLIENT_FAST_PATH: 'true' })).not.toHaveProperty('fastTransport');
  });

  it('takes flags over the environment', () => {
    expect(
      parseArguments(['--port', '50051', '--host', '::1', '--service', 's', '--timeout-ms', '500', '--accept-unimplemented'], {
        COS_PORT: '7000',
      }),
    ).toEqual({ host: '::1', port: 50051, service: 's', timeoutMs: 500, acceptUnimplemented: true });
  });

  it('rejects bad values', () => {
    expect(() => parseArguments(['--port', 'abc'], {})).toThrow(/port/);
    expect(() => parseArguments([], { COS_PORT: '70000' })).toThrow(/port/);
    expect(() => parseArguments(['--timeout-ms', '0'], {})).toThrow(/timeout/);
    expect(() => parseArguments(['--port'], {})).toThrow(/'--port <value>' argument missing/);
    expect(() => parseArguments(['--verbose', 'x'], {})).toThrow(/Unknown option '--verbose'/);
  });
});

describe('against the grpc-api health service', () => {
  let server: GrpcServer;
  const health = createHealthStatus({ services: [ChiefOfStateService.typeName] });

  beforeAll(async () => {
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 4 * 1024 * 1024,
      routes: (router) => router.service(Health, health.service),
    });
  });
  afterAll(() => server.close(0));

  it('is unhealthy while NOT_SERVING and healthy once SERVING', async () => {
    health.setAll(GrpcApiServingStatus.NOT_SERVING);
    const before = await checkHealth({ host: '127.0.0.1', port: server.port });
    expect(before).toMatchObject({ healthy: false, grpcStatus: 0, servingStatus: ServingStatus.NOT_SERVING });
    expect(before.detail).toBe('server is NOT_SERVING');

    health.setAll(GrpcApiServingStatus.SERVING);
    expect(await checkHealth({ host: '127.0.0.1', port: server.port })).toMatchObject({
      healthy: true,
      servingStatus: ServingStatus.SERVING,
    });
  });

  it('asks about one service when told', async () => {
    health.setAll(GrpcApiServingStatus.SERVING);
    health.set(ChiefOfStateService.typeName, GrpcApiServingStatus.NOT_SERVING);
    const result = await checkHealth({ host: '127.0.0.1', port: server.port, service: ChiefOfStateService.typeName });
    expect(result).toMatchObject({ healthy: false, servingStatus: ServingStatus.NOT_SERVING });
    expect(result.detail).toBe(`${ChiefOfStateService.typeName} is NOT_SERVING`);
    expect((await checkHealth({ host: '127.0.0.1', port: server.port })).healthy).toBe(true);
    health.set(ChiefOfStateService.typeName, GrpcApiServingStatus.SERVING);
  });

  it('is unhealthy for a service the server does not know (NOT_FOUND), with its message', async () => {
    const result = await checkHealth({ host: '127.0.0.1', port: server.port, service: 'no.such.Service' });
    expect(result).toMatchObject({ healthy: false, grpcStatus: 5 });
    expect(result.detail).toContain('unknown service no.such.Service');
  });

  it('exits 0 when SERVING and 1 when not, reading COS_PORT, as the HEALTHCHECK runs it', async () => {
    health.setAll(GrpcApiServingStatus.SERVING);
    const healthy = await runCli([], { COS_PORT: String(server.port) });
    expect(healthy).toEqual({ code: 0, output: 'healthcheck: server is SERVING\n' });

    health.setAll(GrpcApiServingStatus.NOT_SERVING);
    const unhealthy = await runCli(['--port', String(server.port)]);
    expect(unhealthy).toEqual({ code: 1, output: 'healthcheck: server is NOT_SERVING\n' });
    health.setAll(GrpcApiServingStatus.SERVING);
  });
});

describe('against a gRPC server without grpc.health.v1 (the sample bank handler)', () => {
  let bank: BankHandlerServer;
  beforeAll(async () => {
    bank = await startBankHandlerServer({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => bank.close(0));

  it('is unhealthy by default: the server answers UNIMPLEMENTED', async () => {
    const result = await checkHealth({ host: '127.0.0.1', port: bank.port });
    expect(result).toMatchObject({ healthy: false, grpcStatus: 12 });
  });

  it('is healthy with --accept-unimplemented: the handler is up and speaks gRPC', async () => {
    expect(await checkHealth({ host: '127.0.0.1', port: bank.port, acceptUnimplemented: true })).toMatchObject({
      healthy: true,
      grpcStatus: 12,
    });
    const cli = await runCli(['--port', String(bank.port), '--accept-unimplemented']);
    expect(cli.code).toBe(0);
  });
});

describe('when the server cannot answer', () => {
  let stalling: Http2Server;
  let garbage: Http2Server;
  let failing: Http2Server;
  const port = (server: Http2Server) => (server.address() as AddressInfo).port;
  const listen = (server: Http2Server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  beforeAll(async () => {
    // never responds
    stalling = createServer(() => undefined);
    // grpc-status 0 with a body that is not a HealthCheckResponse frame
    garbage = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/grpc' });
      response.addTrailers({ 'grpc-status': '0' });
      response.end(Buffer.from([0, 0, 0, 0, 9, 1]));
    });
    // a proxy in front that has no backend
    failing = createServer((_request, response) => {
      response.writeHead(503);
      response.end();
    });
    await Promise.all([listen(stalling), listen(garbage), listen(failing)]);
  });
  afterAll(async () => {
    for (const server of [stalling, garbage, failing]) await new Promise((resolve) => server.close(resolve));
  });

  it('is unhealthy when nothing listens', async () => {
    const result = await checkHealth({ host: '127.0.0.1', port: await freePort() });
    expect(result.healthy).toBe(false);
    expect(result.detail).toMatch(/ECONNREFUSED/);
  });

  it('gives up after the timeout', async () => {
    const started = Date.now();
    const result = await checkHealth({ host: '127.0.0.1', port: port(stalling), timeoutMs: 300 });
    const elapsed = Date.now() - started;
    expect(result).toEqual({ healthy: false, detail: `no answer from http://127.0.0.1:${port(stalling)} within 300 ms` });
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3000);
  });

  it('is unhealthy on a malformed answer', async () => {
    // the fast transport and Connect's word it differently (a 9-byte message of which 1 came)
    const fast = await checkHealthFast({ host: '127.0.0.1', port: port(garbage) });
    const stock = await checkHealthFast({ host: '127.0.0.1', port: port(garbage), fastTransport: false });
    for (const result of [fast, stock]) expect(result.healthy).toBe(false);
    expect(fast.detail).toMatch(/truncated/);
  });

  it('maps an HTTP error without grpc-status to UNAVAILABLE, even with --accept-unimplemented', async () => {
    const result = await checkHealth({ host: '127.0.0.1', port: port(failing), acceptUnimplemented: true });
    expect(result).toMatchObject({ healthy: false, grpcStatus: 14 });
  });

  it('the CLI exits 1 with the reason on stderr', async () => {
    const result = await runCli(['--port', String(port(stalling)), '--timeout-ms', '200']);
    expect(result.code).toBe(1);
    expect(result.output).toMatch(/no answer .* within 200 ms/);
    const bad = await runCli(['--port', 'nope']);
    expect(bad).toEqual({ code: 1, output: 'healthcheck: the port must be an integer 1..65535, got NaN\n' });
  });
});
