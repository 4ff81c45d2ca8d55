export { decodePayload, headerValue, MESSAGE_HEADERS, messageId, toBrokerMessage, type StoredEvent } from './broker-message.js';
export { envelopeOf, readEnvelope, type EnvelopeHeader, type EventEnvelope } from './event-envelope.js';
export { createNatsSink, type NatsSinkOptions } from './nats-sink.js';
export { createKeyOrder, publishFailure, publishOrdered, publishOrderedOn, publishOrderedWith, withTimeout, type KeyOrder, type PublishFailure } from './ordered.js';
export {
  createPublisherHandler,
  createSink,
  PUBLISHER_RETRY,
  type PublisherHandler,
  type PublisherSettings,
} from './publisher-handler.js';
export type { BrokerMessage, EventSink } from './ports.js';
export { createRabbitMqSink, rabbitMqProperties, redactUrl, type RabbitMqSinkOptions } from './rabbitmq-sink.js';
