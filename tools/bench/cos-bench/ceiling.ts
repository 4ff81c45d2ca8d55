// The benchmark's ceiling: ChiefOfStateService on the same gRPC edge as cos-server
// (@chiefofstate/grpc-api), calling the same handler with the same client
// (@chiefofstate/handler-client): for each ProcessCommand, HandleCommand then HandleEvent, then the
// reply. No entity runtime, no journal: what the gRPC hops alone cost. Run as its own process
// (from the packages' built dist, like cos-server); prints `listening <port>` once bound.
// Env: HANDLER_PORT (required), PORT (default 0).
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { createChiefOfStateService, startGrpcServer } from '@chiefofstate/grpc-api';
import { createWriteSideClient } from '@chiefofstate/handler-client';
import {
  ChiefOfStateService,
  HandleCommandRequestSchema,
  HandleEventRequestSchema,
  MetaDataSchema,
  emptyState,
  isUnsetAny,
} from '@chiefofstate/protocol';
import { InvalidArgumentError } from '@chiefofstate/core';

const COMMAND_TIMEOUT_MS = 5000; // COS_COMMAND_HANDLER_TIMEOUT's default, as cos-server runs
const handler = createWriteSideClient({ host: '127.0.0.1', port: Number(process.env['HANDLER_PORT']), timeoutMs: 5000 });

const server = await startGrpcServer({
  host: '127.0.0.1',
  port: Number(process.env['PORT'] ?? 0),
  maxMessageBytes: 4 * 1024 * 1024,
  routes: (router) => {
    router.service(
      ChiefOfStateService,
      createChiefOfStateService({
        headers: { propagated: [], persisted: [] },
        commandTimeoutMs: COMMAND_TIMEOUT_MS,
        processor: {
          async processCommand(request) {
            // The same two calls cos-server makes for a command on a new entity, with the same
            // call options (caller's signal, remaining time, propagated headers).
            const call = () => ({
              headers: request.propagatedHeaders,
              signal: request.signal,
              timeoutMs: request.deadline === undefined ? undefined : request.deadline - Date.now(),
            });
            const priorEventMeta = create(MetaDataSchema, { entityId: request.entityId });
            const decided = await handler.handleCommand(
              create(HandleCommandRequestSchema, { command: request.command, priorState: emptyState(), priorEventMeta }),
              call(),
            );
            const event = decided.events[0] ?? decided.event;
            if (event === undefined || isUnsetAny(event)) return { state: emptyState(), meta: priorEventMeta };
            const meta = create(MetaDataSchema, {
              entityId: request.entityId,
              revisionNumber: 1,
              revisionDate: timestampFromMs(Date.now()),
            });
            const { resultingState } = await handler.handleEvent(
              create(HandleEventRequestSchema, { event, priorState: emptyState(), eventMeta: meta }),
              call(),
            );
            if (resultingState === undefined) throw new InvalidArgumentError('event handler replied with empty state');
            return { state: resultingState, meta };
          },
          getState: () => Promise.reject(new InvalidArgumentError('the ceiling keeps no state')),
        },
      }),
    );
  },
});
process.stdout.write(`listening ${server.port}\n`);
const stop = () =>
  void server
    .close(1000)
    .then(() => handler.close())
    .then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
