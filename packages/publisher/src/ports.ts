/**
 * One event as it goes to a broker. Every sink maps it onto its own message: the id onto the
 * broker's message id (deduplication), the key onto what the broker partitions or routes by.
 */
export interface BrokerMessage {
  /** `<entity_id>:<revision>`: the same for every (re)publication of the event */
  readonly id: string;
  /** the entity id: events with one key keep their order */
  readonly key: string;
  /** header name -> value, printable ASCII values (see messageHeaders) */
  readonly headers: Readonly<Record<string, string>>;
  /** the serialized chief_of_state.v1.EventWrapper */
  readonly payload: Uint8Array;
}

/**
 * Where published events go. `publish` resolves only once the broker has acknowledged every
 * message of the batch (stored it), and rejects otherwise, with a numeric `accepted` on the error
 * when it knows how many leading messages of the batch were acknowledged (PublishFailure); the
 * caller then publishes the rest again (same ids). Messages of one key are acknowledged in batch order: a sink never sends a
 * message of a key before the previous message of that key was acknowledged, so a failure
 * cannot leave a later event stored without an earlier one.
 */
export interface EventSink {
  /** `nats`, `rabbitmq`, ... for logs and metrics */
  readonly kind: string;
  publish(batch: readonly BrokerMessage[], options?: { readonly timeoutMs?: number }): Promise<void>;
  close(): Promise<void>;
}
