import type { OutgoingHttpHeaders, SecureClientSessionOptions } from 'node:http2';
import type { DescMessage, DescMethodUnary, MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type Interceptor, type Transport, type UnaryResponse } from '@connectrpc/connect';
import { MAX_TIMER_MS, timerDelay } from '@chiefofstate/core';
import { exchange, requestFrame, type CallContext } from './grpc-call.js';
import { createSessionPool } from './grpc-session-pool.js';
import { callRefusal, copyHeaders, createUnary, type HeaderInput } from './unary-chain.js';

export { TlsHandshakeRefusedError } from './grpc-call.js';

/** HTTP/2 PING settings of a handler connection. */
export interface KeepaliveOptions {
  /** PING this often while calls are open, and before reusing a connection idle this long. Default 30 000 */
  pingIntervalMs?: number;
  /** a PING not answered within this closes the connection. Default 10 000 */
  pingTimeoutMs?: number;
  /** a connection without calls for this long is closed (not with pingWithoutCalls). Default 900 000 */
  idleConnectionTimeoutMs?: number;
  /**
   * PING every pingIntervalMs even while no call is open (COS_GRPC_KEEPALIVE_WITHOUT_CALLS), so
   * a connection that died silently is dropped before a call needs it; such a connection is
   * kept however long it idles. Default false.
   */
  pingWithoutCalls?: boolean;
}

/** What a TLS connection is opened with: PEM material or a prepared secure context, and the name checked. */
export type ClientTlsOptions = Pick<
  SecureClientSessionOptions,
  'ca' | 'cert' | 'key' | 'servername' | 'rejectUnauthorized' | 'secureContext' | 'checkServerIdentity'
>;

export interface GrpcTransportOptions {
  /** `http://host:port` (h2c) or `https://host:port` */
  readonly baseUrl: string;
  /** TLS of an https baseUrl; a function is asked again for each new connection (rotated files) */
  readonly tls?: ClientTlsOptions | (() => ClientTlsOptions);
  /**
   * a connection or a call failed below gRPC (refused, TLS handshake refused, reset): for
   * reporting only, the calls fail on their own; one failure may be reported more than once
   */
  readonly onTransportError?: (error: Error) => void;
  /** largest request or response message in bytes */
  readonly maxMessageBytes: number;
  readonly keepalive?: KeepaliveOptions;
  readonly interceptors?: readonly Interceptor[];
}

export interface GrpcTransport extends Transport {
  /** Drops the connection; calls in flight fail. */
  close(): void;
  /**
   * Later calls go to a new connection (opened with the TLS options of that moment); the calls
   * in flight on the current one finish there.
   */
  reconnect(): void;
}

/** set by the transport, never copied from a caller's metadata */
const GRPC_RESERVED: ReadonlySet<string> = new Set(['content-type', 'te', 'grpc-timeout']);
const USER_AGENT = 'chiefofstate-handler-client';

/**
 * A Connect `Transport` speaking unary gRPC (binary protobuf) straight over `node:http2`: one
 * session for every call, a request written as a single frame, the response read into one
 * buffer. It does what Connect's gRPC transport does for unary calls with far less per-call
 * work (no async iterables, abort controllers or header objects per call), which matters
 * because every command costs two handler calls. Errors are ConnectErrors shaped like
 * Connect's own (the status and its metadata), so translateHandlerError reads them the same.
 * Streaming methods are not supported: the handler services are unary. The connection is
 * grpc-session-pool.ts's, a call's stream grpc-call.ts's, its response grpc-response.ts's.
 */
export function createGrpcTransport(options: GrpcTransportOptions): GrpcTransport {
  const { baseUrl, maxMessageBytes } = options;
  const url = new URL(baseUrl);
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const authority = url.host;
  const interceptors = options.interceptors ?? [];
  const pool = createSessionPool({
    baseUrl,
    scheme,
    tls: options.tls,
    onTransportError: options.onTransportError,
    pingIntervalMs: options.keepalive?.pingIntervalMs ?? 30_000,
    pingTimeoutMs: options.keepalive?.pingTimeoutMs ?? 10_000,
    idleTimeoutMs: options.keepalive?.idleConnectionTimeoutMs ?? 900_000,
    pingWithoutCalls: options.keepalive?.pingWithoutCalls ?? false,
  });
  const calls: CallContext = { pool, scheme, maxMessageBytes, onTransportError: options.onTransportError };
  let closed = false;

  const paths = new WeakMap<DescMethodUnary, OutgoingHttpHeaders>();
  function baseHeaders(method: DescMethodUnary): OutgoingHttpHeaders {
    let headers = paths.get(method);
    if (headers === undefined) {
      headers = {
        ':method': 'POST',
        ':scheme': scheme,
        ':authority': authority,
        ':path': `/${method.parent.typeName}/${method.name}`,
        'content-type': 'application/grpc+proto',
        te: 'trailers',
        'user-agent': USER_AGENT,
      };
      paths.set(method, headers);
    }
    return headers;
  }

  function send(
    method: DescMethodUnary,
    message: MessageShape<DescMessage>,
    header: HeaderInput | undefined,
    signal: AbortSignal,
    timeoutMs: number | undefined,
  ): Promise<UnaryResponse> {
    const refusal = callRefusal(closed, signal);
    if (refusal) return Promise.reject(refusal);
    const frame = requestFrame(method, message, maxMessageBytes);
    if (frame instanceof ConnectError) return Promise.reject(frame);

    const headers: OutgoingHttpHeaders = { ...baseHeaders(method) };
    if (timeoutMs !== undefined) headers['grpc-timeout'] = encodeGrpcTimeout(timeoutMs);
    if (header !== undefined) copyHeaders(header, headers as Record<string, string>, GRPC_RESERVED);

    const target = pool.acquire();
    return target instanceof Promise
      ? target.then((s) => exchange(calls, s, method, headers, frame, signal, timeoutMs))
      : exchange(calls, target, method, headers, frame, signal, timeoutMs);
  }

  const unary = createUnary(baseUrl, interceptors, send);

  return {
    unary,
    stream: () => Promise.reject(new ConnectError('streaming calls are not supported by this transport', Code.Unimplemented)),
    close() {
      closed = true;
      pool.close();
    },
    reconnect() {
      pool.reconnect();
    },
  };
}

const MAX_TIMER_S = Math.floor(MAX_TIMER_MS / 1000);

/**
 * `grpc-timeout` for a deadline in ms: at most 8 digits, as the spec says, so deadlines past
 * 99,999,999 ms (about 27.8 hours) go in seconds, rounded up (a 9-digit value is refused by
 * Connect and misread by grpc-js). Capped at 2^31-1 ms, about 24.8 days: a grpc-js server
 * computes the deadline in 32 bits and fails a longer one at once.
 */
export function encodeGrpcTimeout(timeoutMs: number): string {
  const ms = Math.max(1, Math.ceil(timerDelay(timeoutMs)));
  return ms <= 99_999_999 ? `${ms}m` : `${Math.min(Math.ceil(ms / 1000), MAX_TIMER_S)}S`;
}
