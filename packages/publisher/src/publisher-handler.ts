import { create, fromBinary, type Registry } from '@bufbuild/protobuf';
import {
  EventWrapperSchema,
  HandleReadSideResponseSchema,
  createTypeRegistry,
  messageToJson,
  type HandleReadSideRequest,
  type HandleReadSideResponse,
} from '@chiefofstate/protocol';
import { MESSAGE_HEADERS, toBrokerMessage, type StoredEvent } from './broker-message.js';
import { createNatsSink } from './nats-sink.js';
import { publishFailure } from './ordered.js';
import type { BrokerMessage, EventSink } from './ports.js';
import { createRabbitMqSink } from './rabbitmq-sink.js';

/** What a publisher needs of its configuration (@chiefofstate/config's PublisherConfig fits). */
export type PublisherSettings =
  | { readonly publisherId: string; readonly sink: 'nats'; readonly url: string; readonly subject: string; readonly timeoutMs: number }
  | {
      readonly publisherId: string;
      readonly sink: 'rabbitmq';
      readonly url: string;
      readonly exchange: string;
      readonly routingKey: string | undefined;
      readonly timeoutMs: number;
    };

/**
 * A publisher as the read-side engine runs it: a "read side handler" that publishes each event
 * to the sink and answers `successful` only once the broker acknowledged it, so the engine
 * commits the offset after the acknowledgement and re-delivers (same message id) otherwise.
 * The shape is the engine's ReadSideHandlerPort (structural: adapters do not import it).
 */
export interface PublisherHandler {
  readonly sink: EventSink;
  handleReadSide(
    request: HandleReadSideRequest,
    call?: { readonly timeoutMs?: number; readonly record?: StoredEvent },
  ): Promise<HandleReadSideResponse>;
  /**
   * A read batch of one shard at once: each payload decoded once into its message, the batch
   * handed to the sink. Rejects with `accepted` = the leading events the broker acknowledged
   * (the engine goes on after them).
   */
  handleBatch(events: readonly StoredEvent[], call: { readonly timeoutMs?: number }): Promise<void>;
  /** a shard's next batch may come before the previous one settled: the sink keeps each key's order across them */
  readonly overlapBatches: true;
  close(): Promise<void>;
}

const ACCEPTED = create(HandleReadSideResponseSchema, { successful: true });

/** How a publisher writes each event's payload (COS_PUBLISHER_CONFIG `format`). */
export interface PayloadOptions {
  /**
   * `protobuf` (default): the serialized EventWrapper as stored. `json`: the EventWrapper in
   * proto3 JSON (lowerCamelCase), its Anys as JSON with `@type` when `registry` knows their type
   * (COS_PROTO_DESCRIPTOR_SET), else as the base64 of the serialized Any; the message then carries
   * `content-type: application/json`.
   */
  readonly format?: 'protobuf' | 'json';
  readonly registry?: Registry;
}

const encoder = new TextEncoder();

export function createPublisherHandler(sink: EventSink, options: PayloadOptions = {}): PublisherHandler {
  const toMessage = messageMaker(options);
  /** shards with a batch in flight that holds an unreadable event, and how many such batches */
  const unreadableInFlight = new Map<number, number>();
  return {
    sink,
    async handleReadSide(_request, call) {
      // the stored bytes, not the request: the EventWrapper's trace context is not in the request
      if (!call?.record) throw new Error('a publisher needs the journal event (ReadSideCallOptions.record)');
      await sink.publish([toMessage(call.record)], call.timeoutMs !== undefined ? { timeoutMs: call.timeoutMs } : undefined);
      return ACCEPTED;
    },
    async handleBatch(events, call) {
      // a batch handed over while an earlier one holds an event that is no EventWrapper: its
      // entity's later events must not go before it, and which entity that is cannot be read
      const shard = events[0]?.shard ?? 0;
      if (unreadableInFlight.has(shard)) throw publishFailure(new Error('an earlier batch of this shard holds an event that is not an EventWrapper'), 0);
      const messages: BrokerMessage[] = [];
      let unreadable: unknown;
      for (const event of events) {
        try {
          messages.push(toMessage(event));
        } catch (error) {
          unreadable = new Error(`the journal event at position ${event.position} is not an EventWrapper (${error instanceof Error ? error.message : String(error)})`);
          break;
        }
      }
      if (unreadable !== undefined) unreadableInFlight.set(shard, (unreadableInFlight.get(shard) ?? 0) + 1);
      try {
        if (messages.length > 0) await sink.publish(messages, call.timeoutMs !== undefined ? { timeoutMs: call.timeoutMs } : undefined);
      } finally {
        if (unreadable !== undefined) {
          const left = unreadableInFlight.get(shard)! - 1;
          if (left > 0) unreadableInFlight.set(shard, left);
          else unreadableInFlight.delete(shard);
        }
      }
      if (unreadable !== undefined) throw publishFailure(unreadable, messages.length);
    },
    overlapBatches: true,
    close: () => sink.close(),
  };
}

/** The broker message of an event in the configured payload format. */
function messageMaker(options: PayloadOptions): (event: StoredEvent) => BrokerMessage {
  if (options.format !== 'json') return (event) => toBrokerMessage(event);
  const registry = options.registry ?? createTypeRegistry();
  return (event) => {
    const message = toBrokerMessage(event);
    const json = messageToJson(EventWrapperSchema, fromBinary(EventWrapperSchema, event.payload), { registry });
    return {
      ...message,
      headers: { ...message.headers, [MESSAGE_HEADERS.contentType]: 'application/json' },
      payload: encoder.encode(JSON.stringify(json)),
    };
  };
}

/** The sink of a configured publisher. A Kafka sink would be one more case here. */
export function createSink(settings: PublisherSettings): EventSink {
  switch (settings.sink) {
    case 'nats':
      return createNatsSink({ url: settings.url, subject: settings.subject, timeoutMs: settings.timeoutMs, name: `chiefofstate-${settings.publisherId}` });
    case 'rabbitmq':
      return createRabbitMqSink({
        url: settings.url,
        exchange: settings.exchange,
        timeoutMs: settings.timeoutMs,
        ...(settings.routingKey !== undefined ? { routingKey: settings.routingKey } : {}),
      });
  }
}

/**
 * How the engine retries a publisher's event: without end (a broker that is down must not stop
 * or skip anything), backing off to 5 s; pause, restart and shutdown still interrupt the wait.
 */
export const PUBLISHER_RETRY = { maxRetries: Number.POSITIVE_INFINITY, initialBackoffMs: 200, maxBackoffMs: 5_000 } as const;
