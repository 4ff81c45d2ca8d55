import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs, type Any } from '@bufbuild/protobuf/wkt';
import { InvalidArgumentError, MessageTooLargeError } from '@chiefofstate/core';
import {
  EventWrapperSchema,
  HandleCommandRequestSchema,
  HandleEventRequestSchema,
  MetaDataSchema,
  isUnsetAny,
  typeNameOf,
  type MetaData,
} from '@chiefofstate/protocol';
import { callOptions, commandTraceContext, type Command } from './command.js';
import { anyFieldBytes } from './message-size.js';
import type { Clock, WriteHandlerPort } from './ports.js';

/** What a command's events come to: see decide. */
export interface Outcome {
  readonly events: Uint8Array[];
  readonly state: Any;
  readonly meta: MetaData;
  readonly bytes: number;
}

export interface DeciderOptions {
  readonly handler: WriteHandlerPort;
  readonly clock: Clock;
  /** allowed state type names; undefined: no validation */
  readonly allowedStates: ReadonlySet<string> | undefined;
  /** allowed event type names; undefined: no validation */
  readonly allowedEvents: ReadonlySet<string> | undefined;
  /** COS_GRPC_MAX_MESSAGE_BYTES */
  readonly maxMessageBytes: number;
  /** the size the longest read-side id adds to a read-side delivery; undefined: no read sides */
  readonly readSideIdBytes: number | undefined;
}

export type Decide = (entityId: string, priorState: Any, priorMeta: MetaData, priorRevision: number, command: Command) => Promise<Outcome | undefined>;

/**
 * What the write handler makes of one command: HandleCommand, then HandleEvent for each event,
 * checked (types, message sizes) and serialized as EventWrappers, ready to append.
 */
export function createDecider(options: DeciderOptions): Decide {
  const { handler, clock, allowedStates, allowedEvents, maxMessageBytes, readSideIdBytes } = options;

  /** Asks the handler; returns the serialized events with the resulting state, or undefined for none. */
  async function decide(
    entityId: string,
    priorState: Any,
    priorMeta: MetaData,
    priorRevision: number,
    command: Command,
  ): Promise<Outcome | undefined> {
    const { request } = command;
    const response = await handler.handleCommand(
      create(HandleCommandRequestSchema, {
        command: request.command,
        priorState,
        priorEventMeta: priorMeta,
      }),
      callOptions(command, clock.now().getTime()),
    );
    const events =
      response.events.length > 0 ? response.events : isUnsetAny(response.event) ? [] : [response.event!];
    if (events.length === 0) return undefined;
    if (allowedEvents) {
      for (const event of events) {
        if (!allowedEvents.has(typeNameOf(event.typeUrl))) {
          throw new InvalidArgumentError(`invalid event: ${event.typeUrl}`);
        }
      }
    }

    const revisionDate = timestampFromMs(clock.now().getTime());
    const headers = request.persistedHeaders ?? [];
    const traceHeaders = commandTraceContext(command);
    const serialized: Uint8Array[] = [];
    let state = priorState;
    let meta = priorMeta;
    let revision = priorRevision;
    for (const event of events) {
      meta = create(MetaDataSchema, {
        entityId,
        revisionNumber: ++revision,
        revisionDate,
        headers,
      });
      const { resultingState } = await handler.handleEvent(
        create(HandleEventRequestSchema, { event, priorState: state, eventMeta: meta }),
        callOptions(command, clock.now().getTime()),
      );
      if (resultingState === undefined || isUnsetAny(resultingState)) {
        throw new InvalidArgumentError('event handler replied with empty state');
      }
      if (allowedStates && !allowedStates.has(typeNameOf(resultingState.typeUrl))) {
        throw new InvalidArgumentError(`invalid state: ${resultingState.typeUrl}`);
      }
      state = resultingState;
      const wrapper = toBinary(EventWrapperSchema, create(EventWrapperSchema, { event, resultingState, meta, ...traceHeaders }));
      // HandleReadSideRequest{event, state, meta, read_side_id} is the EventWrapper plus the id
      if (readSideIdBytes !== undefined && wrapper.byteLength + readSideIdBytes > maxMessageBytes) {
        throw tooLarge(entityId, 'a read-side delivery of its event', wrapper.byteLength + readSideIdBytes);
      }
      serialized.push(wrapper);
    }
    // The reply {state, meta} is the last EventWrapper without its event; the entity's next
    // HandleCommand request is that plus a command (this one's size stands in for the next).
    const bytes = serialized[serialized.length - 1]!.byteLength - anyFieldBytes(events[events.length - 1]);
    const nextRequest = bytes + anyFieldBytes(request.command);
    if (nextRequest > maxMessageBytes) throw tooLarge(entityId, 'the reply and the next HandleCommand request', nextRequest);
    return { events: serialized, state, meta, bytes };
  }

  function tooLarge(entityId: string, what: string, bytes: number): MessageTooLargeError {
    return new MessageTooLargeError(
      `the new state of entity ${JSON.stringify(entityId)} makes ${what} ${bytes} bytes, over the ${maxMessageBytes}-byte message limit (COS_GRPC_MAX_MESSAGE_BYTES): nothing was persisted`,
    );
  }

  return decide;
}
