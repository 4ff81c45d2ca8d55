import type { Http2ServerRequest, Http2ServerResponse, IncomingHttpHeaders } from 'node:http2';
import type { Registry } from '@bufbuild/protobuf';
import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { MAX_TIMER_MS, type Logger } from '@chiefofstate/core';
import { createTypeRegistry } from '@chiefofstate/protocol';
import type { CallerAuthOptions } from './caller-auth.js';
import { createCors } from './cors.js';
import { normaliseGrpcMessage } from './grpc-message.js';
import { startEdgeListener } from './listener.js';
import { openSecurity } from './listener-security.js';
import type { ListenerTlsOptions } from './listener-tls.js';
import { createReceiveTimeout } from './receive-timeout.js';
import { createServerStreamConnect } from './server-stream-connect.js';
import { createServerStreamGrpc } from './server-stream-grpc.js';
import { createUnaryRoutes, type HttpRequest, type HttpResponse } from './unary-call.js';
import { createUnaryConnectJson } from './unary-connect-json.js';
import { createUnaryGrpc } from './unary-grpc.js';

export interface GrpcServerOptions {
  readonly host: string;
  /** 0 picks a free port */
  readonly port: number;
  /** registers the services */
  readonly routes: (router: ConnectRouter) => void;
  /** largest request or response message; larger ones fail with RESOURCE_EXHAUSTED */
  readonly maxMessageBytes: number;
  /** most calls open at once on one connection (COS_GRPC_MAX_CONCURRENT_STREAMS). Default 256. */
  readonly maxConcurrentStreams?: number;
  /** largest request header list, HTTP/2's count (COS_GRPC_MAX_HEADER_BYTES). Default 64 KiB. */
  readonly maxHeaderBytes?: number;
  /** most time from a call's headers to the end of its request, ms (COS_GRPC_RECEIVE_TIMEOUT). Default 10 s. */
  readonly receiveTimeoutMs?: number;
  /**
   * A connection without a frame for this long is closed (GOAWAY), and cut if still open after as
   * long again, ms (COS_GRPC_IDLE_TIMEOUT). Default 5 minutes.
   */
  readonly idleTimeoutMs?: number;
  readonly interceptors?: Interceptor[];
  /** told about calls and connections the server cut short (a pino logger fits) */
  readonly logger?: Logger;
  /** serve over TLS (h2), optionally verifying client certificates; unset: cleartext HTTP/2 */
  readonly tls?: ListenerTlsOptions;
  /** refuse calls without the credentials of their service (run after `interceptors`); unset: open */
  readonly callerAuth?: CallerAuthOptions;
  /**
   * true (default): plain gRPC unary calls take the hand-written path (createUnaryGrpc, a fifth
   * of the CPU), and so do Subscribe and SubscribeAll (createServerStreamGrpc: ready frames, a
   * page per write); false: they go through Connect's node adapter, the fallback should the fast
   * path ever misbehave (COS_GRPC_SERVER_FAST_PATH). Both answer alike (differential tests).
   * Connect JSON calls (unary, and Subscribe / SubscribeAll streams) keep their own path either
   * way: Connect's would fail on Anys of types it does not know.
   */
  readonly unaryFastPath?: boolean;
  /** the types JSON renders Anys with (COS_PROTO_DESCRIPTOR_SET); default: the well-known types and COS's */
  readonly registry?: Registry;
  /** browser origins allowed to call across origins (COS_CORS_ALLOWED_ORIGINS); unset or empty: no CORS */
  readonly corsAllowedOrigins?: readonly string[];
}

