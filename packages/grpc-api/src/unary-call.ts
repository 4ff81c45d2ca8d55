import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { constants as h2, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import {
  create,
  isMessage,
  type DescMessage,
  type DescMethod,
  type DescMethodServerStreaming,
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
import { timerDelay } from '@chiefofstate/core';

/** A request of either HTTP version, as node's compatibility API gives it. */
export type HttpRequest = IncomingMessage | Http2ServerRequest;
export type HttpResponse = ServerResponse | Http2ServerResponse;

type UnaryImpl = (request: MessageShape<DescMessage>, context: HandlerContext) => unknown;
type AnyUnary = (request: UnaryRequest) => Promise<UnaryResponse>;

export interface UnaryRoute {
  readonly method: DescMethodUnary;
  readonly impl: UnaryImpl;
}

/**
 * A server-streaming method whose messages can also be had already encoded (withEncodedStream):
 * the gRPC fast path writes those bytes straight to the stream.
 */
export interface StreamRoute {
  readonly method: DescMethodServerStreaming;
  readonly impl: StreamImpl;
  readonly open: OpenEncodedStream;
}

type StreamImpl = (request: MessageShape<DescMessage>, context: HandlerContext) => AsyncIterable<MessageShape<DescMessage>>;

/**
 * Opens a server stream whose messages come encoded, a batch at a time: each chunk holds whole
 * gRPC frames (the 5-byte prefix, uncompressed, and the message). Resolves once the stream is
 * established (then its response headers go out); rejects with what refused it. The chunks end
 * when the stream does and throw what failed it, as the method's own implementation would.
 */
export type OpenEncodedStream = (
  input: MessageShape<DescMessage>,
  context: HandlerContext,
  limits: { readonly maxMessageBytes: number },
) => Promise<AsyncIterable<Uint8Array>>;

const ENCODED_STREAM = Symbol('chiefofstate.encodedStream');

/** Gives a server-streaming implementation its encoded form, for the gRPC fast path. */
export function withEncodedStream<Impl extends object>(impl: Impl, open: OpenEncodedStream): Impl {
  return Object.assign(impl, { [ENCODED_STREAM]: open });
}

/** The unary and encoded-stream methods registered on the Connect router, by path (`/package.Service/Method`). */
export interface UnaryRoutes {
  /** Wraps the Connect router: unary methods registered through it are recorded here too. */
  router(router: ConnectRouter): ConnectRouter;
  get(path: string): UnaryRoute | undefined;
  stream(path: string): StreamRoute | undefined;
}

export function createUnaryRoutes(): UnaryRoutes {
  const routes = new Map<string, UnaryRoute>();
  const streams = new Map<string, StreamRoute>();
  const add = (method: DescMethod, impl: unknown, bindTo?: object) => {
    if (typeof impl !== 'function') return;
    const path = `/${method.parent.typeName}/${method.name}`;
    const bound = (bindTo ? impl.bind(bindTo) : impl) as UnaryImpl & StreamImpl;
    if (method.methodKind === 'unary') routes.set(path, { method: method as DescMethodUnary, impl: bound });
    const open = (impl as { [ENCODED_STREAM]?: OpenEncodedStream })[ENCODED_STREAM];
    if (method.methodKind === 'server_streaming' && open !== undefined) streams.set(path, { method: method as DescMethodServerStreaming, impl: bound, open });
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
  return { router, get: (path) => routes.get(path), stream: (path) => streams.get(path) };
}

export interface UnaryCallerOptions {
  /** the same interceptors the Connect adapter runs */
  readonly interceptors?: readonly Interceptor[];
  /** the call's first context values, as the Connect adapter's `contextValues` option */
  readonly contextValues?: (request: HttpRequest) => ContextValues;
}

export interface UnaryCall {
  readonly route: UnaryRoute;
  readonly request: HttpRequest;
  readonly response: HttpResponse;
  /** `grpc`, `connect` or `http`, as the implementation and interceptors see it */
  readonly protocolName: string;
  /** the caller's deadline, ms from now; undefined: none */
  readonly timeoutMs: number | undefined;
  readonly input: MessageShape<DescMessage>;
}

/** What a call came to: its reply or its error, with what the implementation set of headers and trailers. */
export interface UnaryOutcome {
  readonly output?: MessageShape<DescMessage>;
  readonly error?: ConnectError;
  readonly header: Headers | undefined;
  readonly trailer: Headers | undefined;
}

/**
 * Runs a unary method as Connect would, whatever the wire it came over (the gRPC fast path, the
 * Connect protocol's JSON, the HTTP/JSON front end): the implementation sees a HandlerContext
 * with the request headers, the remaining time, a signal aborted when the caller goes away or
 * the deadline passes, and response headers and trailers it may set; the interceptors (tracing,
 * metrics, caller authentication) run around it. Header objects are made only when read: they
 * cost more than a small command does.
 */
export function createUnaryCaller(options: UnaryCallerOptions): (call: UnaryCall) => Promise<UnaryOutcome> {
  const interceptors = options.interceptors ?? [];
  return async (call) => {
    const handle = openCallContext(options, call.route.method, call);
    const { context } = handle;
    try {
      const output = await invoke(call.route, context, call.input, interceptors);
      handle.end();
      return { output, header: handle.header(), trailer: handle.trailer() };
    } catch (error) {
      handle.end(error);
      return { error: asConnectError(error), header: handle.header(), trailer: handle.trailer() };
    }
  };
}

/** What a call of any kind needs to build its HandlerContext, besides its method. */
export interface CallStart {
  readonly request: HttpRequest;
  readonly response: HttpResponse;
  /** `grpc`, `connect` or `http`, as the implementation and interceptors see it */
  readonly protocolName: string;
  /** the caller's deadline, ms from now; undefined: none */
  readonly timeoutMs: number | undefined;
}

/** A call's HandlerContext, and how the call ends. */
export interface OpenCall {
  readonly context: HandlerContext;
  /**
   * The call is over: its signal is aborted, with `error` as the reason when it failed and none
   * when it succeeded (as Connect does), and its deadline timer stopped.
   */
  end(error?: unknown): void;
  /** the response headers and trailers the implementation or an interceptor set, if any */
  header(): Headers | undefined;
  trailer(): Headers | undefined;
}

/**
 * The HandlerContext of a call, as Connect makes it: the request headers, the remaining time, a
 * signal aborted when the caller goes away (with the reason Connect gives) or the deadline
 * passes, response headers and trailers it may set. Header objects are made only when read.
 */
export function openCallContext(options: UnaryCallerOptions, method: DescMethod, call: CallStart): OpenCall {
  const { request, response, timeoutMs } = call;
  const { contextValues } = options;
  const controller = new AbortController();
  let ended = false;
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(new ConnectError('the operation timed out', Code.DeadlineExceeded)), timerDelay(timeoutMs));
  // The caller cancelled or the connection dropped before the answer: the reason Connect gives.
  response.once('close', () => {
    if (!ended) controller.abort(closedReason(request));
  });

  let requestHeader: Headers | undefined;
  let responseHeader: Headers | undefined;
  let responseTrailer: Headers | undefined;
  const incoming = request.headers;
  const context: HandlerContext = {
    method,
    service: method.parent,
    requestMethod: request.method ?? 'POST',
    protocolName: call.protocolName,
    url: `http://${incoming[':authority'] ?? incoming.host ?? 'localhost'}${request.url ?? ''}`,
    signal: controller.signal,
    timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
    get requestHeader() {
      return (requestHeader ??= headersOf(incoming));
    },
    get responseHeader() {
      return (responseHeader ??= new Headers());
    },
    get responseTrailer() {
      return (responseTrailer ??= new Headers());
    },
    values: contextValues ? contextValues(request) : createContextValues(),
  };
  return {
    context,
    end(error) {
      if (ended) return;
      ended = true;
      if (timer !== undefined) clearTimeout(timer);
      controller.abort(error);
    },
    header: () => responseHeader,
    trailer: () => responseTrailer,
  };
}

function invoke(
  route: UnaryRoute,
  context: HandlerContext,
  input: MessageShape<DescMessage>,
  interceptors: readonly Interceptor[],
): Promise<MessageShape<DescMessage>> {
  const { method, impl } = route;
  const asOutput = (result: unknown) => (isMessage(result, method.output) ? result : create(method.output, result as never));
  if (interceptors.length === 0) return Promise.resolve(impl(input, context)).then(asOutput);
  const next = async (request: UnaryRequest): Promise<UnaryResponse> => {
    const message = asOutput(await impl(request.message, context));
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
  let chain: AnyUnary = next as AnyUnary;
  for (let i = interceptors.length - 1; i >= 0; i--) chain = interceptors[i]!(chain as never) as AnyUnary;
  const request: UnaryRequest = { ...interceptedRequest(context), stream: false, method, message: input };
  return chain(request).then((response) => response.message as MessageShape<DescMessage>);
}

/** What a request passed to the interceptors says of its call, whatever its kind. */
export function interceptedRequest(context: HandlerContext) {
  return {
    service: context.service,
    method: context.method,
    requestMethod: context.requestMethod,
    url: context.url,
    signal: context.signal,
    header: context.requestHeader,
    contextValues: context.values,
  };
}

/** The request headers as a Headers object (HTTP/2 pseudo-headers left out). */
export function headersOf(incoming: IncomingHttpHeaders): Headers {
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

/**
 * Why a call's connection or stream closed before its answer, in Connect's words: an HTTP/2
 * stream's reset code as connect-node's connectErrorFromH2ResetCode gives it (none for NO_ERROR
 * and STREAM_CLOSED), an HTTP/1.1 caller gone as CANCELED.
 */
function closedReason(request: HttpRequest): ConnectError | undefined {
  if (!('stream' in request)) return new ConnectError('the call was cancelled', Code.Canceled);
  const rstCode = request.stream.rstCode;
  const known = rstCode === undefined ? undefined : RESETS.get(rstCode);
  if (known === undefined) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${known[0]} (0x${rstCode!.toString(16)})`, known[1]);
}

/** HTTP/2 reset codes by name and the code Connect gives them. */
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
export function asConnectError(error: unknown): ConnectError {
  return error instanceof ConnectError ? error : new ConnectError('internal error', Code.Internal, undefined, undefined, error);
}

/**
 * Reads a request body of at most `maxBytes` (then calls `onTooLarge` once with the size so far
 * and the first chunk, and stops reading); `onBody` gets it whole.
 */
export function readBody(
  request: HttpRequest,
  maxBytes: number,
  onBody: (body: Buffer) => void,
  onTooLarge: (size: number, first: Buffer) => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  request.on('data', (chunk: Buffer) => {
    if (refused) return;
    size += chunk.byteLength;
    if (size > maxBytes) {
      refused = true;
      onTooLarge(size, chunks[0] ?? chunk);
      return;
    }
    chunks.push(chunk);
  });
  request.on('end', () => {
    if (!refused) onBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
}
