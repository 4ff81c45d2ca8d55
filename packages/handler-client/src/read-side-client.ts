import { createClient, type Client } from '@connectrpc/connect';
import {
  ReadSideHandlerService,
  type HandleReadSideRequest,
  type HandleReadSideResponse,
} from '@chiefofstate/protocol';
import { createHandlerTransport, type HandlerCallOptions, type HandlerClientOptions } from './transport.js';
import { createInvoker } from './invoke.js';

export type ReadSideClientOptions = HandlerClientOptions;

/** A user's chief_of_state.v1.ReadSideHandlerService, called over gRPC, or over HTTP/JSON (`protocol: 'http'`). */
export interface ReadSideClient {
  handleReadSide(request: HandleReadSideRequest, call?: HandlerCallOptions): Promise<HandleReadSideResponse>;
  /** Closes the connection; later calls fail with HandlerUnavailableError. */
  close(): Promise<void>;
}

export function createReadSideClient(options: ReadSideClientOptions): ReadSideClient {
  const handler = createHandlerTransport(options);
  const client: Client<typeof ReadSideHandlerService> = createClient(ReadSideHandlerService, handler.transport);
  let closed = false;
  const invoke = createInvoker({
    target: `read-side handler ${handler.authority}`,
    service: ReadSideHandlerService.typeName,
    defaultTimeoutMs: handler.timeoutMs,
    isClosed: () => closed,
    breaker: options.breaker,
  });
  return {
    handleReadSide: (request, call) =>
      invoke('HandleReadSide', call, (callOptions) => client.handleReadSide(request, callOptions)),
    close: () => {
      closed = true;
      handler.close();
      return Promise.resolve();
    },
  };
}
