import { createClient, type Client } from '@connectrpc/connect';
import {
  WriteSideHandlerService,
  type HandleCommandRequest,
  type HandleCommandResponse,
  type HandleEventRequest,
  type HandleEventResponse,
} from '@chiefofstate/protocol';
import { createHandlerTransport, type HandlerCallOptions, type HandlerClientOptions } from './transport.js';
import { createInvoker } from './invoke.js';

export type WriteSideClientOptions = HandlerClientOptions;

/** The user's chief_of_state.v1.WriteSideHandlerService, called over gRPC, or over HTTP/JSON (`protocol: 'http'`). */
export interface WriteSideClient {
  handleCommand(request: HandleCommandRequest, call?: HandlerCallOptions): Promise<HandleCommandResponse>;
  handleEvent(request: HandleEventRequest, call?: HandlerCallOptions): Promise<HandleEventResponse>;
  /** Closes the connection; later calls fail with HandlerUnavailableError. */
  close(): Promise<void>;
}

export function createWriteSideClient(options: WriteSideClientOptions): WriteSideClient {
  const handler = createHandlerTransport(options);
  const client: Client<typeof WriteSideHandlerService> = createClient(WriteSideHandlerService, handler.transport);
  const invoke = createInvoker({
    target: `write handler ${handler.authority}`,
    service: WriteSideHandlerService.typeName,
    defaultTimeoutMs: handler.timeoutMs,
    isClosed: () => closed,
    breaker: options.breaker,
  });
  let closed = false;
  return {
    handleCommand: (request, call) =>
      invoke('HandleCommand', call, (callOptions) => client.handleCommand(request, callOptions)),
    handleEvent: (request, call) => invoke('HandleEvent', call, (callOptions) => client.handleEvent(request, callOptions)),
    close: () => {
      closed = true;
      handler.close();
      return Promise.resolve();
    },
  };
}
