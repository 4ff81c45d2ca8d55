import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { createKeyOrder, publishOrdered, withTimeout } from './ordered.js';
import type { BrokerMessage, EventSink } from './ports.js';

export interface NatsSinkOptions {
  /** e.g. `nats://127.0.0.1:4222`; several comma-separated servers allowed */
  readonly url: string;
  /** the subject every event is published on; a JetStream stream must capture it */
  readonly subject: string;
  /** connection name shown by the server (monitoring) */
  readonly name?: string;
  /** default time to wait for an acknowledgement, when publish() is given none */
  readonly timeoutMs?: number;
}

/**
 * NATS JetStream: each message is a JetStream publish on `subject`, acknowledged by the stream
 * (stored), with `Nats-Msg-Id` = the message id, so the server drops a re-publication within the
 * stream's duplicate window (2 minutes by default); consumers outside it deduplicate by
 * `cos-message-id`. The key (entity id) travels in `cos-entity-id`. The connection is opened at
 * the first publish and re-established by the client; one that fails for good is opened again at
 * the next publish, so a broker down at start-up only delays publication.
 */
export function createNatsSink(options: NatsSinkOptions): EventSink {
  let connection: Promise<{ nc: NatsConnection; js: JetStreamClient }> | undefined;
  let closed = false;
  // batches may be published side by side: each key keeps its order across them
  const order = createKeyOrder();
  const open = () => {
    connection ??= connect({
      servers: options.url.split(',').map((server) => server.trim()),
      name: options.name ?? 'chiefofstate-publisher',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: options.timeoutMs ?? 10_000,
      // otherwise every publish allocates two Errors with stack traces up front (for the async
      // context of a failure): measured as the largest CPU cost of a publication
      noAsyncTraces: true,
    }).then(
      (nc) => {
        // a connection closed for good (not a reconnect) is opened afresh next time
        void nc.closed().then(() => {
          if (!closed) connection = undefined;
        });
        return { nc, js: jetstream(nc) };
      },
      (error: unknown) => {
        connection = undefined;
        throw error;
      },
    );
    return connection;
  };
  const publishOne = async (js: JetStreamClient, message: BrokerMessage, timeoutMs: number) => {
    const headers = natsHeaders();
    for (const [name, value] of Object.entries(message.headers)) headers.set(name, value);
    await js.publish(options.subject, message.payload, { msgID: message.id, headers, timeout: timeoutMs });
  };
  return {
    kind: 'nats',
    async publish(batch, publishOptions) {
      if (closed) throw new Error('the NATS sink is closed');
      const timeoutMs = publishOptions?.timeoutMs ?? options.timeoutMs ?? 10_000;
      let js: JetStreamClient | undefined;
      const ready = withTimeout(open(), timeoutMs, `NATS ${options.url}: connect`).then((opened) => {
        js = opened.js;
      });
      ready.catch(() => {}); // reported by each message waiting for it
      // handed over before the connection is there, so the batch takes its place in each key's
      // order now, behind the batches published before it (see KeyOrder)
      await publishOrdered(
        batch,
        (message) => (js ? publishOne(js, message, timeoutMs) : ready.then(() => publishOne(js!, message, timeoutMs))),
        order,
      );
    },
    async close() {
      closed = true;
      const current = connection;
      connection = undefined;
      if (current) await current.then(({ nc }) => nc.drain()).catch(() => {});
    },
  };
}
