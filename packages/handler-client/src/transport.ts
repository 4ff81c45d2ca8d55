import type { SecureClientSessionOptions } from 'node:http2';
import type { Context } from '@opentelemetry/api';
import type { Interceptor, Transport } from '@connectrpc/connect';
import { createGrpcTransport, type KeepaliveOptions } from './grpc-transport.js';

/** Where a user's handler listens and how to call it; shared by the write and read side clients. */
export interface HandlerClientOptions {
  host: string;
  port: number;
  /** TLS (https) instead of plaintext HTTP/2 (h2c). Default false. */
  useTls?: boolean;
  /** TLS settings, e.g. a private CA; only used with useTls. */
  tls?: Pick<SecureClientSessionOptions, 'ca' | 'cert' | 'key' | 'servername' | 'rejectUnauthorized'>;
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
}

/** Call-level options of every handler call. */
export interface HandlerCallOptions {
  /** request metadata, e.g. propagated headers and `traceparent` */
  headers?: Headers | Record<string, string>;
  /** the caller's cancellation; when it aborts, the call fails with its reason */
  signal?: AbortSignal;
  /** the caller's remaining time in ms; the call gets min(this, the per-call timeout) */
  timeoutMs?: number;
  /**
   * The OpenTelemetry context the call's client span is a child of. Default: the active context.
   * When that span is recorded, its `traceparent` replaces the one in `headers`.
   */
  traceContext?: Context | undefined;
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
 * One gRPC transport over ONE HTTP/2 connection: all calls multiplex over it, and it is
 * reopened on the next call after the handler went away.
 */
export function createHandlerTransport(options: HandlerClientOptions): HandlerTransport {
  const useTls = options.useTls ?? false;
  const authority = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  const transport = createGrpcTransport({
    baseUrl: `${useTls ? 'https' : 'http'}://${authority}`,
    ...(useTls && options.tls ? { tls: { ...options.tls } } : {}),
    maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    keepalive: { pingIntervalMs: 30_000, pingTimeoutMs: 10_000, ...options.keepalive },
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
  });
  return {
    transport,
    authority,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    close: () => transport.close(),
  };
}
