import {
  connect,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type IncomingHttpStatusHeader,
  type OutgoingHttpHeaders,
  type SecureClientSessionOptions,
} from 'node:http2';
import { gunzip } from 'node:zlib';
import { fromBinary, toBinary, type DescMessage, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type Interceptor, type Transport, type UnaryResponse } from '@connectrpc/connect';
import { MAX_TIMER_MS, timerDelay } from '@chiefofstate/core';
import { callRefusal, copyHeaders, createUnary, NEVER_ABORTED, type HeaderInput } from './unary-chain.js';

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

type Metadata = IncomingHttpHeaders & IncomingHttpStatusHeader;

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
 * Streaming methods are not supported: the handler services are unary.
 */
export function createGrpcTransport(options: GrpcTransportOptions): GrpcTransport {
  const { baseUrl, maxMessageBytes } = options;
  const url = new URL(baseUrl);
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const authority = url.host;
  const pingIntervalMs = options.keepalive?.pingIntervalMs ?? 30_000;
  const pingTimeoutMs = options.keepalive?.pingTimeoutMs ?? 10_000;
  const idleTimeoutMs = options.keepalive?.idleConnectionTimeoutMs ?? 900_000;
  const pingWithoutCalls = options.keepalive?.pingWithoutCalls ?? false;
  const interceptors = options.interceptors ?? [];
  const onTransportError = options.onTransportError;

  let session: ClientHttp2Session | undefined;
  /** TLS sessions whose server sent its HTTP/2 SETTINGS: it took the handshake */
  const spoke = new WeakSet<ClientHttp2Session>();
  /** calls in flight on any session */
  let open = 0;
  let lastActivity = 0;
  let closed = false;

  const keepalive = setInterval(() => {
    const current = session;
    if (current === undefined) return;
    if (open > 0 || pingWithoutCalls) void ping(current);
    else if (performance.now() - lastActivity >= idleTimeoutMs) current.close();
  }, pingIntervalMs);
  keepalive.unref();

  function ping(target: ClientHttp2Session): Promise<boolean> {
    // destroyed by a PING timeout (or the peer) and not yet forgotten: ping() would throw
    if (target.destroyed || target.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        target.destroy(new ConnectError('PING timed out', Code.Unavailable));
        resolve(false);
      }, pingTimeoutMs);
      timer.unref();
      let sent = false;
      try {
        sent = target.ping((error) => {
          clearTimeout(timer);
          if (error) target.destroy();
          resolve(error === null);
        });
      } catch {
        // the session went away between the check and the ping
      }
      if (!sent) {
        clearTimeout(timer);
        resolve(false);
      }
    });
  }

  function currentSession(): ClientHttp2Session {
    if (session !== undefined && !session.closed && !session.destroyed) return session;
    const tls = scheme === 'https' ? (typeof options.tls === 'function' ? options.tls() : options.tls) : undefined;
    const created = connect(baseUrl, {
      ...tls,
      settings: { enablePush: false },
      // Node keeps counting the unsent request bytes of a cancelled call (one whose deadline
      // passed while the handler was slow to read) against this limit, for the life of the
      // connection; past the 10 MB default it refuses every answer with ENHANCE_YOUR_CALM.
      // Memory is bounded by maxMessageBytes and COS's own bounds instead; grpc-js does the same.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    // Failures reach the calls through their streams; the session's own event is for reporting.
    created.on('error', onTransportError ? (error: Error) => onTransportError(error) : () => {});
    const forget = () => {
      if (session === created) session = undefined;
    };
    // After GOAWAY the streams already open finish; new calls go to a new connection.
    created.once('goaway', forget);
    if (scheme === 'https') created.once('remoteSettings', () => spoke.add(created));
    created.once('close', forget);
    if (open === 0) created.unref();
    session = created;
    return created;
  }

  /** Later calls go to a new connection; the calls open on this one finish. */
  function retire(target: ClientHttp2Session): void {
    if (session === target) session = undefined;
    if (!target.closed && !target.destroyed) target.close();
  }

  /** The session to use; one idle for longer than the PING interval is checked first. */
  function acquire(): ClientHttp2Session | Promise<ClientHttp2Session> {
    const current = session;
    // with pings while idle, the connection is known alive (or already dropped)
    if (current !== undefined && open === 0 && !pingWithoutCalls && performance.now() - lastActivity >= pingIntervalMs) {
      if (current.closed || current.destroyed) return currentSession();
      current.ref();
      return ping(current).then(() => currentSession());
    }
    return currentSession();
  }

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
    const body = toBinary(method.input, message);
    if (body.byteLength > maxMessageBytes) {
      return Promise.reject(
        new ConnectError(`message size ${body.byteLength} is larger than configured writeMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted),
      );
    }
    const frame = Buffer.allocUnsafe(5 + body.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(body.byteLength, 1);
    frame.set(body, 5);

    const headers: OutgoingHttpHeaders = { ...baseHeaders(method) };
    if (timeoutMs !== undefined) headers['grpc-timeout'] = encodeGrpcTimeout(timeoutMs);
    if (header !== undefined) copyHeaders(header, headers as Record<string, string>, GRPC_RESERVED);

    const target = acquire();
    return target instanceof Promise
      ? target.then((s) => exchange(s, method, headers, frame, signal, timeoutMs))
      : exchange(target, method, headers, frame, signal, timeoutMs);
  }

  function exchange(
    target: ClientHttp2Session,
    method: DescMethodUnary,
    headers: OutgoingHttpHeaders,
    frame: Buffer,
    signal: AbortSignal,
    timeoutMs: number | undefined,
  ): Promise<UnaryResponse> {
    return new Promise<UnaryResponse>((resolve, reject) => {
      if (open++ === 0) target.ref();
      lastActivity = performance.now();
      let stream: ClientHttp2Stream;
      try {
        stream = target.request(headers, { endStream: false });
      } catch (error) {
        if (--open === 0) session?.unref();
        reject(new ConnectError(`cannot start the call: ${errorMessage(error)}`, Code.Unavailable, undefined, undefined, error));
        return;
      }
      let settled = false;
      let responseHeaders: Metadata | undefined;
      let trailers: IncomingHttpHeaders | undefined;
      let streamError: unknown;
      const chunks: Buffer[] = [];
      let received = 0;

      const finish = (error: ConnectError | undefined, response?: UnaryResponse) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (signal !== NEVER_ABORTED) signal.removeEventListener('abort', onAbort);
        if (--open === 0) {
          lastActivity = performance.now();
          session?.unref();
        }
        if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
        if (error) reject(error);
        else resolve(response!);
      };
      const onAbort = () => finish(new ConnectError('call aborted', Code.Canceled, undefined, undefined, signal.reason));
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => finish(new ConnectError('the operation timed out', Code.DeadlineExceeded)), timerDelay(timeoutMs));
      if (signal !== NEVER_ABORTED) signal.addEventListener('abort', onAbort, { once: true });

      stream.on('response', (h) => {
        responseHeaders = h;
      });
      stream.on('data', (chunk: Buffer) => {
        received += chunk.byteLength;
        // a single message plus its 5-byte prefix (and a little slack for a compressed one's frame)
        if (received > maxMessageBytes + 5) {
          finish(
            new ConnectError(`message size is larger than configured readMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted),
          );
          return;
        }
        chunks.push(chunk);
      });
      stream.on('trailers', (t) => {
        trailers = t;
      });
      stream.on('error', (error) => {
        streamError = error;
        onTransportError?.(error);
      });
      stream.on('close', () => {
        // A peer (or Node itself) short of resources refused the stream: give it a fresh connection.
        if (stream.rstCode === constants.NGHTTP2_ENHANCE_YOUR_CALM) retire(target);
        if (settled) return;
        if (responseHeaders === undefined && streamError === undefined && scheme === 'https' && !spoke.has(target)) {
          // A server refusing this client's certificate after a TLS 1.3 handshake just hangs up.
          const refused = new TlsHandshakeRefusedError();
          streamError = refused;
          onTransportError?.(refused);
        }
        const outcome = conclude(method, responseHeaders, trailers, chunks, received, streamError, stream.rstCode);
        if (outcome instanceof ConnectError) finish(outcome);
        else outcome.then(
          (response) => finish(undefined, response),
          (error: unknown) => finish(ConnectError.from(error)),
        );
      });
      stream.end(frame);
    });
  }

  /** The call's result once its stream closed: a ConnectError, or the response being decoded. */
  function conclude(
    method: DescMethodUnary,
    headers: Metadata | undefined,
    trailers: IncomingHttpHeaders | undefined,
    chunks: Buffer[],
    received: number,
    streamError: unknown,
    rstCode: number | undefined,
  ): ConnectError | Promise<UnaryResponse> {
    if (headers === undefined) {
      return new ConnectError(
        streamError !== undefined ? errorMessage(streamError) : `stream closed without a response (HTTP/2 code ${rstCode})`,
        Code.Unavailable,
        undefined,
        undefined,
        streamError,
      );
    }
    const status = headers[':status'];
    if (status !== 200) {
      return new ConnectError(`HTTP ${status}`, codeFromHttpStatus(status), metadataOf(headers, undefined));
    }
    const contentType = headers['content-type'] ?? '';
    if (!contentType.startsWith('application/grpc')) {
      return new ConnectError(`unexpected response content-type "${contentType}"`, Code.Unknown, metadataOf(headers, undefined));
    }
    const grpcStatus = trailers?.['grpc-status'] ?? headers['grpc-status'];
    if (grpcStatus === undefined) {
      // the stream broke before the trailers
      return new ConnectError(
        streamError !== undefined ? errorMessage(streamError) : 'protocol error: missing grpc-status',
        streamError !== undefined ? Code.Unavailable : Code.Internal,
        undefined,
        undefined,
        streamError,
      );
    }
    const code = Number.parseInt(String(grpcStatus), 10);
    if (code !== 0) {
      const rawMessage = trailers?.['grpc-message'] ?? headers['grpc-message'];
      return new ConnectError(
        percentDecode(typeof rawMessage === 'string' ? rawMessage : ''),
        Number.isInteger(code) ? (code as Code) : Code.Unknown,
        metadataOf(headers, trailers),
      );
    }
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
    if (data.byteLength < 5) {
      return new ConnectError('protocol error: missing output message for unary method', Code.Unimplemented);
    }
    const flags = data[0]!;
    const length = data.readUInt32BE(1);
    if (length > maxMessageBytes) {
      return new ConnectError(`message size ${length} is larger than configured readMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted);
    }
    if (data.byteLength < 5 + length) return new ConnectError('protocol error: truncated message', Code.Internal);
    if (data.byteLength > 5 + length) {
      return new ConnectError('protocol error: received extra output message for unary method', Code.Unimplemented);
    }
    // A copy of exactly the message: decoded bytes fields (a state's value) are views into it
    // and may be cached for long, so they must not pin a larger network buffer.
    const payload = new Uint8Array(length);
    payload.set(data.subarray(5, 5 + length));
    const decoded =
      (flags & 1) === 0
        ? Promise.resolve(payload)
        : decompress(payload, headers['grpc-encoding'], maxMessageBytes);
    return decoded.then((bytes) => {
      const message = fromBinary(method.output, bytes);
      return responseOf(method, message, headers, trailers);
    });
  }

  const unary = createUnary(baseUrl, interceptors, send);

  return {
    unary,
    stream: () => Promise.reject(new ConnectError('streaming calls are not supported by this transport', Code.Unimplemented)),
    close() {
      closed = true;
      clearInterval(keepalive);
      session?.destroy();
      session = undefined;
    },
    reconnect() {
      if (session !== undefined) retire(session);
    },
  };
}

/**
 * A TLS connection the server closed before its HTTP/2 preface (which a server sends before it
 * reads any call): it refused the handshake, most likely this client's certificate.
 */
export class TlsHandshakeRefusedError extends Error {
  readonly code = 'COS_TLS_HANDSHAKE_REFUSED';

  constructor() {
    super('the server closed the TLS connection before speaking HTTP/2: it refused the handshake (e.g. this client\'s certificate)');
    this.name = 'TlsHandshakeRefusedError';
  }
}

function responseOf(
  method: DescMethodUnary,
  message: MessageShape<DescMessage>,
  headers: Metadata,
  trailers: IncomingHttpHeaders | undefined,
): UnaryResponse {
  // Header objects are built only when someone looks (an interceptor, an onHeader callback).
  let header: Headers | undefined;
  let trailer: Headers | undefined;
  return {
    stream: false,
    service: method.parent,
    method,
    message,
    get header() {
      return (header ??= metadataOf(headers, undefined));
    },
    get trailer() {
      return (trailer ??= metadataOf({}, trailers));
    },
  };
}

/** Response headers and trailers as one Headers object, as Connect's errors carry them. */
function metadataOf(headers: IncomingHttpHeaders, trailers: IncomingHttpHeaders | undefined): Headers {
  const metadata = new Headers();
  for (const source of [headers, trailers]) {
    if (source === undefined) continue;
    for (const [name, value] of Object.entries(source)) {
      if (name.startsWith(':') || value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) metadata.append(name, v);
      else metadata.append(name, String(value));
    }
  }
  return metadata;
}

function decompress(payload: Uint8Array, encoding: string | string[] | undefined, maxBytes: number): Promise<Uint8Array> {
  if (encoding !== 'gzip') {
    return Promise.reject(new ConnectError(`cannot decompress a message encoded as "${String(encoding)}"`, Code.Internal));
  }
  return new Promise((resolve, reject) =>
    gunzip(payload, { maxOutputLength: maxBytes }, (error, result) => {
      if (error) {
        reject(
          (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
            ? new ConnectError(`message is larger than configured readMaxBytes ${maxBytes}`, Code.ResourceExhausted)
            : new ConnectError(`cannot decompress the message: ${error.message}`, Code.Internal),
        );
      } else resolve(new Uint8Array(result.buffer, result.byteOffset, result.byteLength));
    }),
  );
}

/** gRPC's mapping of an HTTP status to a code, for responses that are not gRPC. */
function codeFromHttpStatus(status: number | undefined): Code {
  switch (status) {
    case 400:
      return Code.Internal;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.Unimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.Unavailable;
    default:
      return Code.Unknown;
  }
}

function percentDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
