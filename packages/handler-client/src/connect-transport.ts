import type { ClientHttp2Stream } from 'node:http2';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport as createConnectGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import type { GrpcTransport, GrpcTransportOptions } from './grpc-transport.js';

/**
 * The same contract as `createGrpcTransport`, served by Connect's own gRPC transport
 * (`@connectrpc/connect-node`): the fallback when the hand-written fast path is turned off
 * (`fastTransport: false`, COS_GRPC_CLIENT_FAST_PATH=false), and the reference the differential
 * tests hold the fast path to. It costs about three times the CPU per call (README), and it
 * reports no TLS 1.3 client-certificate refusal as such (a Node server hangs up silently; the
 * call fails UNAVAILABLE either way).
 *
 * `reconnect()` sends later calls to a new connection (opened with the TLS options of that
 * moment) and closes the old one once its calls finished, as the fast transport does.
 */
export function createConnectTransport(options: GrpcTransportOptions): GrpcTransport {
  const { baseUrl, maxMessageBytes, keepalive, onTransportError } = options;
  const sessionOptions = {
    pingIntervalMs: keepalive?.pingIntervalMs ?? 30_000,
    pingTimeoutMs: keepalive?.pingTimeoutMs ?? 10_000,
    idleConnectionTimeoutMs: keepalive?.idleConnectionTimeoutMs ?? 900_000,
  };
  const https = new URL(baseUrl).protocol === 'https:';
  let closed = false;
  let current: CountingManager | undefined;

  const open = (): CountingManager => {
    const tls = https ? (typeof options.tls === 'function' ? options.tls() : options.tls) : undefined;
    // see createGrpcTransport: Node counts a cancelled call's unsent bytes for the connection's life
    return new CountingManager(new Http2SessionManager(baseUrl, sessionOptions, { ...tls, maxSessionMemory: Number.MAX_SAFE_INTEGER }));
  };
  const manager = {
    get authority() {
      return (current ??= open()).authority;
    },
    request: (...args: Parameters<Http2SessionManager['request']>) => {
      if (closed) return Promise.reject(new ConnectError('transport closed', Code.Unavailable));
      return (current ??= open()).request(...args);
    },
    notifyResponseByteRead: (stream: ClientHttp2Stream) => current?.notifyResponseByteRead(stream),
  };
  // A failure below gRPC, for reporting only (the caller gets the error as it is).
  const report: Interceptor = (next) => async (request) => {
    try {
      return await next(request);
    } catch (error) {
      if (onTransportError && error instanceof ConnectError && error.metadata.get('grpc-status') === null) onTransportError(error);
      throw error;
    }
  };
  const transport = createConnectGrpcTransport({
    baseUrl,
    sessionManager: manager,
    readMaxBytes: maxMessageBytes,
    writeMaxBytes: maxMessageBytes,
    interceptors: [...(options.interceptors ?? []), ...(onTransportError ? [report] : [])],
  });
  return {
    unary: transport.unary.bind(transport),
    stream: transport.stream.bind(transport),
    close() {
      closed = true;
      current?.abort();
      current = undefined;
    },
    reconnect() {
      current?.retire();
      current = undefined;
    },
  };
}

/** Connect's session manager, counting its open streams so a retired one closes when they end. */
class CountingManager {
  private open = 0;
  private retired = false;

  constructor(private readonly inner: Http2SessionManager) {}

  get authority(): string {
    return this.inner.authority;
  }

  async request(...args: Parameters<Http2SessionManager['request']>): Promise<ClientHttp2Stream> {
    this.open++;
    let stream: ClientHttp2Stream;
    try {
      stream = await this.inner.request(...args);
    } catch (error) {
      this.ended();
      throw error;
    }
    stream.once('close', () => this.ended());
    return stream;
  }

  notifyResponseByteRead(stream: ClientHttp2Stream): void {
    this.inner.notifyResponseByteRead(stream);
  }

  retire(): void {
    this.retired = true;
    if (this.open === 0) this.inner.abort();
  }

  abort(): void {
    this.inner.abort();
  }

  private ended(): void {
    if (--this.open === 0 && this.retired) this.inner.abort();
  }
}
