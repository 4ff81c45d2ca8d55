import { create, fromBinary, type MessageInitShape, type MessageShape, type UnknownField } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import {
  SubscribeAllResponseSchema,
  SubscribeResponseSchema,
  type ChiefOfStateService,
  type SubscribeAllRequest,
  type SubscribeRequest,
} from '@chiefofstate/protocol';
import { tooLarge } from './grpc-frames.js';
import { callTraceContext } from './server-tracing.js';
import { failCall } from './status.js';
import { withEncodedStream } from './unary-call.js';
import type { Context } from '@opentelemetry/api';

/** One event as a subscription yields it (satisfied by @chiefofstate/subscriptions). */
export interface SubscribedEventLike {
  /** the global journal position, sent as `offset` */
  readonly position: bigint;
  /**
   * the serialized EventWrapper as stored; the same object for every subscriber an event goes
   * to (then its response fields are encoded once for all of them)
   */
  readonly payload: Uint8Array;
}

export interface SubscriptionLike {
  readonly id: string;
  /** the events a page at a time, in order; ends on Unsubscribe, throws what ended it otherwise */
  readonly batches: AsyncIterable<readonly SubscribedEventLike[]>;
}

/**
 * What the subscription RPCs need (satisfied by @chiefofstate/subscriptions' SubscriptionHub).
 * `subscribe` and `subscribeAll` resolve once the subscription's start is fixed.
 */
export interface SubscriptionPort {
  subscribe(options: { entityId: string; subscriptionId?: string; fromRevision?: bigint; signal: AbortSignal }): Promise<SubscriptionLike>;
  subscribeAll(options: { subscriptionId?: string; afterPosition?: bigint; signal: AbortSignal }): Promise<SubscriptionLike>;
  unsubscribe(subscriptionId: string): Promise<void>;
}

export type SubscriptionMethod = 'Subscribe' | 'SubscribeAll' | 'Unsubscribe' | 'UnsubscribeAll';

type SubscriptionImpl = Pick<ServiceImpl<typeof ChiefOfStateService>, 'subscribe' | 'subscribeAll' | 'unsubscribe' | 'unsubscribeAll'>;

/**
 * Subscribe, SubscribeAll (server streaming: each event as `{subscription_id, event,
 * resulting_state, meta, offset}`, pulled from the subscription only as fast as the caller takes
 * them), Unsubscribe and UnsubscribeAll (both end the subscriptions with that id, on any replica).
 * A stream ends OK on Unsubscribe, with the COS error's status otherwise (its message says where
 * to resume).
 */
export function createSubscriptionMethods(
  port: SubscriptionPort,
  onError?: (method: SubscriptionMethod, error: unknown, traceContext: Context | undefined) => void,
): SubscriptionImpl {
  const fail = (method: SubscriptionMethod, error: unknown, traceContext: Context | undefined) =>
    failCall(error, onError && ((failure) => onError(method, failure, traceContext)));
  const subscribeRequest = (request: SubscribeRequest, signal: AbortSignal) => ({
    entityId: request.entityId,
    subscriptionId: request.subscriptionId,
    ...(request.fromRevision !== undefined ? { fromRevision: request.fromRevision } : {}),
    signal,
  });
  const subscribeAllRequest = (request: SubscribeAllRequest, signal: AbortSignal) => ({
    subscriptionId: request.subscriptionId,
    ...(request.afterOffset !== undefined ? { afterPosition: request.afterOffset } : {}),
    signal,
  });
  return {
    subscribe: withEncodedStream(
      (request: SubscribeRequest, context: HandlerContext) =>
        stream('Subscribe', SubscribeResponseSchema, context, () => port.subscribe(subscribeRequest(request, context.signal))),
      (input, context, limits) =>
        encoded('Subscribe', context, limits, () => port.subscribe(subscribeRequest(input as SubscribeRequest, context.signal))),
    ),
    subscribeAll: withEncodedStream(
      (request: SubscribeAllRequest, context: HandlerContext) =>
        stream('SubscribeAll', SubscribeAllResponseSchema, context, () => port.subscribeAll(subscribeAllRequest(request, context.signal))),
      (input, context, limits) =>
        encoded('SubscribeAll', context, limits, () => port.subscribeAll(subscribeAllRequest(input as SubscribeAllRequest, context.signal))),
    ),
    unsubscribe: (request, context) => unsubscribe('Unsubscribe', request.subscriptionId, context),
    unsubscribeAll: (request, context) => unsubscribe('UnsubscribeAll', request.subscriptionId, context),
  };

  /** Connect's form: a message per event. */
  async function* stream<Schema extends typeof SubscribeResponseSchema | typeof SubscribeAllResponseSchema>(
    method: SubscriptionMethod,
    schema: Schema,
    context: HandlerContext,
    open: () => Promise<SubscriptionLike>,
  ): AsyncGenerator<MessageShape<Schema>> {
    // JSON writes a message's fields, never its unknown ones: the shared bytes are decoded for it
    const json = /json/i.test(context.requestHeader.get('content-type') ?? '');
    try {
      const subscription = await open();
      for await (const batch of subscription.batches) {
        for (const event of batch) yield json ? decodedResponseOf(schema, subscription.id, event) : responseOf(schema, subscription.id, event);
      }
    } catch (error) {
      throw fail(method, error, context.values.get(callTraceContext));
    }
  }

  /** The gRPC fast path's form: each page as ready frames, opened before the response headers go out. */
  async function encoded(
    method: SubscriptionMethod,
    context: HandlerContext,
    limits: { readonly maxMessageBytes: number },
    open: () => Promise<SubscriptionLike>,
  ): Promise<AsyncIterable<Uint8Array>> {
    let subscription: SubscriptionLike;
    try {
      subscription = await open();
    } catch (error) {
      throw fail(method, error, context.values.get(callTraceContext));
    }
    const frames = createFrameWriter(subscription.id, limits.maxMessageBytes);
    return (async function* () {
      try {
        for await (const batch of subscription.batches) yield frames(batch);
      } catch (error) {
        throw fail(method, error, context.values.get(callTraceContext));
      }
    })();
  }

  async function unsubscribe(method: SubscriptionMethod, subscriptionId: string, context: HandlerContext) {
    try {
      await port.unsubscribe(subscriptionId);
      return { subscriptionId };
    } catch (error) {
      throw fail(method, error, context.values.get(callTraceContext));
    }
  }
}

