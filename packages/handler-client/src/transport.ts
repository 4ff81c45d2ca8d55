import type { Interceptor, Transport } from '@connectrpc/connect';
import type { ClientTls } from './client-tls.js';
import type { OutgoingCallOptions } from '@chiefofstate/core';
import { createGrpcTransport, type ClientTlsOptions, type KeepaliveOptions } from './grpc-transport.js';
import { createConnectTransport } from './connect-transport.js';
import { createHttpJsonTransport } from './http-transport.js';
import { tlsFailureOf } from './tls-failure.js';

/** Where a user's handler listens and how to call it; shared by the write and read side clients. */
export interface HandlerClientOptions {
  host: string;
  port: number;
  /**
   * `grpc` (default): the handler's gRPC service over HTTP/2. `http`: the newest upstream
   * server's HTTP handler protocol, JSON over HTTP/1.1 keep-alive connections (see README).
   */
  protocol?: 'grpc' | 'http';
  /** gRPC connections to open, used round robin (COS_GRPC_CLIENT_POOL_SIZE). Default 1. */
  connections?: number;
  /**
   * A circuit breaker around every call (@chiefofstate/circuit-breaker): refused at once while
   * open; each call's deadline at most its call timeout. See README for what counts as a failure.
   */
  breaker?: CallBreaker;
  /** TLS (https) instead of plaintext HTTP/2 (h2c). Default false. */
  useTls?: boolean;
  /**
   * TLS settings, only used with useTls: fixed options (a private CA, a client certificate,
   * servername), or files kept current by `watchClientTls`, whose changes retire the open
   * connection so the next call connects with the new ones (the calls on it finish there).
   */
  tls?: ClientTlsOptions | ClientTls;
  /**
   * A connection refused at the TLS handshake (the handler's certificate not trusted or not of
   * the expected name, this client's certificate refused): at most once a minute per reason,
   * for the log. Its calls fail with HandlerUnavailableError as any unreachable handler's do.
   */
  onTlsFailure?: (error: Error) => void;
  /** Deadline of each handler call in ms (COS_GRPC_CALLS_TIMEOUT). Default 5000. */
  timeoutMs?: number;
  /** Largest request or response message in bytes. Default 4 MiB, gRPC's default. */
  maxMessageBytes?: number;
  /**
   * HTTP/2 keepalive. Default: PING every 30 s while calls are open and before reusing a
   * connection idle for longer, so a handler that vanished without closing its socket is
   * noticed and a new connection is opened.
   */
  keepalive?: KeepaliveOptions;
  /** Connect interceptors around every call, e.g. metrics (client spans are built in) */
  interceptors?: Interceptor[];
  /**
   * true (default): calls go through the hand-written unary transport (`createGrpcTransport`,
   * a third of the CPU); false: through Connect's own gRPC transport, the fallback should the
   * fast path ever misbehave (COS_GRPC_CLIENT_FAST_PATH). Both behave alike (differential tests).
   */
  fastTransport?: boolean;
}

/** Call-level options of every handler call. */
/**
 * core's OutgoingCallOptions, with headers as a Headers too. `signal`: when it aborts, the call
 * fails with its reason; `timeoutMs`: the call gets min(this, the per-call timeout);
 * `traceContext` (default: the active context): when the call's client span is recorded, its
 * `traceparent` replaces the one in `headers`.
 */
export interface HandlerCallOptions extends Omit<OutgoingCallOptions, 'headers'> {
  /** request metadata, e.g. propagated headers and `traceparent` */
  headers?: Headers | Record<string, string>;
}

/** What a client needs of a circuit breaker (@chiefofstate/circuit-breaker's CircuitBreaker). */
export interface CallBreaker {
  /** a permit for one call, or a thrown CircuitOpenError */
  acquire(timeoutMs?: number): { readonly timeoutMs: number; succeeded(): void; failed(): void; released(): void };
}

