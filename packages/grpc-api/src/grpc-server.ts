import {
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { MAX_TIMER_MS } from '@chiefofstate/core';
import { callPeer, createCallerAuth, type CallerAuth, type CallerAuthOptions } from './caller-auth.js';
import { createListenerTls, peerOf, type ListenerTls, type ListenerTlsOptions } from './listener-tls.js';
import { normaliseGrpcMessage } from './grpc-message.js';
import { createReceiveTimeout } from './receive-timeout.js';
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
  readonly logger?: EdgeLogger;
  /** serve over TLS (h2), optionally verifying client certificates; unset: cleartext HTTP/2 */
  readonly tls?: ListenerTlsOptions;
  /** refuse calls without the credentials of their service (run after `interceptors`); unset: open */
  readonly callerAuth?: CallerAuthOptions;
  /**
   * true (default): plain gRPC unary calls take the hand-written path (createUnaryGrpc, a fifth
   * of the CPU); false: every call goes through Connect's node adapter, the fallback should the
   * fast path ever misbehave (COS_GRPC_SERVER_FAST_PATH). Both answer alike (differential tests).
   */
  readonly unaryFastPath?: boolean;
}

/** What the server reports about input it refused below the services. */
export interface EdgeLogger {
  debug(fields: object, message: string): void;
  warn(fields: object, message: string): void;
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
 * Serves gRPC (HTTP/2, `application/grpc`), gRPC-Web and Connect on one cleartext HTTP/2 port.
 * Unary gRPC calls are served by createUnaryGrpc, the rest by Connect's node adapter.
 *
 * HTTP/2 bounds: streams per connection and header list size are advertised in SETTINGS and
 * enforced by nghttp2 (a stream over them is reset with REFUSED_STREAM / ENHANCE_YOUR_CALM,
 * which clients read as UNAVAILABLE / RESOURCE_EXHAUSTED, at once); memory per session is
 * Node's `maxSessionMemory`. A connection that breaks the protocol gets GOAWAY from nghttp2,
 * which then ignores it, but Node leaves its socket open: the idle timeout closes it.
 */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const logger = options.logger;
  const receiveTimeout = createReceiveTimeout(
    options.receiveTimeoutMs ?? 10_000,
    logger && ((request) => logger.debug({ path: request.url, remoteAddress: request.socket.remoteAddress }, 'request not received in time')),
  );
  const { tls, auth } = openSecurity(options);
  const interceptors = [...(options.interceptors ?? []), ...(auth ? [auth.interceptor] : [])];
  // the connection's verified names, for the caller check; nothing is added when it is off
  const contextValues = auth ? withPeer : undefined;
  // gRPC unary calls take the lean path; the Connect adapter serves everything else.
  const unary = createUnaryGrpc({
    maxMessageBytes: options.maxMessageBytes,
    receiveTimeout,
    ...(interceptors.length > 0 ? { interceptors } : {}),
    ...(contextValues ? { contextValues } : {}),
  });
  const fastPath = options.unaryFastPath ?? true;
  const handler = connectNodeAdapter({
    routes: (router) => options.routes(fastPath ? unary.router(router) : router),
    readMaxBytes: options.maxMessageBytes,
    writeMaxBytes: options.maxMessageBytes,
    ...(interceptors.length > 0 ? { interceptors } : {}),
    ...(contextValues ? { contextValues: (request) => contextValues(request as Http2ServerRequest) } : {}),
  });
  const serverOptions = {
    settings: {
      maxConcurrentStreams: options.maxConcurrentStreams ?? 256,
      maxHeaderListSize: options.maxHeaderBytes ?? 64 * 1024,
    },
    maxHeaderListPairs: 128,
    // MB of HPACK state and queued frames per session before new streams are refused (Node's default, made explicit)
    maxSessionMemory: 10,
  };
  const onRequest = (request: Http2ServerRequest, response: Http2ServerResponse) => {
    if (fastPath && unary.handle(request, response)) return;
    receiveTimeout.watch(request);
    capTimeoutHeaders(request.headers);
    normaliseGrpcMessage(response);
    handler(request, response);
  };
  let server: Http2Server | Http2SecureServer;
  if (tls) {
    const secure = createSecureServer({ ...serverOptions, ...tls.serverOptions }, onRequest);
    tls.attach(secure, (remoteAddress, reason) => logger?.warn({ remoteAddress, reason }, 'TLS connection refused'));
    // a failed handshake (no or a wrong client certificate, a client not trusting ours)
    secure.on('tlsClientError', (error: Error, socket: { remoteAddress?: string }) =>
      logger?.debug({ err: error, remoteAddress: socket.remoteAddress }, 'TLS handshake failed'),
    );
    server = secure;
  } else {
    server = createServer(serverOptions, onRequest);
  }
  const idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
  const sessions = new Set<ServerHttp2Session>();
  const openStreams = new WeakMap<Http2Session, number>();
  server.on('stream', (stream) => {
    const session = stream.session;
    if (!session) return;
    openStreams.set(session, (openStreams.get(session) ?? 0) + 1);
    stream.once('close', () => openStreams.set(session, (openStreams.get(session) ?? 1) - 1));
  });
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.setTimeout(idleTimeoutMs, () => {
      // a quiet stream (a subscription waiting for events) is not an idle connection: check
      // that the peer is still there instead (the PING and its ack count as activity)
      if ((openStreams.get(session) ?? 0) > 0) checkPeer(session, idleTimeoutMs);
      else closeIdle(session, idleTimeoutMs);
    });
  });
  // nghttp2 already answered with GOAWAY or RST_STREAM; this only tells the operator
  server.on('sessionError', (error: Error, session: ServerHttp2Session) =>
    logger?.warn({ err: error, remoteAddress: session.socket?.remoteAddress }, 'HTTP/2 connection error'),
  );
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) => {
      tls?.close();
      auth?.close();
      reject(error);
    };
    server.once('error', failed);
    server.listen(options.port, options.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    port,
    close(graceMs = 10_000) {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => {
          receiveTimeout.close();
          tls?.close();
          auth?.close();
          resolve();
        });
        // GOAWAY: clients stop sending new calls on these sessions; open streams complete.
        for (const session of sessions) session.close();
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, graceMs);
        timer.unref();
      });
      return closing;
    },
  };
}

