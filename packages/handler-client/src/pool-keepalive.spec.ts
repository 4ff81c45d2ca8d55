// COS_GRPC_CLIENT_POOL_SIZE and COS_GRPC_KEEPALIVE_*: the write handler's gRPC connections used
// round robin, and a connection that died silently (a TCP proxy that stops forwarding, as a
// frozen handler or a dropped network does) noticed by its PINGs and replaced.
import { create } from '@bufbuild/protobuf';
import { HandlerUnavailableError } from '@chiefofstate/core';
import { HandleCommandRequestSchema, WriteSideHandlerService } from '@chiefofstate/protocol';
import { pollUntil, startTcpProxy, startTestGrpcServer, timed, type TcpProxy, type TestGrpcServer } from '@chiefofstate/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createWriteSideClient, type WriteSideClient } from './write-side-client.js';

let server: TestGrpcServer;
let proxy: TcpProxy;
const clients: WriteSideClient[] = [];
const request = create(HandleCommandRequestSchema, {});

beforeAll(async () => {
  server = await startTestGrpcServer((router) => {
    router.service(WriteSideHandlerService, {
      handleCommand: () => Promise.resolve({}),
      handleEvent: () => Promise.resolve({}),
    });
  });
});
afterAll(() => server.stop());
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await proxy?.close();
});

function client(options: Partial<Parameters<typeof createWriteSideClient>[0]> = {}): WriteSideClient {
  const created = createWriteSideClient({ host: '127.0.0.1', port: proxy.port, timeoutMs: 10_000, ...options });
  clients.push(created);
  return created;
}

describe('the connection pool', () => {
  it('opens COS_GRPC_CLIENT_POOL_SIZE connections and uses them round robin', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: server.port });
    const pooled = client({ connections: 3 });
    for (let i = 0; i < 9; i++) await pooled.handleCommand(request);
    expect(proxy.accepted).toBe(3);
    expect(proxy.open).toBe(3);
  });
});

describe('keepalive', () => {
  // a PING timeout as long as the interval: the next PING may find the session destroyed and not yet forgotten
  const keepalive = { pingIntervalMs: 300, pingTimeoutMs: 300 };

  it('with pings without calls, drops an idle connection that stopped answering, and the next call uses a new one', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: server.port });
    const pinging = client({ keepalive: { ...keepalive, pingWithoutCalls: true } });
    await pinging.handleCommand(request);
    expect(proxy.open).toBe(1);
    proxy.stall();
    const ms = await pollUntil(() => proxy.open === 0, 5000, 'the silent connection dropped');
    expect(ms).toBeLessThan(3000);
    proxy.restore();
    await pinging.handleCommand(request);
    expect(proxy.accepted).toBe(2);
  });

  it('fails a call in flight on a connection that stopped answering with UNAVAILABLE long before its deadline', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: server.port });
    const pinging = client({ keepalive });
    await pinging.handleCommand(request);
    proxy.stall();
    const call = await timed(() => pinging.handleCommand(request, { timeoutMs: 10_000 }));
    expect(call.error).toBeInstanceOf(HandlerUnavailableError);
    expect(call.ms).toBeLessThan(3000);
    proxy.restore();
    // (a PING this short may also drop a new connection slow to come up on a loaded machine)
    await pollUntil(async () => (await timed(() => pinging.handleCommand(request))).error === undefined, 5000, 'calls again');
  });
});
