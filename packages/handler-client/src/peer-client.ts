import { CommitOutcomeUnknownError, HandlerFailedError, HandlerUnavailableError, PeerRefusedError, PeerUnreachableError } from '@chiefofstate/core';
import { ConnectError, createClient, type Client } from '@connectrpc/connect';
import {
  ChiefOfStateService,
  FORWARDED_BY_HEADER,
  REFUSED_TRAILER,
  type GetStateRequest,
  type GetStateResponse,
  type ProcessCommandRequest,
  type ProcessCommandResponse,
} from '@chiefofstate/protocol';
import { createInvoker, headerRecord, type ConnectCallOptions } from './invoke.js';
import { isTlsFailure } from './tls-failure.js';
import { createHandlerTransport, type HandlerCallOptions, type HandlerClientOptions, type HandlerTransport } from './transport.js';

export interface PeerClientsOptions extends Omit<HandlerClientOptions, 'host' | 'port'> {
  /** this replica's address (`host:port`), sent to peers in `x-cos-forwarded-by` */
  readonly self: string;
}

/** ChiefOfStateService of the other COS replicas, by address (`host:port`). */
export interface PeerClients {
  processCommand(address: string, request: ProcessCommandRequest, call?: HandlerCallOptions): Promise<ProcessCommandResponse>;
  getState(address: string, request: GetStateRequest, call?: HandlerCallOptions): Promise<GetStateResponse>;
  /** Closes every connection; later calls fail. */
  close(): Promise<void>;
}

interface Peer {
  readonly handler: HandlerTransport;
  readonly client: Client<typeof ChiefOfStateService>;
  readonly invoke: ReturnType<typeof createInvoker>;
}

/** Errors of a connection that was never opened: the request cannot have reached the peer. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND']);
/**
 * A stream reset with REFUSED_STREAM was closed before any processing (RFC 9113 §8.7): a peer
 * that is stopping sends GOAWAY, and the calls it had not taken yet come back this way. Node
 * reports it as ERR_HTTP2_STREAM_ERROR, "Stream closed with error code NGHTTP2_REFUSED_STREAM".
 */
const REFUSED_STREAM = 'NGHTTP2_REFUSED_STREAM';

/**
 * Clients of the peers' ChiefOfStateService, one HTTP/2 connection per peer, for forwarding a
 * call to the replica that owns the entity. A peer's gRPC status reaches the caller unchanged
 * (HandlerFailedError with its code, message and details); a peer that refused the connection
 * gives PeerUnreachableError, since the call cannot have run there (so does a TLS handshake
 * refused either way: the peer read nothing); a refusal the peer marked
 * with REFUSED_TRAILER (it wrote nothing: the shard is not its own any more, or it is stopping)
 * gives PeerRefusedError; a ProcessCommand whose connection failed after it was sent gives
 * CommitOutcomeUnknownError (it may have run there).
 */
export function createPeerClients(options: PeerClientsOptions): PeerClients {
  const { self, ...transportOptions } = options;
  const peers = new Map<string, Peer>();
  let closed = false;

  const peer = (address: string): Peer => {
    let found = peers.get(address);
    if (found === undefined) {
      const colon = address.lastIndexOf(':');
      const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      const handler = createHandlerTransport({ ...transportOptions, host, port: Number(address.slice(colon + 1)) });
      found = {
        handler,
        client: createClient(ChiefOfStateService, handler.transport),
        invoke: createInvoker({
          target: `peer ${handler.authority}`,
          service: ChiefOfStateService.typeName,
          defaultTimeoutMs: handler.timeoutMs,
          isClosed: () => closed,
        }),
      };
      peers.set(address, found);
    }
    return found;
  };

  const forwarded = (call: HandlerCallOptions | undefined): HandlerCallOptions => ({
    ...call,
    headers: { ...headerRecord(call?.headers), [FORWARDED_BY_HEADER]: self },
  });

  const run = async <T>(
    address: string,
    method: string,
    call: HandlerCallOptions | undefined,
    send: (p: Peer, o: ConnectCallOptions) => Promise<T>,
  ) => {
    const target = peer(address);
    try {
      return await target.invoke(method, forwarded(call), (callOptions) => send(target, callOptions));
    } catch (error) {
      if (neverSent(error)) {
        throw new PeerUnreachableError(`peer ${address} ${method}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      if (refused(error)) throw new PeerRefusedError(`peer ${address} ${method} refused: ${error.message}`, { cause: error });
      // The command reached the owner and the connection failed before its answer (reset, peer
      // killed): the owner may have persisted it, so the caller must not be told to retry blindly.
      if (method === 'ProcessCommand' && error instanceof HandlerUnavailableError) {
        throw new CommitOutcomeUnknownError(
          `${error.message}: the command was forwarded to the replica owning the entity, which may or may not have persisted it; read the entity's state before retrying`,
          {
            cause: error,
            publicMessage:
              "the command was forwarded to the replica owning the entity and the connection failed before its answer: it may or may not be persisted; read the entity's state before retrying",
          },
        );
      }
      throw error;
    }
  };

  return {
    processCommand: (address, request, call) =>
      run(address, 'ProcessCommand', call, (p, o) => p.client.processCommand(request, o)),
    getState: (address, request, call) => run(address, 'GetState', call, (p, o) => p.client.getState(request, o)),
    close() {
      closed = true;
      for (const { handler } of peers.values()) handler.close();
      peers.clear();
      return Promise.resolve();
    },
  };
}

function refused(error: unknown): error is HandlerFailedError {
  return error instanceof HandlerFailedError && error.cause instanceof ConnectError && error.cause.metadata.has(REFUSED_TRAILER);
}

function neverSent(error: unknown): boolean {
  // a peer refusing the handshake (or refused by it) read nothing of the call
  if (isTlsFailure(error)) return true;
  let reason: unknown = error;
  for (let depth = 0; depth < 8 && reason instanceof Error; depth++) {
    const code = (reason as { code?: unknown }).code;
    if (typeof code === 'string' && NOT_SENT.has(code)) return true;
    if (code === 'ERR_HTTP2_STREAM_ERROR' && reason.message.endsWith(REFUSED_STREAM)) return true;
    reason = reason.cause;
  }
  return false;
}
