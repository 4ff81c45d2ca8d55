import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** the loopback port to connect to instead of the target */
  readonly port: number;
  /** connections accepted so far */
  readonly accepted: number;
  /** connections open now (each client connection with its upstream one) */
  readonly open: number;
  /**
   * Breaks the link: every open connection is destroyed (both sides see a reset) and new ones are
   * closed as soon as they arrive, until restore(). The target itself is untouched.
   */
  cut(): void;
  /**
   * A silent failure, as of a frozen peer or a network dropping packets: the connections stay
   * open (no FIN, no reset; new ones are accepted too) but nothing goes through either way until
   * restore(); what is sent meanwhile is dropped. Only a timeout or keepalive on the client
   * notices. A connection its client closes meanwhile is closed (`open` counts down).
   */
  stall(): void;
  /** Lets connections through again (after cut or stall). */
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target`: a broker "going away" and "coming back" for the
 * client under test, without stopping a shared broker.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>();
  const pairs = new Set<readonly [Socket, Socket]>();
  let broken = false;
  let stalled = false;
  let accepted = 0;
  const forward = ([client, upstream]: readonly [Socket, Socket]) => {
    client.off('data', drop).pipe(upstream);
    upstream.off('data', drop).pipe(client);
  };
  const drop = () => {};
  const server: Server = createServer((client) => {
    accepted++;
    if (broken) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const pair = [client, upstream] as const;
    pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
      pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    if (stalled) {
      client.on('data', drop);
      upstream.on('data', drop);
    } else forward(pair);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP port');
  return {
    port: address.port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    stall() {
      if (stalled) return;
      stalled = true;
      for (const [client, upstream] of pairs) {
        // still read (so a close is seen), but into nothing
        client.unpipe(upstream).on('data', drop).resume();
        upstream.unpipe(client).on('data', drop).resume();
      }
    },
    cut() {
      broken = true;
      for (const socket of open) socket.resetAndDestroy();
      open.clear();
    },
    restore() {
      broken = false;
      if (stalled) {
        stalled = false;
        for (const pair of pairs) forward(pair);
      }
    },
    async close() {
      broken = true;
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
