import { constants as h2, type Http2ServerRequest, type Http2ServerResponse, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import {
  create,
  fromBinary,
  isMessage,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescMethodUnary,
  type DescService,
  type MessageShape,
} from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createContextValues,
  type ConnectRouter,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type UnaryRequest,
  type UnaryResponse,
} from '@connectrpc/connect';
import { parseTimeout, setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { timerDelay } from '@chiefofstate/core';
import { encodeGrpcMessage, fitStatusTrailers } from './grpc-message.js';
import type { ReceiveTimeout } from './receive-timeout.js';

type UnaryImpl = (request: MessageShape<DescMessage>, context: HandlerContext) => unknown;
type AnyUnary = (request: UnaryRequest) => Promise<UnaryResponse>;

interface Route {
  readonly method: DescMethodUnary;
  readonly impl: UnaryImpl;
}

export interface UnaryGrpcOptions {
  /** largest request or response message; larger ones fail with RESOURCE_EXHAUSTED */
  readonly maxMessageBytes: number;
  /** the same interceptors the Connect adapter runs */
  readonly interceptors?: readonly Interceptor[];
  /** bounds the time to receive a request body (COS_GRPC_RECEIVE_TIMEOUT) */
  readonly receiveTimeout?: ReceiveTimeout;
  /** the call's first context values, as the Connect adapter's `contextValues` option */
  readonly contextValues?: (request: Http2ServerRequest) => ContextValues;
}

export interface UnaryGrpc {
  /** Wraps the Connect router: unary methods registered through it are also served here. */
  router(router: ConnectRouter): ConnectRouter;
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
  const { maxMessageBytes, receiveTimeout, contextValues } = options;
  const interceptors = options.interceptors ?? [];
  const routes = new Map<string, Route>();

  const add = (method: DescMethod, impl: unknown, bindTo?: object) => {
    if (method.methodKind !== 'unary' || typeof impl !== 'function') return;
    routes.set(`/${method.parent.typeName}/${method.name}`, {
      method: method as DescMethodUnary,
      impl: (bindTo ? impl.bind(bindTo) : impl) as UnaryImpl,
    });
  };

  function router(inner: ConnectRouter): ConnectRouter {
    const proxy = {
      get handlers() {
        return inner.handlers;
      },
      service(service: DescService, implementation: Record<string, unknown>, handlerOptions?: object) {
        // Services with options of their own (interceptors, limits) stay with Connect.
        if (handlerOptions === undefined) {
          for (const method of service.methods) add(method, implementation[method.localName], implementation);
        }
        inner.service(service, implementation as never, handlerOptions);
        return proxy;
      },
      rpc(method: DescMethod, impl: unknown, handlerOptions?: object) {
        if (handlerOptions === undefined) add(method, impl);
        inner.rpc(method, impl as never, handlerOptions);
        return proxy;
      },
    };
    return proxy as unknown as ConnectRouter;
  }

  function handle(request: Http2ServerRequest, response: Http2ServerResponse): boolean {
    if (request.method !== 'POST') return false;
    const route = routes.get(request.url);
    if (route === undefined) return false;
    const headers = request.headers;
    const contentType = headers['content-type'];
    if (contentType !== 'application/grpc' && contentType !== CONTENT_TYPE) return false;
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;

    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    receiveTimeout?.start(request);
    request.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.byteLength;
      if (size > maxMessageBytes + 5) {
        refused = true;
        receiveTimeout?.done(request);
        // the size the message declares, as Connect reports it (not what has arrived so far)
        const first = chunks[0] ?? chunk;
        writeError(response, undefined, tooLarge(first.byteLength >= 5 ? first.readUInt32BE(1) : size - 5, 'readMaxBytes'));
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => {
      receiveTimeout?.done(request);
      // refused, or answered by the receive timeout
      if (refused || response.headersSent) return;
      void serve(route, request, response, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    return true;
  }

  async function serve(route: Route, request: Http2ServerRequest, response: Http2ServerResponse, body: Buffer): Promise<void> {
    const { method } = route;
    const headers = request.headers;
    let input: MessageShape<DescMessage>;
    const timeout = parseTimeout(single(headers['grpc-timeout']) ?? null, NO_TIMEOUT_LIMIT);
    try {
      if (timeout.error) throw timeout.error;
      input = decodeRequest(method, body);
    } catch (error) {
      writeError(response, undefined, asConnectError(error));
      return;
    }

    const controller = new AbortController();
    let answered = false;
    const deadline = timeout.timeoutMs === undefined ? undefined : Date.now() + timeout.timeoutMs;
    const timer =
      timeout.timeoutMs === undefined
        ? undefined
        : setTimeout(
            () => controller.abort(new ConnectError('the operation timed out', Code.DeadlineExceeded)),
            timerDelay(timeout.timeoutMs),
          );
    // The caller cancelled or the connection dropped before the answer: the reason Connect gives.
    response.once('close', () => {
      if (!answered) controller.abort(resetReason(request.stream.rstCode));
    });

    let requestHeader: Headers | undefined;
    let responseHeader: Headers | undefined;
    let responseTrailer: Headers | undefined;
    const url = `http://${headers[':authority'] ?? 'localhost'}${request.url}`;
    const context: HandlerContext = {
      method,
      service: method.parent,
      requestMethod: 'POST',
      protocolName: 'grpc',
      url,
      signal: controller.signal,
      timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
      // Header objects are costly; they are made when something reads them.
      get requestHeader() {
        return (requestHeader ??= headersOf(headers));
      },
      get responseHeader() {
        return (responseHeader ??= new Headers());
      },
      get responseTrailer() {
        return (responseTrailer ??= new Headers());
      },
      values: contextValues ? contextValues(request) : createContextValues(),
    };

    let output: MessageShape<DescMessage>;
    try {
      output = await invoke(route, context, input);
    } catch (error) {
      answered = true;
      if (timer !== undefined) clearTimeout(timer);
      // as Connect does: the signal ends with the call, aborted by what failed it
      controller.abort(error);
      writeError(response, responseHeader, asConnectError(error), responseTrailer);
      return;
    }
    answered = true;
    if (timer !== undefined) clearTimeout(timer);
    const bytes = toBinary(method.output, output);
    controller.abort();
    if (bytes.byteLength > maxMessageBytes) {
      writeError(response, responseHeader, tooLarge(bytes.byteLength, 'writeMaxBytes'), responseTrailer);
      return;
    }
    if (response.stream.destroyed || response.writableEnded) return;
    const frame = Buffer.allocUnsafe(5 + bytes.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.byteLength, 1);
    frame.set(bytes, 5);
    const trailers: OutgoingHttpHeaders = { 'grpc-status': '0' };
    if (responseTrailer !== undefined) copyInto(responseTrailer, trailers);
    response.writeHead(200, responseHeadersOf(responseHeader));
    response.addTrailers(trailers);
    response.end(frame);
  }

  function invoke(route: Route, context: HandlerContext, input: MessageShape<DescMessage>): Promise<MessageShape<DescMessage>> {
    const { method, impl } = route;
    const next = async (request: UnaryRequest): Promise<UnaryResponse> => {
      const result = await impl(request.message, context);
      const message = isMessage(result, method.output) ? result : create(method.output, result as never);
      return {
        stream: false,
        service: method.parent,
        method,
        message,
        get header() {
          return context.responseHeader;
        },
        get trailer() {
          return context.responseTrailer;
        },
      };
    };
    if (interceptors.length === 0) {
      return Promise.resolve(impl(input, context)).then((result) =>
        isMessage(result, method.output) ? result : create(method.output, result as never),
      );
    }
    let chain: AnyUnary = next as AnyUnary;
    for (let i = interceptors.length - 1; i >= 0; i--) chain = interceptors[i]!(chain as never) as AnyUnary;
    const request: UnaryRequest = {
      stream: false,
      service: method.parent,
      method,
      requestMethod: 'POST',
      url: context.url,
      signal: context.signal,
      header: context.requestHeader,
      contextValues: context.values,
      message: input,
    };
    return chain(request).then((response) => response.message as MessageShape<DescMessage>);
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

  return { router, handle };
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

function headersOf(incoming: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const name of Object.keys(incoming)) {
    if (name.startsWith(':')) continue;
    const value = incoming[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.append(name, value);
  }
  return headers;
}

/** Why a call's stream closed before its answer, in Connect's words (connect-node's connectErrorFromH2ResetCode). */
function resetReason(rstCode: number | undefined): ConnectError | undefined {
  const known = rstCode === undefined ? undefined : RESETS.get(rstCode);
  if (known === undefined) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${known[0]} (0x${rstCode!.toString(16)})`, known[1]);
}

/** HTTP/2 reset codes by name and the code Connect gives them; STREAM_CLOSED and NO_ERROR give none. */
const RESETS = new Map<number, readonly [string, Code]>(
  (
    [
      ['PROTOCOL_ERROR', Code.Internal],
      ['INTERNAL_ERROR', Code.Internal],
      ['FLOW_CONTROL_ERROR', Code.Internal],
      ['SETTINGS_TIMEOUT', Code.Internal],
      ['FRAME_SIZE_ERROR', Code.Internal],
      ['COMPRESSION_ERROR', Code.Internal],
      ['CONNECT_ERROR', Code.Internal],
      ['REFUSED_STREAM', Code.Unavailable],
      ['CANCEL', Code.Canceled],
      ['ENHANCE_YOUR_CALM', Code.ResourceExhausted],
      ['INADEQUATE_SECURITY', Code.PermissionDenied],
      ['HTTP_1_1_REQUIRED', Code.PermissionDenied],
    ] as const
  ).map(([name, code]) => [h2[`NGHTTP2_${name}`], [name, code]] as const),
);

/** As Connect answers: a ConnectError as it is, anything else as INTERNAL without its message. */
function asConnectError(error: unknown): ConnectError {
  return error instanceof ConnectError ? error : new ConnectError('internal error', Code.Internal, undefined, undefined, error);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
