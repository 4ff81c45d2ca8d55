// A programmable WriteSideHandlerService on a stock @grpc/grpc-js server, run as its own process
// by the end-to-end tests. Commands are Any{type.googleapis.com/cos.test.<Verb>, JSON}; the state
// is Any{type.googleapis.com/cos.test.State, JSON} and records what the handler saw, so tests can
// check every input COS sent.
import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import {
  HandleCommandResponseSchema,
  HandleEventResponseSchema,
  WriteSideHandlerService,
  type HandleCommandRequest,
  type HandleEventRequest,
  type MetaData,
} from '@chiefofstate/protocol';
import { encodeRpcStatus, GrpcJsStatusError, startGrpcJsServer } from '@chiefofstate/testing';

const PREFIX = 'type.googleapis.com/cos.test.';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface TestState {
  events: string[];
  /** what HandleCommand saw as prior state / meta for the command that produced the latest event */
  priorStateType: string;
  priorRevision: number;
  priorEntityId: string;
  /** revision in the event_meta of the latest HandleEvent */
  eventRevision: number;
  /** selected request headers seen by HandleCommand and HandleEvent */
  headers: { command: Record<string, string>; event: Record<string, string> };
  persistedHeaderKeys: string[];
}

const json = (typeName: string, value: unknown): Any =>
  create(AnySchema, { typeUrl: PREFIX + typeName, value: encoder.encode(JSON.stringify(value)) });
const parse = <T>(any: Any | undefined): T => JSON.parse(decoder.decode(any?.value ?? new Uint8Array())) as T;
const verb = (any: Any | undefined) => any?.typeUrl.slice(PREFIX.length) ?? '';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const ECHOED = ['x-tenant', 'x-user', 'traceparent'];
function echo(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ECHOED) {
    const value = metadata.get(name)[0];
    if (value !== undefined) out[name] = String(value);
  }
  return out;
}

interface EventBody {
  name: string;
  priorStateType: string;
  priorRevision: number;
  priorEntityId: string;
  commandHeaders: Record<string, string>;
  failApply?: boolean;
  /** `Big`: the HandleEventResponse is padded to this many bytes */
  responseBytes?: number;
}

/** LOG_COMMANDS=1: a line per HandleCommand, so tests can count the calls an entity got */
const logCommands = process.env['LOG_COMMANDS'] === '1';

