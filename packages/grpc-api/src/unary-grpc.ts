import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import { fromBinary, toBinary, type DescMessage, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type ContextValues, type Interceptor } from '@connectrpc/connect';
import { parseTimeout, setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { encodeGrpcMessage, fitStatusTrailers } from './grpc-message.js';
import type { ReceiveTimeout } from './receive-timeout.js';
import { asConnectError, createUnaryCaller, readBody, type HttpRequest, type UnaryRoute, type UnaryRoutes } from './unary-call.js';

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

const CONTENT_TYPE = 'application/grpc+proto';
const NO_TIMEOUT_LIMIT = Number.MAX_SAFE_INTEGER;

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
  const { maxMessageBytes, receiveTimeout, routes } = options;
  const call = createUnaryCaller(options);

  function handle(request: Http2ServerRequest, response: Http2ServerResponse): boolean {
    if (request.method !== 'POST') return false;
    const route = routes.get(request.url);
    if (route === undefined) return false;
    const headers = request.headers;
    const contentType = headers['content-type'];
    if (contentType !== 'application/grpc' && contentType !== CONTENT_TYPE) return false;
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;

    receiveTimeout?.start(request);
    readBody(
      request,
      maxMessageBytes + 5,
      (body) => {
        receiveTimeout?.done(request);
        // answered by the receive timeout
        if (response.headersSent) return;
        void serve(route, request, response, body);
      },
      (size, first) => {
        receiveTimeout?.done(request);
        // the size the message declares, as Connect reports it (not what has arrived so far)
        writeError(response, undefined, tooLarge(first.byteLength >= 5 ? first.readUInt32BE(1) : size - 5, 'readMaxBytes'));
      },
    );
    return true;
  }

  async function serve(route: UnaryRoute, request: Http2ServerRequest, response: Http2ServerResponse, body: Buffer): Promise<void> {
    const { method } = route;
    let input: MessageShape<DescMessage>;
    const timeout = parseTimeout(single(request.headers['grpc-timeout']) ?? null, NO_TIMEOUT_LIMIT);
    try {
      if (timeout.error) throw timeout.error;
      input = decodeRequest(method, body);
    } catch (error) {
      writeError(response, undefined, asConnectError(error));
      return;
    }
    const outcome = await call({ route, request, response, protocolName: 'grpc', timeoutMs: timeout.timeoutMs, input });
    if (outcome.error !== undefined || outcome.output === undefined) {
      writeError(response, outcome.header, outcome.error ?? asConnectError(undefined), outcome.trailer);
      return;
    }
    const bytes = toBinary(method.output, outcome.output);
    if (bytes.byteLength > maxMessageBytes) {
      writeError(response, outcome.header, tooLarge(bytes.byteLength, 'writeMaxBytes'), outcome.trailer);
      return;
    }
    if (response.stream.destroyed || response.writableEnded) return;
    const frame = Buffer.allocUnsafe(5 + bytes.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.byteLength, 1);
    frame.set(bytes, 5);
    const trailers: OutgoingHttpHeaders = { 'grpc-status': '0' };
    if (outcome.trailer !== undefined) copyInto(outcome.trailer, trailers);
    response.writeHead(200, responseHeadersOf(outcome.header));
    response.addTrailers(trailers);
    response.end(frame);
  }

  function decodeRequest(method: DescMethodUnary, body: Buffer): MessageShape<DescMessage> {
    if (body.byteLength < 5) throw new ConnectError('protocol error: missing input message for unary method', Code.Unimplemented);
    if ((body[0]! & 1) !== 0) {
      throw new ConnectError('protocol error: received compressed message without grpc-encoding', Code.InvalidArgument);
    }
    const length = body.readUInt32BE(1);
    if (length > maxMessageBytes) throw tooLarge(length, 'readMaxBytes');
    if (body.byteLength < 5 + length) throw new ConnectError('protocol error: premature end of stream', Code.InvalidArgument);
    if (body.byteLength > 5 + length) {
      throw new ConnectError('protocol error: received extra input message for unary method', Code.Unimplemented);
    }
    try {
      return fromBinary(method.input, body.subarray(5));
    } catch (error) {
      // The caller sent bytes that are not the method's message (bad wire type, truncated field,
      // invalid UTF-8 in a string): its error. Stock gRPC servers say INTERNAL, which reads as
      // COS's fault; COS says INVALID_ARGUMENT on both paths (see grpc-message.ts for Connect's).
      throw new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.InvalidArgument);
    }
  }

  function tooLarge(size: number, limit: string): ConnectError {
    return new ConnectError(`message size ${size} is larger than configured ${limit} ${maxMessageBytes}`, Code.ResourceExhausted);
  }

  return { handle };
}

/** The error as response headers (when not sent yet) and trailers, as Connect's gRPC handler writes them. */
function writeError(
  response: Http2ServerResponse,
  responseHeader: Headers | undefined,
  error: ConnectError,
  responseTrailer?: Headers,
): void {
  if (response.stream.destroyed || response.writableEnded) return;
  const status = setTrailerStatus(responseTrailer ?? new Headers(), error);
  const trailers: OutgoingHttpHeaders = {};
  copyInto(status, trailers);
  // Connect encodes with encodeURIComponent, which grpc-js decodes wrongly (`%3A` stays): the spec's form.
  trailers['grpc-message'] = encodeGrpcMessage(error.rawMessage);
  fitStatusTrailers(trailers);
  if (!response.headersSent) response.writeHead(200, responseHeadersOf(responseHeader));
  response.addTrailers(trailers);
  response.end();
}

function responseHeadersOf(responseHeader: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { 'content-type': CONTENT_TYPE };
  if (responseHeader !== undefined) copyInto(responseHeader, out);
  return out;
}

function copyInto(from: Headers, to: OutgoingHttpHeaders): void {
  from.forEach((value, name) => {
    if (name === 'content-type') return;
    to[name] = value;
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
