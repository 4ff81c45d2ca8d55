import pg from 'pg';

/** Called with the payload of each NOTIFY on a channel. */
export type NotificationListener = (payload: string) => void;

/**
 * The one connection that holds a process's LISTENs. When it drops (a restart, a terminated
 * backend, a keepalive that found the peer gone) it is opened again with a bounded backoff and
 * every channel is listened to again. Notifications sent meanwhile are lost: readers must not
 * depend on them for correctness (the read sides poll), only for promptness.
 */
export interface ListenConnection {
  /** Subscribes; resolves once listening (rejects when the database cannot be reached now). */
  listen(channel: string, listener: NotificationListener): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface ListenConnectionOptions {
  /** a new, unconnected client (connect timeout, keepalive and statement bounds set) */
  readonly newClient: () => pg.Client;
  /** told when the connection was lost and when it listens again */
  readonly onStatus?: (listening: boolean, error?: unknown) => void;
  /** first wait between reconnection attempts, doubled up to maxBackoffMs. Default 200 */
  readonly minBackoffMs?: number;
  /** Default 5000 */
  readonly maxBackoffMs?: number;
}

export function createListenConnection(options: ListenConnectionOptions): ListenConnection {
  const minBackoffMs = options.minBackoffMs ?? 200;
  const maxBackoffMs = options.maxBackoffMs ?? 5000;
  const listeners = new Map<string, Set<NotificationListener>>();
  let client: pg.Client | undefined;
  let opening: Promise<pg.Client> | undefined;
  let reconnecting = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const lost = (lostClient: pg.Client, error: unknown): void => {
    if (client !== lostClient) return;
    client = undefined;
    lostClient.end().catch(() => {});
    if (closed || listeners.size === 0) return;
    options.onStatus?.(false, error);
    void reconnect();
  };

  const open = (): Promise<pg.Client> => {
    opening ??= (async () => {
      const next = options.newClient();
      next.on('notification', (message) => {
        for (const listener of listeners.get(message.channel) ?? []) listener(message.payload ?? '');
      });
      next.on('error', (error) => lost(next, error));
      next.on('end', () => lost(next, new Error('LISTEN connection ended')));
      try {
        await next.connect();
        for (const channel of listeners.keys()) await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (error) {
        await next.end().catch(() => {});
        throw error;
      }
      if (closed) {
        await next.end().catch(() => {});
        throw new Error('LISTEN connection closed');
      }
      client = next;
      return next;
    })().finally(() => (opening = undefined));
    return opening;
  };

  const reconnect = async (): Promise<void> => {
    if (reconnecting) return;
    reconnecting = true;
    let backoff = minBackoffMs;
    try {
      while (!closed && client === undefined && listeners.size > 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, backoff);
          timer.unref();
        });
        if (closed) return;
        try {
          await open();
          options.onStatus?.(true);
          return;
        } catch {
          backoff = Math.min(maxBackoffMs, backoff * 2);
        }
      }
    } finally {
      reconnecting = false;
    }
  };

  return {
    async listen(channel, listener) {
      let set = listeners.get(channel);
      const first = set === undefined;
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
      }
      set.add(listener);
      try {
        const current = client ?? (await open());
        // (a connection opened by this call listens already; LISTEN twice is harmless)
        if (first) await current.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (error) {
        set.delete(listener);
        if (set.size === 0 && listeners.get(channel) === set) listeners.delete(channel);
        throw error;
      }
      return async () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(channel) === set) {
          listeners.delete(channel);
          await client?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {});
        }
      };
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      wake?.();
      const current = client;
      client = undefined;
      await opening?.catch(() => {});
      await current?.end().catch(() => {});
    },
  };
}
