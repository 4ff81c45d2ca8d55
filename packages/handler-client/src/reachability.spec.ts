import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createReachabilityProbe } from './reachability.js';

describe('createReachabilityProbe', () => {
  it('says whether the handler accepts connections, caching the answer', async () => {
    const server = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const probe = createReachabilityProbe({ host: '127.0.0.1', port, cacheMs: 50 });
    expect(await probe()).toBe(true);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(await probe()).toBe(true); // cached
    await new Promise((r) => setTimeout(r, 60));
    expect(await probe()).toBe(false);
  });
});
