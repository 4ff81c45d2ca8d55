import { connect, type ClientHttp2Session } from 'node:http2';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ClientTlsOptions } from './grpc-transport.js';

export interface SessionPoolOptions {
  readonly baseUrl: string;
  readonly scheme: 'http' | 'https';
  readonly tls: ClientTlsOptions | (() => ClientTlsOptions) | undefined;
  readonly onTransportError: ((error: Error) => void) | undefined;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly pingWithoutCalls: boolean;
}

/**
 * The transport's HTTP/2 connection: one session for every call, opened when a call needs it,
 * kept alive (or closed when idle) by PINGs, replaced after GOAWAY, a close or `retire`. It
 * keeps the process alive only while calls are open.
 */
export interface SessionPool {
  /** The session to use; one idle for longer than the PING interval is checked first. */
  acquire(): ClientHttp2Session | Promise<ClientHttp2Session>;
  /** Later calls go to a new connection; the calls open on this one finish. */
  retire(target: ClientHttp2Session): void;
  /** Later calls go to a new connection (when there is a current one). */
  reconnect(): void;
  /** Whether a TLS session's server sent its HTTP/2 SETTINGS: it took the handshake. */
  spoke(target: ClientHttp2Session): boolean;
  /** A call starts on `target`. */
  callStarted(target: ClientHttp2Session): void;
  /** A call ended; `ran`: it got as far as a stream (the connection was used). */
  callEnded(ran: boolean): void;
  /** Drops the connection; calls in flight fail. */
  close(): void;
}

export function createSessionPool(options: SessionPoolOptions): SessionPool {
  const { baseUrl, scheme, onTransportError, pingIntervalMs, pingTimeoutMs, idleTimeoutMs, pingWithoutCalls } = options;
  let session: ClientHttp2Session | undefined;
  /** TLS sessions whose server sent its HTTP/2 SETTINGS: it took the handshake */
  const spoke = new WeakSet<ClientHttp2Session>();
  /** calls in flight on any session */
  let open = 0;
  let lastActivity = 0;

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

  function retire(target: ClientHttp2Session): void {
    if (session === target) session = undefined;
    if (!target.closed && !target.destroyed) target.close();
  }

  return {
    acquire() {
      const current = session;
      // with pings while idle, the connection is known alive (or already dropped)
      if (current !== undefined && open === 0 && !pingWithoutCalls && performance.now() - lastActivity >= pingIntervalMs) {
        if (current.closed || current.destroyed) return currentSession();
        current.ref();
        return ping(current).then(() => currentSession());
      }
      return currentSession();
    },
    retire,
    reconnect() {
      if (session !== undefined) retire(session);
    },
    spoke(target) {
      return spoke.has(target);
    },
    callStarted(target) {
      if (open++ === 0) target.ref();
      lastActivity = performance.now();
    },
    callEnded(ran) {
      if (--open !== 0) return;
      if (ran) lastActivity = performance.now();
      session?.unref();
    },
    close() {
      clearInterval(keepalive);
      session?.destroy();
      session = undefined;
    },
  };
}
