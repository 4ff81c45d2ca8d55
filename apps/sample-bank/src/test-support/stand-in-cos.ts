import { createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { timestampNow, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { ChiefOfStateService, emptyState, MetaDataSchema, WriteSideHandlerService, type MetaData } from '@chiefofstate/protocol';

/**
 * A stand-in for Chief-of-State in memory, for the CLI's tests only: ProcessCommand calls the
 * real bank handler over gRPC exactly as the spec says (Empty prior state, HandleCommand, then
 * HandleEvent per event, revision + 1 per event; handler errors passed through), but keeps the
 * state in a Map. The real server, with its journal, is tested end to end in apps/cos-server.
 * Idempotency keys as COS answers them (the first reply again, for the same key and account),
 * and `loseReplies`: that many next commands are applied, then answered UNAVAILABLE, as when a
 * reply is lost on the way.
 */
export interface StandInCos {
  readonly address: string;
  /** commands to apply and then answer with UNAVAILABLE */
  loseReplies: number;
  /** the request headers of every ProcessCommand */
  readonly headers: Headers[];
  close(): Promise<void>;
}

export async function startStandInCos(handlerAddress: string): Promise<StandInCos> {
  const sessionManager = new Http2SessionManager(`http://${handlerAddress}`);
  const handler = createClient(
    WriteSideHandlerService,
    createGrpcTransport({ baseUrl: `http://${handlerAddress}`, sessionManager }),
  );
  const entities = new Map<string, { state: Any; meta: MetaData }>();
  const replies = new Map<string, { state: Any; meta: MetaData }>();
  const stand = { loseReplies: 0, headers: [] as Headers[] };

  const adapter = connectNodeAdapter({
    routes: (router) =>
      router.service(ChiefOfStateService, {
        async processCommand(request, context) {
          stand.headers.push(context.requestHeader);
          const reply = await apply(request, context.requestHeader.get('x-cos-idempotency-key'));
          if (stand.loseReplies > 0) {
            stand.loseReplies--;
            throw new ConnectError('the reply was lost', Code.Unavailable);
          }
          return reply;
        },
        getState(request) {
          const entity = entities.get(request.entityId);
          if (!entity) throw new ConnectError(`entity ${request.entityId} not found`, Code.NotFound);
          return entity;
        },
      }),
  });

  /** Runs the command as COS would, or answers the reply recorded for its idempotency key. */
  async function apply(request: { entityId: string; command?: Any | undefined }, key: string | null) {
    if (request.entityId === '') throw new ConnectError('empty entity ID', Code.InvalidArgument);
    const replayed = key === null ? undefined : replies.get(`${request.entityId}\u0000${key}`);
    if (replayed) return replayed;
    const current = entities.get(request.entityId) ?? {
      state: emptyState(),
      meta: create(MetaDataSchema, { entityId: request.entityId }),
    };
    const { events } = await handler.handleCommand({
      command: request.command,
      priorState: current.state,
      priorEventMeta: current.meta,
    });
    let { state, meta } = current;
    for (const event of events) {
      meta = create(MetaDataSchema, {
        entityId: request.entityId,
        revisionNumber: meta.revisionNumber + 1,
        revisionDate: timestampNow(),
      });
      const { resultingState } = await handler.handleEvent({ event, priorState: state, eventMeta: meta });
      if (!resultingState) throw new ConnectError('event handler replied with empty state', Code.InvalidArgument);
      state = resultingState;
    }
    entities.set(request.entityId, { state, meta });
    if (key !== null) replies.set(`${request.entityId}\u0000${key}`, { state, meta });
    return { state, meta };
  }

  const server = createServer(adapter);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(stand, {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        sessionManager.abort();
        server.close(() => resolve());
      }),
  });
}