function handleCommand(request: HandleCommandRequest, call: grpc.ServerUnaryCall<unknown, unknown>) {
  const command = request.command;
  if (logCommands) process.stdout.write(`HandleCommand ${request.priorEventMeta?.entityId ?? ''} ${verb(command)}\n`);
  let args: Record<string, unknown>;
  try {
    args = parse<Record<string, unknown>>(command);
  } catch {
    // a handler that checks its input, as a real one would (the fuzz test sends garbage)
    throw new GrpcJsStatusError(grpc.status.INVALID_ARGUMENT, 'the command is not JSON');
  }
  const meta: MetaData | undefined = request.priorEventMeta;
  const base = {
    priorStateType: request.priorState?.typeUrl ?? '',
    priorRevision: meta?.revisionNumber ?? -1,
    priorEntityId: meta?.entityId ?? '',
    commandHeaders: echo(call.metadata),
  };
  const event = (name: string, extra: Partial<EventBody> = {}) => json('Event', { name, ...base, ...extra });
  switch (verb(command)) {
    case 'Emit': {
      const names = (args['events'] as string[] | undefined) ?? ['emitted'];
      if (args['deprecated']) return create(HandleCommandResponseSchema, { event: event(names[0]!) });
      // both set: `events` wins, the deprecated field is ignored
      return create(HandleCommandResponseSchema, {
        events: names.map((n) => event(n, { failApply: n === args['failApplyOf'] })),
        ...(args['alsoDeprecated'] ? { event: event('deprecated-ignored') } : {}),
      });
    }
    case 'Noop':
      return create(HandleCommandResponseSchema, {
        ...(args['emptyAny'] ? { event: create(AnySchema, { typeUrl: '', value: new Uint8Array() }) } : {}),
      });
    case 'Big':
      return create(HandleCommandResponseSchema, { events: [event('big', { responseBytes: Number(args['bytes']) })] });
    case 'Slow':
      return sleep(Number(args['ms'] ?? 1000)).then(() => create(HandleCommandResponseSchema, { events: [event('slow')] }));
    case 'EmptyState':
      return create(HandleCommandResponseSchema, { events: [event('__empty_state__')] });
    case 'BadType':
      return create(HandleCommandResponseSchema, { events: [json('Forbidden', { name: 'forbidden', ...base })] });
    case 'BadState':
      return create(HandleCommandResponseSchema, { events: [event('__bad_state__')] });
    case 'Fail': {
      const metadata = new grpc.Metadata();
      const code = Number(args['code'] ?? grpc.status.FAILED_PRECONDITION);
      const message = String(args['message'] ?? 'refused');
      metadata.set(
        'grpc-status-details-bin',
        Buffer.from(
          encodeRpcStatus({
            code,
            message,
            details: [
              {
                typeUrl: String(args['typeUrl'] ?? 'type.googleapis.com/cos.test.Detail'),
                value: encoder.encode('{"why":"because"}'),
              },
            ],
          }),
        ),
      );
      throw new GrpcJsStatusError(code, message, metadata);
    }
    default:
      throw new GrpcJsStatusError(grpc.status.INVALID_ARGUMENT, `unknown command ${command?.typeUrl}`);
  }
}

function handleEvent(request: HandleEventRequest, call: grpc.ServerUnaryCall<unknown, unknown>) {
  const body = parse<EventBody>(request.event);
  if (body.name === '__empty_state__') return create(HandleEventResponseSchema, {});
  if (body.failApply) throw new GrpcJsStatusError(grpc.status.INTERNAL, `cannot apply ${body.name}`);
  const prior: Partial<TestState> = request.priorState?.typeUrl === PREFIX + 'State' ? parse<TestState>(request.priorState) : {};
  const state: TestState = {
    events: [...(prior.events ?? []), body.name],
    priorStateType: body.priorStateType,
    priorRevision: body.priorRevision,
    priorEntityId: body.priorEntityId,
    eventRevision: request.eventMeta?.revisionNumber ?? -1,
    headers: { command: body.commandHeaders, event: echo(call.metadata) },
    persistedHeaderKeys: (request.eventMeta?.headers ?? []).map((h) => h.key),
  };
  if (body.responseBytes !== undefined) return padded(state, body.responseBytes);
  return create(HandleEventResponseSchema, {
    resultingState: json(body.name === '__bad_state__' ? 'ForbiddenState' : 'State', state),
  });
}

/** The state with a `pad` string making the serialized HandleEventResponse `bytes` long. */
function padded(state: TestState, bytes: number) {
  let pad = 0;
  // a few rounds: the length prefixes grow with the pad
  for (let round = 0; round < 4; round++) {
    const response = create(HandleEventResponseSchema, { resultingState: json('State', { ...state, pad: 'x'.repeat(pad) }) });
    const size = toBinary(HandleEventResponseSchema, response).byteLength;
    if (size === bytes) return response;
    pad = Math.max(0, pad + bytes - size);
  }
  throw new GrpcJsStatusError(grpc.status.INTERNAL, `cannot pad a state to ${bytes} bytes`);
}

const server = await startGrpcJsServer(
  [
    {
      service: WriteSideHandlerService,
      implementation: { handleCommand: handleCommand as never, handleEvent: handleEvent as never },
    },
  ],
  Number(process.env['PORT'] ?? 0),
);
process.stdout.write(`listening ${server.port}\n`);
const stop = () => void server.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