export interface GrpcServer {
  readonly port: number;
  /**
   * Stops accepting calls, lets in-flight calls finish for up to `graceMs`, then cuts what is
   * left. Resolves when the server is closed.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves gRPC (HTTP/2, `application/grpc`), gRPC-Web and Connect on one port, over HTTP/2 and
 * HTTP/1.1 (listener.ts): unary gRPC calls by createUnaryGrpc, unary Connect JSON calls by
 * createUnaryConnectJson (Anys of unknown types as base64), the rest by Connect's node adapter.
 * gRPC itself needs HTTP/2; gRPC-Web and Connect work over either, so browsers and a plain
 * `curl` get answers.
 *
 * HTTP/2 bounds: streams per connection and header list size are advertised in SETTINGS and
 * enforced by nghttp2 (a stream over them is reset with REFUSED_STREAM / ENHANCE_YOUR_CALM,
 * which clients read as UNAVAILABLE / RESOURCE_EXHAUSTED, at once); memory per session is
 * Node's `maxSessionMemory`. A connection that breaks the protocol gets GOAWAY from nghttp2,
 * which then ignores it, but Node leaves its socket open: the idle timeout closes it.
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const logger = options.logger;
  const receiveTimeoutMs = options.receiveTimeoutMs ?? 10_000;
  const receiveTimeout = createReceiveTimeout(
    receiveTimeoutMs,
    logger && ((request) => logger.debug({ path: request.url, remoteAddress: request.socket.remoteAddress }, 'request not received in time')),
  );
  const security = openSecurity(options, logger);
  const { auth, contextValues } = security;
  const interceptors = [...(options.interceptors ?? []), ...(auth ? [auth.interceptor] : [])];
  const caller = {
    ...(interceptors.length > 0 ? { interceptors } : {}),
    ...(contextValues ? { contextValues } : {}),
  };
  // gRPC and Connect JSON unary calls take the lean paths; the Connect adapter serves everything else.
  const fastPath = options.unaryFastPath ?? true;
  const routes = createUnaryRoutes();
  const unary = createUnaryGrpc({ maxMessageBytes: options.maxMessageBytes, receiveTimeout, routes, ...caller });
  const streams = createServerStreamGrpc({ maxMessageBytes: options.maxMessageBytes, receiveTimeout, routes, ...caller });
  const registry = options.registry ?? createTypeRegistry();
  const connectJson = createUnaryConnectJson({ maxMessageBytes: options.maxMessageBytes, routes, registry, ...caller });
  const connectJsonStreams = createServerStreamConnect({ maxMessageBytes: options.maxMessageBytes, routes, registry, ...caller });
  const handler = connectNodeAdapter({
    routes: (router) => options.routes(routes.router(router)),
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    // Connect's own JSON (streams, gRPC-Web JSON) knows the same types; an Any of another type fails there
    jsonOptions: { registry },
    ...(interceptors.length > 0 ? { interceptors } : {}),
    ...(contextValues ? { contextValues: (request) => contextValues(request as HttpRequest) } : {}),
  });
  const cors = createCors(options.corsAllowedOrigins ?? []);
  const onRequest = (request: HttpRequest, response: HttpResponse) => {
    if (cors?.(request, response)) return;
    const http2 = request.httpVersionMajor === 2;
    if (http2 && fastPath && (unary.handle(request as Http2ServerRequest, response as Http2ServerResponse) || streams.handle(request as Http2ServerRequest, response as Http2ServerResponse))) {
      return;
    }
    if (http2) receiveTimeout.watch(request as Http2ServerRequest);
    if (connectJson.handle(request, response) || connectJsonStreams.handle(request, response)) return;
    capTimeoutHeaders(request.headers);
    if (http2) normaliseGrpcMessage(response as Http2ServerResponse);
    handler(request, response);
  };
  return startEdgeListener(options, { security, receiveTimeout, receiveTimeoutMs, onRequest });
}

/** `grpc-timeout` for the longest delay a Node timer can hold (8 digits at most, as the spec says). */
const CAPPED_GRPC_TIMEOUT = `${Math.floor(MAX_TIMER_MS / 1000)}S`;
const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * Connect sets a timer from the caller's deadline as it is; past 2^31-1 ms Node fires it at once
 * and the call fails with DEADLINE_EXCEEDED. Deadlines that long are capped (COS bounds every
 * command by COS_COMMAND_HANDLER_TIMEOUT anyway); malformed values are left for Connect to refuse.
 */
export function capTimeoutHeaders(headers: IncomingHttpHeaders): void {
  const grpcTimeout = headers['grpc-timeout'];
  if (typeof grpcTimeout === 'string') {
    const unit = GRPC_TIMEOUT_UNIT_MS[grpcTimeout.slice(-1)];
    const value = Number(grpcTimeout.slice(0, -1));
    if (unit !== undefined && /^\d{1,8}$/.test(grpcTimeout.slice(0, -1)) && value * unit > MAX_TIMER_MS) {
      headers['grpc-timeout'] = CAPPED_GRPC_TIMEOUT;
    }
  }
  const connectTimeout = headers['connect-timeout-ms'];
  if (typeof connectTimeout === 'string' && /^\d{1,10}$/.test(connectTimeout) && Number(connectTimeout) > MAX_TIMER_MS) {
    headers['connect-timeout-ms'] = String(MAX_TIMER_MS);
  }
}