/** The listener's TLS files and the callers' token files, read now (a broken one is a ConfigError). */
function openSecurity(options: GrpcServerOptions): { tls?: ListenerTls; auth?: CallerAuth } {
  const logger = options.logger;
  const tls =
    options.tls &&
    createListenerTls({
      onReloadError: (error) => logger?.warn({ err: error }, 'changed TLS files cannot be used; the previous ones stay in use'),
      onReload: () => logger?.debug({}, 'TLS files re-read; new connections get them'),
      ...options.tls,
    });
  try {
    const auth =
      options.callerAuth &&
      createCallerAuth({
        onRefused: (refusal) => logger?.warn({ ...refusal }, 'call refused'),
        onReloadError: (error, file) => logger?.warn({ err: error, file }, 'changed token file cannot be used; the previous tokens stay in use'),
        ...options.callerAuth,
      });
    return { ...(tls ? { tls } : {}), ...(auth ? { auth } : {}) };
  } catch (error) {
    tls?.close();
    throw error;
  }
}

function withPeer(request: Http2ServerRequest): ContextValues {
  return createContextValues().set(callPeer, peerOf(request));
}

/**
 * Closes a connection that went quiet: GOAWAY lets a well-behaved client finish what is open and
 * reconnect; one that is still open after as long again is dead (or broke the protocol, which
 * nghttp2 then ignores while Node keeps the socket) and is cut.
 */
function closeIdle(session: ServerHttp2Session, graceMs: number): void {
  session.close();
  if (session.destroyed) return;
  const timer = setTimeout(() => session.destroy(), graceMs);
  timer.unref();
  session.once('close', () => clearTimeout(timer));
}

/** A PING the peer must acknowledge within `graceMs`, or the connection is cut. */
function checkPeer(session: ServerHttp2Session, graceMs: number): void {
  const timer = setTimeout(() => session.destroy(), graceMs);
  timer.unref();
  const sent = session.ping((error) => {
    clearTimeout(timer);
    if (error) session.destroy();
  });
  if (!sent) {
    clearTimeout(timer);
    session.destroy();
  }
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
