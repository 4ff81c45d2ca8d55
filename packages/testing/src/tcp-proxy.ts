import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** the loopback port to connect to instead of the target */
  readonly port: number;
  /** connections accepted so far */
  readonly accepted: number;
  /**
   * Breaks the link: every open connection is destroyed (both sides see a reset) and new ones are
   * closed as soon as they arrive, until restore(). The target itself is untouched.
   */
  cut(): void;
  /** Lets connections through again. */
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target`: a broker "going away" and "coming back" for the
 * client under test, without stopping a shared broker.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let broken = false;
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted++;
    if (broken) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
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
    cut() {
      broken = true;
      for (const socket of open) socket.resetAndDestroy();
      open.clear();
    },
    restore() {
      broken = false;
    },
    async close() {
      broken = true;
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