/**
 * The response's fields but the subscription id, encoded once per event: {event = 2,
 * resulting_state = 3, meta = 4} are the wrapper's {event = 1, resulting_state = 2, meta = 3}
 * bytes under their response numbers (the wrapper's trace context, 10 and 11, is not sent), and
 * offset = 10. Kept per payload object, which the subscriptions share across their subscribers.
 */
const sharedFields = new WeakMap<Uint8Array, UnknownField[]>();

const RESPONSE_NUMBER: Record<number, number | undefined> = { 1: 2, 2: 3, 3: 4 };

function fieldsOf(event: SubscribedEventLike): UnknownField[] {
  let fields = sharedFields.get(event.payload);
  if (fields === undefined) {
    fields = [];
    const reader = new BinaryReader(event.payload);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      // skip() returns the field's bytes after the tag (a length prefix included), as written
      const data = reader.skip(wireType, field);
      const no = RESPONSE_NUMBER[field];
      if (no !== undefined && wireType === WireType.LengthDelimited) fields.push({ no, wireType, data });
    }
    fields.push({ no: 10, wireType: WireType.Varint, data: new BinaryWriter().uint64(event.position).finish() });
    sharedFields.set(event.payload, fields);
  }
  return fields;
}

/**
 * One stream message: the subscription id, then the event's fields encoded once for every
 * subscriber (toBinary writes a message's unknown fields as they are; receivers read them as the
 * response's own fields), instead of encoding the event, state and metadata for each subscriber.
 */
function responseOf<Schema extends typeof SubscribeResponseSchema | typeof SubscribeAllResponseSchema>(
  schema: Schema,
  subscriptionId: string,
  event: SubscribedEventLike,
): MessageShape<Schema> {
  const message = create(schema, { subscriptionId } as MessageInitShape<Schema>);
  message.$unknown = fieldsOf(event);
  return message;
}

/** The response with its fields decoded from the shared bytes: for JSON, which leaves unknown fields out. */
function decodedResponseOf<Schema extends typeof SubscribeResponseSchema | typeof SubscribeAllResponseSchema>(
  schema: Schema,
  subscriptionId: string,
  event: SubscribedEventLike,
): MessageShape<Schema> {
  const message = fromBinary(schema, bytesOf(event)) as MessageShape<Schema>;
  message.subscriptionId = subscriptionId;
  return message;
}

/** The same fields as `fieldsOf`, as the bytes of one buffer: what follows the id in every frame. */
const sharedBytes = new WeakMap<Uint8Array, Uint8Array>();

function bytesOf(event: SubscribedEventLike): Uint8Array {
  let bytes = sharedBytes.get(event.payload);
  if (bytes === undefined) {
    const writer = new BinaryWriter();
    for (const field of fieldsOf(event)) writer.tag(field.no, field.wireType).raw(field.data);
    sharedBytes.set(event.payload, (bytes = writer.finish()));
  }
  return bytes;
}

/**
 * Frames for one subscription: per event, the gRPC prefix, the subscription id field (encoded
 * once) and the event's shared bytes, a page in one buffer. The bytes are those toBinary writes
 * for `responseOf`'s message (field order: the id, then the unknown fields).
 */
function createFrameWriter(subscriptionId: string, maxMessageBytes: number): (batch: readonly SubscribedEventLike[]) => Buffer {
  // proto3 leaves an empty string out, as toBinary does
  const head = subscriptionId === '' ? new Uint8Array(0) : new BinaryWriter().tag(1, WireType.LengthDelimited).string(subscriptionId).finish();
  return (batch) => {
    const shared = batch.map(bytesOf);
    let total = 0;
    for (const bytes of shared) {
      const size = head.byteLength + bytes.byteLength;
      if (size > maxMessageBytes) throw tooLarge(size, 'writeMaxBytes', maxMessageBytes);
      total += 5 + size;
    }
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (const bytes of shared) {
      const size = head.byteLength + bytes.byteLength;
      out[at] = 0;
      out.writeUInt32BE(size, at + 1);
      out.set(head, at + 5);
      out.set(bytes, at + 5 + head.byteLength);
      at += 5 + size;
    }
    return out;
  };
}
