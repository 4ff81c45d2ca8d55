import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import { toBinary } from '@bufbuild/protobuf';
import type { ContextValues, Interceptor } from '@connectrpc/connect';
import {
  copyInto,
  frameMessage,
  grpcCallInput,
  isPlainGrpc,
  receiveGrpcRequest,
  responseHeadersOf,
  tooLarge,
  writeGrpcStatus,
} from './grpc-frames.js';
import type { ReceiveTimeout } from './receive-timeout.js';
import { asConnectError, createUnaryCaller, type HttpRequest, type UnaryRoute, type UnaryRoutes } from './unary-call.js';

export interface UnaryGrpcOptions {
  /** largest request or response message; larger ones fail with RESOURCE_EXHAUSTED */
  readonly maxMessageBytes: number;
  /** the same interceptors the Connect adapter runs */
  readonly interceptors?: readonly Interceptor[];
  /** bounds the time to receive a request body (COS_GRPC_RECEIVE_TIMEOUT) */
  readonly receiveTimeout?: ReceiveTimeout;
  /** the call's first context values, as the Connect adapter's `contextValues` option */
  readonly contextValues?: (request: HttpRequest) => ContextValues;
  /** the unary methods registered on the Connect router */
  readonly routes: UnaryRoutes;
}

export interface UnaryGrpc {
  /** Serves the request and returns true when it is a plain gRPC unary call of a known method. */
  handle(request: Http2ServerRequest, response: Http2ServerResponse): boolean;
}

/**
 * The gRPC unary path of the edge, written on the HTTP/2 request and response: ProcessCommand
 * and the other unary methods, called by stock gRPC clients, are served by the implementations
 * and interceptors registered on the Connect router, without Connect's universal handler (async
 * iterables, linked abort controllers and header objects per call cost more CPU than the whole
 * command otherwise does). Everything else, gRPC-Web, the Connect protocol, streaming methods,
 * compressed requests, goes to the Connect adapter, which answers it as before.
 *
 * What the implementation sees is Connect's: a HandlerContext with the request headers, the
 * remaining time (`grpc-timeout`), a signal aborted when the caller goes away or the deadline
 * passes, and response headers and trailers it may set. Errors become the same trailers
 * Connect writes (status, message, google.rpc.Status details), the message percent-encoded as
 * the gRPC spec says.
 */
export function createUnaryGrpc(options: UnaryGrpcOptions): UnaryGrpc {
  const { maxMessageBytes, routes } = options;
  const call = createUnaryCaller(options);

  function handle(request: Http2ServerRequest, response: Http2ServerResponse): boolean {
    if (request.method !== 'POST') return false;
    const route = routes.get(request.url);
    if (route === undefined) return false;
    if (!isPlainGrpc(request.headers)) return false;

    receiveGrpcRequest(request, response, options, (body) => void serve(route, request, response, body));
    return true;
  }

  async function serve(route: UnaryRoute, request: Http2ServerRequest, response: Http2ServerResponse, body: Buffer): Promise<void> {
    const { method } = route;
    const received = grpcCallInput(request, response, method, body, maxMessageBytes);
    if (received === undefined) return;
    const { input, timeoutMs } = received;
    const outcome = await call({ route, request, response, protocolName: 'grpc', timeoutMs, input });
    if (outcome.error !== undefined || outcome.output === undefined) {
      writeGrpcStatus(response, outcome.header, outcome.error ?? asConnectError(undefined), outcome.trailer);
      return;
    }
    const bytes = toBinary(method.output, outcome.output);
    if (bytes.byteLength > maxMessageBytes) {
      writeGrpcStatus(response, outcome.header, tooLarge(bytes.byteLength, 'writeMaxBytes', maxMessageBytes), outcome.trailer);
      return;
    }
    if (response.stream.destroyed || response.writableEnded) return;
    const frame = frameMessage(bytes);
    const trailers: OutgoingHttpHeaders = { 'grpc-status': '0' };
    if (outcome.trailer !== undefined) copyInto(outcome.trailer, trailers);
    response.writeHead(200, responseHeadersOf(outcome.header));
    response.addTrailers(trailers);
    response.end(frame);
  }

  return { handle };
}
