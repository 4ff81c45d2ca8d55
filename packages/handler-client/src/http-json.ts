import { create, fromBinary, toBinary, toJson, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { AnySchema, TimestampSchema, type Any } from '@bufbuild/protobuf/wkt';
import {
  HandleCommandResponseSchema,
  HandleEventResponseSchema,
  HandleReadSideResponseSchema,
  type HandleCommandRequest,
  type HandleEventRequest,
  type HandleReadSideRequest,
  type MetaData,
} from '@chiefofstate/protocol';

/*
 * The HTTP handler protocol of the newest upstream server (extensions.md section 1): JSON in
 * snake_case, every google.protobuf.Any as the base64 of the serialized Any (type URL and value
 * together), MetaData with revision_date as an RFC 3339 timestamp.
 */

/** One handler method over HTTP: its path, and its messages to and from JSON. */
export interface HttpRoute {
  readonly path: string;
  encode(request: MessageShape<DescMessage>): Record<string, unknown>;
  /** throws a TypeError naming what is wrong with the answer */
  decode(body: unknown): MessageShape<DescMessage>;
}

/** By the full method name, `chief_of_state.v1.WriteSideHandlerService/HandleCommand`. */
export const HTTP_ROUTES: ReadonlyMap<string, HttpRoute> = new Map<string, HttpRoute>([
  [
    'chief_of_state.v1.WriteSideHandlerService/HandleCommand',
    {
      path: '/v1/writeside/handleCommand',
      encode: (message) => {
        const request = message as HandleCommandRequest;
        return withoutUndefined({
          command: anyToBase64(request.command),
          prior_state: anyToBase64(request.priorState),
          prior_event_meta: metaToJson(request.priorEventMeta),
        });
      },
      decode: (body) => {
        const answer = objectOf(body);
        const event = field(answer, 'event');
        const events = field(answer, 'events');
        if (events !== undefined && events !== null && !Array.isArray(events)) throw new TypeError('"events" is not an array');
        return create(HandleCommandResponseSchema, {
          ...(event !== undefined && event !== null ? { event: anyFromBase64(event, 'event') } : {}),
          events: ((events as unknown[] | undefined | null) ?? []).map((item, index) => anyFromBase64(item, `events[${index}]`)),
        });
      },
    },
  ],
  [
    'chief_of_state.v1.WriteSideHandlerService/HandleEvent',
    {
      path: '/v1/writeside/handleEvent',
      encode: (message) => {
        const request = message as HandleEventRequest;
        return withoutUndefined({
          event: anyToBase64(request.event),
          prior_state: anyToBase64(request.priorState),
          event_meta: metaToJson(request.eventMeta),
        });
      },
      decode: (body) => {
        const state = field(objectOf(body), 'resulting_state');
        return create(HandleEventResponseSchema, state === undefined || state === null ? {} : { resultingState: anyFromBase64(state, 'resulting_state') });
      },
    },
  ],
  [
    'chief_of_state.v1.ReadSideHandlerService/HandleReadSide',
    {
      path: '/v1/readside/handle',
      encode: (message) => {
        const request = message as HandleReadSideRequest;
        return withoutUndefined({
          event: anyToBase64(request.event),
          state: anyToBase64(request.state),
          meta: metaToJson(request.meta),
          read_side_id: request.readSideId,
        });
      },
      decode: (body) => {
        const successful = field(objectOf(body), 'successful');
        if (successful !== undefined && successful !== null && typeof successful !== 'boolean') {
          throw new TypeError('"successful" is not a boolean');
        }
        return create(HandleReadSideResponseSchema, { successful: successful === true });
      },
    },
  ],
]);

export function anyToBase64(any: Any | undefined): string | undefined {
  return any === undefined ? undefined : Buffer.from(toBinary(AnySchema, any)).toString('base64');
}

function anyFromBase64(value: unknown, name: string): Any {
  if (typeof value !== 'string') throw new TypeError(`"${name}" is not a base64 string of a google.protobuf.Any`);
  try {
    return fromBinary(AnySchema, Buffer.from(value, 'base64'));
  } catch (error) {
    throw new TypeError(`"${name}" is not a serialized google.protobuf.Any: ${(error as Error).message}`);
  }
}

/** MetaData as upstream's HTTP JSON has it. */
export function metaToJson(meta: MetaData | undefined): Record<string, unknown> | undefined {
  if (meta === undefined) return undefined;
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(meta.data)) data[key] = anyToBase64(value)!;
  return withoutUndefined({
    entity_id: meta.entityId,
    revision_number: meta.revisionNumber,
    revision_date: meta.revisionDate === undefined ? undefined : toJson(TimestampSchema, meta.revisionDate),
    data,
    headers: meta.headers.map((header) =>
      header.value.case === 'bytesValue'
        ? { key: header.key, bytes_value: Buffer.from(header.value.value).toString('base64') }
        : { key: header.key, string_value: header.value.case === 'stringValue' ? header.value.value : '' },
    ),
  });
}

function objectOf(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new TypeError('the body is not a JSON object');
  return body as Record<string, unknown>;
}

/** A field by its snake_case name, or its lowerCamelCase one (what proto3 JSON writers emit). */
function field(object: Record<string, unknown>, name: string): unknown {
  if (name in object) return object[name];
  return object[name.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase())];
}

function withoutUndefined(object: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(object)) if (object[key] === undefined) delete object[key];
  return object;
}