export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface HandlerTransport {
  readonly transport: Transport;
  readonly authority: string;
  readonly timeoutMs: number;
  close(): void;
}

/**
 * The handler's transport: gRPC over one HTTP/2 connection (all calls multiplex over it, and it
 * is reopened on the next call after the handler went away), or `connections` of them used
 * round robin; or HTTP/JSON over a keep-alive connection pool.
 */
export function createHandlerTransport(options: HandlerClientOptions): HandlerTransport {
  const useTls = options.useTls ?? false;
  const authority = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  const source = useTls && options.tls !== undefined && isClientTls(options.tls) ? options.tls : undefined;
  const fixed = useTls && options.tls !== undefined && !isClientTls(options.tls) ? { ...options.tls } : undefined;
  const onTlsFailure = options.onTlsFailure;
  // fastTransport false: Connect's own gRPC transport, held to the same results by the differential suite
  const createGrpc = options.fastTransport === false ? createConnectTransport : createGrpcTransport;
  const common = {
    baseUrl: `${useTls ? 'https' : 'http'}://${authority}`,
    ...(source ? { tls: () => source.current() } : fixed ? { tls: fixed } : {}),
    ...(useTls && onTlsFailure ? { onTransportError: throttled(onTlsFailure) } : {}),
    maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
  };
  const transports =
    options.protocol === 'http'
      ? [createHttpJsonTransport(common)]
      : Array.from({ length: Math.max(1, options.connections ?? 1) }, () =>
          createGrpc({ ...common, keepalive: { pingIntervalMs: 30_000, pingTimeoutMs: 10_000, ...options.keepalive } }),
        );
  // New certificates (or a new CA) must not wait for the handler to drop the old connection,
  // which may live for days: the next call connects with the new files.
  const unsubscribe = source?.subscribe(() => {
    for (const transport of transports) transport.reconnect();
  });
  return {
    transport: roundRobin(transports),
    authority,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    close: () => {
      unsubscribe?.();
      for (const transport of transports) transport.close();
    },
  };
}

/** One transport, or each call on the next of several (COS_GRPC_CLIENT_POOL_SIZE). */
function roundRobin(transports: readonly Transport[]): Transport {
  if (transports.length === 1) return transports[0]!;
  let next = 0;
  const pick = () => transports[next++ % transports.length]!;
  return {
    unary: (...args) => pick().unary(...args),
    stream: (...args) => pick().stream(...args),
  };
}

function isClientTls(tls: ClientTlsOptions | ClientTls): tls is ClientTls {
  return typeof (tls as Partial<ClientTls>).current === 'function';
}

const TLS_FAILURE_REPEAT_MS = 60_000;

/** Reports TLS failures only, each reason at most once a minute: a handler refusing us is refused on every call. */
function throttled(report: (error: Error) => void): (error: Error) => void {
  const last = new Map<string, number>();
  return (error) => {
    const failure = tlsFailureOf(error);
    if (failure === undefined) return;
    const now = performance.now();
    const reason = failure.message;
    const at = last.get(reason);
    if (at !== undefined && now - at < TLS_FAILURE_REPEAT_MS) return;
    if (last.size >= 32) last.clear();
    last.set(reason, now);
    report(failure);
  };
}

/** COS_GRPC_KEEPALIVE_* as @chiefofstate/config has them. */
export interface KeepaliveSettings {
  readonly enabled: boolean;
  readonly timeMs: number;
  readonly timeoutMs: number;
  readonly withoutCalls: boolean;
}

/** The client's keepalive option for COS_GRPC_KEEPALIVE_*; undefined (the built-in default) when off. */
export function keepaliveOf(settings: KeepaliveSettings): KeepaliveOptions | undefined {
  if (!settings.enabled) return undefined;
  return { pingIntervalMs: settings.timeMs, pingTimeoutMs: settings.timeoutMs, pingWithoutCalls: settings.withoutCalls };
}
