import { connect, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { MESSAGE_HEADERS } from './broker-message.js';
import { watchConfirms, type ConfirmWatch } from './confirm-watch.js';
import { createKeyOrder, publishOrderedOn, withTimeout } from './ordered.js';
import type { BrokerMessage, EventSink } from './ports.js';

export interface RabbitMqSinkOptions {
  /** e.g. `amqp://guest:guest@127.0.0.1:5672/` (amqps:// for TLS) */
  readonly url: string;
  /** the exchange every event is published to; `''` is the default exchange (routing key = queue) */
  readonly exchange: string;
  /** a fixed routing key; unset: the entity id (for topic or consistent-hash exchanges) */
  readonly routingKey?: string;
  /** default time to wait for a confirm, when publish() is given none */
  readonly timeoutMs?: number;
}

/** AMQP 0-9-1 limits a routing key to 255 bytes. */
const MAX_ROUTING_KEY_BYTES = 255;

interface Link {
  readonly model: ChannelModel;
  readonly channel: ConfirmChannel;
  /** each batch's publications waiting for a confirm, failed at once when the channel goes */
  readonly pending: Set<(error: Error) => void>;
}

/**
 * RabbitMQ with publisher confirms: each message is published persistent, with `message_id` =
 * the message id, `type` = the event type URL and the headers as AMQP headers, and counts only once
 * the broker confirmed it (for a durable queue: written to disk). A broker that does not
 * deduplicate re-delivers a re-published event with the same message id: consumers drop
 * duplicates by it. The connection is opened at the first publish and again after it is lost.
 */
export function createRabbitMqSink(options: RabbitMqSinkOptions): EventSink {
  let link: Promise<Link> | undefined;
  let closed = false;
  // batches may be published side by side: each key keeps its order across them
  const order = createKeyOrder();
  const open = () => {
    link ??= (async () => {
      const model = await connect(options.url);
      try {
        const channel = await model.createConfirmChannel();
        const current: Link = { model, channel, pending: new Set() };
        const lost = (error?: unknown) => {
          if (link === opened) link = undefined;
          const reason = new Error(`RabbitMQ ${redactUrl(options.url)}: the connection was lost (${describe(error)})`);
          for (const fail of current.pending) fail(reason);
          current.pending.clear();
        };
        // errors come with a close; without a listener an 'error' event would throw
        model.on('error', () => {});
        channel.on('error', () => {});
        model.on('close', lost);
        channel.on('close', lost);
        return current;
      } catch (error) {
        await model.close().catch(() => {});
        throw error;
      }
    })();
    const opened = link;
    opened.catch(() => {
      if (link === opened) link = undefined;
    });
    return opened;
  };
  const send = (current: Link, message: BrokerMessage, confirms: ConfirmWatch, done: (error?: Error) => void) => {
    const settle = confirms.waiting(message.id, done);
    try {
      current.channel.publish(
        options.exchange,
        options.routingKey ?? routingKeyOf(message.key),
        Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength),
        rabbitMqProperties(message),
        (error: unknown) => settle(error ? new Error(`RabbitMQ refused ${message.id} (${describe(error)})`) : undefined),
      );
    } catch (error) {
      settle(error instanceof Error ? error : new Error(String(error)));
    }
  };
  return {
    kind: 'rabbitmq',
    async publish(batch, publishOptions) {
      if (closed) throw new Error('the RabbitMQ sink is closed');
      const timeoutMs = publishOptions?.timeoutMs ?? options.timeoutMs ?? 10_000;
      const what = `RabbitMQ ${redactUrl(options.url)}`;
      // the wait is for the broker's progress, not for the batch: a long batch (an entity's events
      // go one confirm apart) is never cut as a whole, and a failure still says which messages
      // were confirmed
      const confirms = watchConfirms(timeoutMs, what);
      let current: Link | undefined;
      const opening = withTimeout(open(), timeoutMs, `${what}: connect`).then((opened) => {
        current = opened;
        opened.pending.add(confirms.lost);
        return opened;
      });
      try {
        await publishOrderedOn(batch, opening, (link, message, done) => send(link, message, confirms, done), order);
      } finally {
        current?.pending.delete(confirms.lost);
        confirms.stop();
      }
    },
    async close() {
      closed = true;
      const current = link;
      link = undefined;
      if (current) await current.then(({ model }) => model.close()).catch(() => {});
    },
  };
}

/**
 * The AMQP properties a message is published with: persistent, `message_id` = the message id,
 * `type` = the event type URL, `content_type` = the payload's format, the headers as AMQP headers.
 */
export function rabbitMqProperties(message: BrokerMessage): Options.Publish {
  return {
    messageId: message.id,
    persistent: true,
    contentType: message.headers[MESSAGE_HEADERS.contentType] ?? PROTOBUF_CONTENT_TYPE,
    type: message.headers[MESSAGE_HEADERS.eventType],
    headers: message.headers,
  };
}

const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';

function routingKeyOf(key: string): string {
  const bytes = Buffer.from(key, 'utf8');
  // the same id always gives the same key, so routing by it stays per entity
  return bytes.byteLength <= MAX_ROUTING_KEY_BYTES ? key : bytes.subarray(0, MAX_ROUTING_KEY_BYTES).toString('utf8');
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the broker';
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : error === undefined ? 'closed' : String(error);
}
