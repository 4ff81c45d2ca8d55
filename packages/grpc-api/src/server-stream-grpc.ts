import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import { frameMessage, grpcCallInput, isPlainGrpc, receiveGrpcRequest, responseHeadersOf, tooLarge, writeGrpcStatus } from './grpc-frames.js';
import type { ReceiveTimeout } from './receive-timeout.js';
import { interceptStream, streamOutcome, writeChunks } from './server-stream.js';
import { asConnectError, openCallContext, type StreamRoute, type UnaryCallerOptions, type UnaryRoutes } from './unary-call.js';

export interface ServerStreamGrpcOptions extends UnaryCallerOptions {
  /** largest request or response message; larger ones fail with RESOURCE_EXHAUSTED */
  readonly maxMessageBytes: number;
  /** bounds the time to receive the request (COS_GRPC_RECEIVE_TIMEOUT) */
  readonly receiveTimeout?: ReceiveTimeout;
  /** the routes with an encoded form (withEncodedStream), as recorded from the Connect router */
  readonly routes: UnaryRoutes;
}

export interface ServerStreamGrpc {
  /** Serves the request and returns true when it is a plain gRPC call of a server-streaming method with an encoded form. */
  handle(request: Http2ServerRequest, response: Http2ServerResponse): boolean;
}

/**
 * The gRPC path of the server-streaming methods that can give their messages encoded (Subscribe
 * and SubscribeAll): each batch of messages is one write of ready frames to the HTTP/2 stream,
 * instead of Connect's async iterables, envelopes and one write per message (with 100
 * subscribers, that machinery cost more CPU than the events did). The rest is as Connect does
 * it: the same interceptors around the call, the HandlerContext (deadline, signal aborted when
 * the caller goes away), the status in trailers. Writes wait for the stream to drain, so a slow
 * caller holds one batch and the method's source decides what happens to it.
 *
 * Should an interceptor replace the stream of messages, its messages are encoded one by one.
 */
export function createServerStreamGrpc(options: ServerStreamGrpcOptions): ServerStreamGrpc {
  const { maxMessageBytes, routes } = options;
  const interceptors = options.interceptors ?? [];
  const limits = { maxMessageBytes };

  function handle(request: Http2ServerRequest, response: Http2ServerResponse): boolean {
    if (request.method !== 'POST') return false;
    const route = routes.stream(request.url);
    if (route === undefined || !isPlainGrpc(request.headers)) return false;
    receiveGrpcRequest(request, response, options, (body) => void serve(route, request, response, body));
    return true;
  }

  async function serve(route: StreamRoute, request: Http2ServerRequest, response: Http2ServerResponse, body: Buffer): Promise<void> {
    const { method } = route;
    const received = grpcCallInput(request, response, method, body, maxMessageBytes);
    if (received === undefined) return;
    const { input, timeoutMs } = received;
    const call = openCallContext(options, method, { request, response, protocolName: 'grpc', timeoutMs });
    const { context } = call;
    let failure: unknown;
    try {
      const chunks = await open(route, input, context);
      if (response.stream.destroyed || response.writableEnded) return;
      response.writeHead(200, responseHeadersOf(call.header()));
      await writeChunks(response, chunks);
    } catch (error) {
      failure = error;
    }
    // the deadline (or another abort with a ConnectError) ends the stream with that status
    failure = streamOutcome(failure, context);
    call.end(failure);
    writeGrpcStatus(response, call.header(), failure === undefined ? undefined : asConnectError(failure), call.trailer());
  }

  /** Runs the interceptors around the call; the encoded stream unless one of them replaced the messages. */
  async function open(route: StreamRoute, input: MessageShape<DescMessage>, context: HandlerContext): Promise<AsyncIterable<Uint8Array>> {
    const replaced = await interceptStream(interceptors, route, input, context);
    return replaced === undefined ? route.open(input, context, limits) : encodeEach(replaced, route, maxMessageBytes);
  }

  return { handle };
}

async function* encodeEach(messages: AsyncIterable<unknown>, route: StreamRoute, maxMessageBytes: number): AsyncGenerator<Uint8Array> {
  for await (const message of messages) {
    const bytes = toBinary(route.method.output, message as MessageShape<DescMessage>);
    if (bytes.byteLength > maxMessageBytes) throw tooLarge(bytes.byteLength, 'writeMaxBytes', maxMessageBytes);
    yield frameMessage(bytes);
  }
}
