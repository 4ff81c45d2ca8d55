import { jetstream } from '@nats-io/jetstream';
import { connect, createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { watchConfirms } from './confirm-watch.js';
import { createKeyOrder, publishOrderedOn, withTimeout } from './ordered.js';
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
  /**
   * Publish through the client's js.publish, one request per message, instead of acknowledgements
   * on the sink's own inbox (the default; see openLink): the reference the default is tested against.
   */
  readonly requests?: boolean;
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
  let connection: Promise<Link> | undefined;
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
      // otherwise every request allocates two Errors with stack traces up front (for the async
      // context of a failure): measured as the largest CPU cost of a publication
      noAsyncTraces: true,
    }).then(
      (nc) => {
        const link = openLink(nc);
        // a connection closed for good (not a reconnect) is opened afresh next time
        void nc.closed().then(() => {
          link.lost(new Error(`NATS ${options.url}: the connection closed`));
          if (!closed) connection = undefined;
        });
        return link;
      },
      (error: unknown) => {
        connection = undefined;
        throw error;
      },
    );
    return connection;
  };
  return {
    kind: 'nats',
    async publish(batch, publishOptions) {
      if (closed) throw new Error('the NATS sink is closed');
      const timeoutMs = publishOptions?.timeoutMs ?? options.timeoutMs ?? 10_000;
      const what = `NATS ${options.url}`;
      const confirms = watchConfirms(timeoutMs, what);
      const send = (link: Link, message: BrokerMessage, done: (error?: unknown) => void) => {
        if (options.requests) {
          link.request(message, timeoutMs).then(() => done(), done);
          return;
        }
        const token = link.token();
        const settle = confirms.waiting(message.id, (error) => {
          link.forget(token); // after a timeout: a late acknowledgement finds nothing
          done(error);
        });
        link.send(message, token, settle);
      };
      try {
        await publishOrderedOn(batch, withTimeout(open(), timeoutMs, `${what}: connect`), send, order);
      } finally {
        confirms.stop();
      }
    },
    async close() {
      closed = true;
      const current = connection;
      connection = undefined;
      if (current) await current.then(({ nc }) => nc.drain()).catch(() => {});
    },
  };

  /**
   * One connection's publishing. Acknowledgements come back on one inbox subscription of the
   * sink's own, each publication's reply subject a token under it (what JetStream clients call
   * async publishing): the client's request() makes a promise, a timer and an Error with a stack
   * per message, which cost more CPU than the publication itself. `request` is the client's own
   * js.publish, kept as the reference the inbox is tested against.
   */
  function openLink(nc: NatsConnection): Link {
    const js = jetstream(nc);
    const inbox = createInbox();
    const waiting = new Map<string, (error?: Error) => void>();
    let next = 0;
    nc.subscribe(`${inbox}.*`, {
      callback: (error, msg) => {
        if (error) return; // the subscription closes with the connection: lost() fails what waits
        const token = msg.subject.slice(inbox.length + 1);
        const settle = waiting.get(token);
        if (settle === undefined) return; // failed meanwhile (timeout, connection lost)
        waiting.delete(token);
        settle(ackError(msg));
      },
    });
    return {
      nc,
      token: () => (next++).toString(36),
      send(message, token, settle) {
        waiting.set(token, settle);
        try {
          nc.publish(options.subject, message.payload, { reply: `${inbox}.${token}`, headers: natsHeadersOf(message) });
        } catch (error) {
          waiting.delete(token);
          settle(error instanceof Error ? error : new Error(String(error)));
        }
      },
      forget: (token) => void waiting.delete(token),
      async request(message, timeoutMs) {
        await js.publish(options.subject, message.payload, { msgID: message.id, headers: natsHeadersOf(message, false), timeout: timeoutMs });
      },
      lost(reason) {
        const all = [...waiting.values()];
        waiting.clear();
        for (const settle of all) settle(reason);
      },
    };
  }
}

interface Link {
  readonly nc: NatsConnection;
  /** a fresh reply token */
  token(): string;
  /** publishes with its acknowledgement to `token` on the sink's inbox; `settle` gets it (or the failure) */
  send(message: BrokerMessage, token: string, settle: (error?: Error) => void): void;
  /** stops waiting for `token` (its publication failed otherwise: a timeout) */
  forget(token: string): void;
  /** publishes through the client's js.publish */
  request(message: BrokerMessage, timeoutMs: number): Promise<void>;
  /** fails every publication waiting for its acknowledgement */
  lost(reason: Error): void;
}

/** The message's headers, and its id as `Nats-Msg-Id` (what js.publish sets from `msgID`). */
function natsHeadersOf(message: BrokerMessage, withId = true): MsgHdrs {
  const headers = natsHeaders();
  for (const name in message.headers) headers.set(name, message.headers[name]!);
  if (withId) headers.set(MSG_ID_HEADER, message.id);
  return headers;
}

const MSG_ID_HEADER = 'Nats-Msg-Id';
const decoder = new TextDecoder();

/**
 * What a reply to a JetStream publication says: undefined for a PubAck, else why it failed (a
 * status such as 503 when no stream takes the subject, or a JetStream API error), as js.publish
 * reads it.
 */
export function ackError(msg: Msg): Error | undefined {
  if (msg.headers?.hasError) {
    return new Error(msg.headers.code === 503 ? 'no JetStream stream takes the subject (503 no responders)' : `${msg.headers.code} ${msg.headers.description}`);
  }
  let ack: { stream?: string; error?: { code?: number; err_code?: number; description?: string } };
  try {
    ack = JSON.parse(decoder.decode(msg.data)) as typeof ack;
  } catch {
    return new Error('not a JetStream acknowledgement');
  }
  if (ack.error) return new Error(`JetStream: ${ack.error.description ?? 'error'} (${ack.error.code ?? '?'}, ${ack.error.err_code ?? '?'})`);
  if (!ack.stream) return new Error('invalid ack response');
  return undefined;
}
