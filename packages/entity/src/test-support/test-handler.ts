import { setTimeout as sleep } from 'node:timers/promises';
import { create, fromBinary } from '@bufbuild/protobuf';
import { AnySchema, Int32ValueSchema, StringValueSchema, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { createWriteSideClient, type WriteSideClient, type WriteSideClientOptions } from '@chiefofstate/handler-client';
import {
  WriteSideHandlerService,
  packAny,
  type HandleCommandRequest,
  type HandleEventRequest,
} from '@chiefofstate/protocol';
import { startTestGrpcServer, type TestGrpcServer } from '@chiefofstate/testing';
import { afterAll, beforeAll } from 'vitest';

/**
 * A real WriteSideHandlerService on loopback HTTP/2 for the runtime's tests. Commands and events
 * are google.protobuf.StringValue; the state is a StringValue listing the applied events,
 * comma separated, so tests see order and chaining. Command language:
 * - `emit:a,b,c` events a, b, c in `events`; `legacy:a` one event in the deprecated `event` field
 * - `noop` no events; `fail` an error with details; `slow:<ms>:a,b` waits, then emits
 * - event `!empty` gets no resulting state; event `!int` gets an Int32Value state
 * - `big:<n>` one event `!big:<n>`, whose resulting state is a StringValue of n `x`s
 */
export interface TestHandler {
  readonly server: TestGrpcServer;
  readonly commands: { request: HandleCommandRequest; headers: Headers }[];
  readonly events: { request: HandleEventRequest; headers: Headers }[];
  client(options?: Partial<WriteSideClientOptions>): WriteSideClient;
  /** in-flight HandleCommand calls, for the serial-per-entity check */
  readonly concurrency: { current: number; max: number; perEntityMax: Map<string, number> };
  stop(): Promise<void>;
}

export const FAILURE_DETAIL = { typeUrl: 'type.googleapis.com/google.protobuf.StringValue', text: 'insufficient funds' };

export function str(value: string): Any {
  return packAny(StringValueSchema, create(StringValueSchema, { value }));
}

export function textOf(any: Any | undefined): string {
  if (!any || any.typeUrl !== 'type.googleapis.com/google.protobuf.StringValue') return `<${any?.typeUrl}>`;
  return fromBinary(StringValueSchema, any.value).value;
}

export async function startTestHandler(): Promise<TestHandler> {
  const commands: TestHandler['commands'] = [];
  const events: TestHandler['events'] = [];
  const clients: WriteSideClient[] = [];
  const concurrency = { current: 0, max: 0, perEntityMax: new Map<string, number>() };
  const perEntity = new Map<string, number>();

  const server = await startTestGrpcServer((router) =>
    router.service(WriteSideHandlerService, {
      async handleCommand(request, context) {
        commands.push({ request, headers: context.requestHeader });
        const entityId = request.priorEventMeta?.entityId ?? '';
        const inEntity = (perEntity.get(entityId) ?? 0) + 1;
        perEntity.set(entityId, inEntity);
        concurrency.perEntityMax.set(entityId, Math.max(concurrency.perEntityMax.get(entityId) ?? 0, inEntity));
        concurrency.max = Math.max(concurrency.max, ++concurrency.current);
        try {
          const text = textOf(request.command);
          if (text === 'noop') return {};
          if (text === 'fail') {
            throw new ConnectError('insufficient funds', Code.FailedPrecondition, undefined, [
              { desc: StringValueSchema, value: { value: FAILURE_DETAIL.text } },
            ]);
          }
          if (text.startsWith('legacy:')) return { event: str(text.slice(7)) };
          if (text.startsWith('slow:')) {
            const [, ms, list] = text.split(':');
            await sleep(Number(ms));
            return { events: (list ?? '').split(',').filter(Boolean).map(str) };
          }
          if (text.startsWith('emit:')) return { events: text.slice(5).split(',').map(str) };
          if (text.startsWith('big:')) return { events: [str(`!${text}`)] };
          if (text.startsWith('badtype')) {
            return { events: [create(AnySchema, { typeUrl: 'type.googleapis.com/bank.v1.Unknown', value: new Uint8Array() })] };
          }
          throw new ConnectError(`unknown command ${text}`, Code.InvalidArgument);
        } finally {
          concurrency.current--;
          perEntity.set(entityId, (perEntity.get(entityId) ?? 1) - 1);
        }
      },
      handleEvent(request, context) {
        events.push({ request, headers: context.requestHeader });
        const event = textOf(request.event);
        if (event === '!empty') return {};
        if (event === '!int') return { resultingState: packAny(Int32ValueSchema, create(Int32ValueSchema, { value: 1 })) };
        if (event.startsWith('!big:')) return { resultingState: str('x'.repeat(Number(event.slice(5)))) };
        const prior = request.priorState?.typeUrl.endsWith('StringValue') ? textOf(request.priorState) : '';
        return { resultingState: str(prior === '' ? event : `${prior},${event}`) };
      },
    }),
  );

  return {
    server,
    commands,
    events,
    concurrency,
    client(options = {}) {
      const c = createWriteSideClient({ host: '127.0.0.1', port: server.port, timeoutMs: 5000, ...options });
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.close()));
      await server.stop();
    },
  };
}

/** The test handler of a spec file, with what it recorded; see useTestHandler. */
export interface UsedTestHandler extends Omit<TestHandler, 'stop'> {
  /** forgets the calls and the concurrency peaks recorded so far (between tests) */
  reset(): void;
}

/**
 * Starts a test handler before the tests of the enclosing suite (the file, at top level) and
 * stops it after them. The accessors read the running handler, so they are valid within tests
 * and hooks only.
 */
export function useTestHandler(): UsedTestHandler {
  let started: TestHandler | undefined;
  beforeAll(async () => {
    started = await startTestHandler();
  });
  afterAll(async () => {
    await started?.stop();
  });
  const current = (): TestHandler => {
    if (!started) throw new Error('the test handler runs only within the tests and their hooks');
    return started;
  };
  return {
    get server() {
      return current().server;
    },
    get commands() {
      return current().commands;
    },
    get events() {
      return current().events;
    },
    get concurrency() {
      return current().concurrency;
    },
    client: (options) => current().client(options),
    reset() {
      const handler = current();
      handler.commands.length = 0;
      handler.events.length = 0;
      handler.concurrency.max = 0;
      handler.concurrency.perEntityMax.clear();
    },
  };
}
