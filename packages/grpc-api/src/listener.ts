import { createServer as createHttp1Server, type Server as Http1Server } from 'node:http';
import {
  createSecureServer,
  createServer as createHttp2Server,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type SecureServerOptions,
  type ServerHttp2Session,
  type ServerOptions,
} from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Logger } from '@chiefofstate/core';
import type { OpenedSecurity } from './listener-security.js';
import type { ListenerTls } from './listener-tls.js';
import type { ReceiveTimeout } from './receive-timeout.js';
import type { HttpRequest, HttpResponse } from './unary-call.js';

export interface ListenerOptions {
  readonly host: string;
  /** 0 picks a free port */
  readonly port: number;
  /** HTTP/2 SETTINGS and bounds */
  readonly http2: ServerOptions;
  /** largest request header block of an HTTP/1.1 request, bytes */
  readonly maxHeaderBytes: number;
  /** HTTP/1.1: most time to receive a whole request, ms (HTTP/2 bodies are bounded by the caller's receive timeout) */
  readonly receiveTimeoutMs: number;
  /** a connection without traffic for this long is closed, ms */
  readonly idleTimeoutMs: number;
  readonly tls?: ListenerTls | undefined;
  readonly onRequest: (request: HttpRequest, response: HttpResponse) => void;
  readonly logger?: Logger;
}

export interface Listener {
  readonly port: number;
  /**
   * Stops accepting connections; HTTP/2 sessions get GOAWAY and idle HTTP/1.1 connections are
   * closed while open calls finish; after `graceMs` whatever is left is cut.
   */
  close(graceMs: number): Promise<void>;
}

/** What the gRPC port and the HTTP/JSON front end share of their listener's settings. */
export interface EdgeListenerSettings {
  readonly host: string;
  readonly port: number;
  readonly maxConcurrentStreams?: number | undefined;
  readonly maxHeaderBytes?: number | undefined;
  readonly idleTimeoutMs?: number | undefined;
  readonly logger?: Logger;
}

/**
 * startListener with the edge's HTTP/2 bounds (streams per connection, header list size and
 * pairs, session memory), over the security opened for it. The security's file watches and the
 * receive timeout's sweep stop once the listener is closed, or when it cannot start.
 */
export async function startEdgeListener(
  settings: EdgeListenerSettings,
  parts: Pick<ListenerOptions, 'onRequest' | 'receiveTimeoutMs'> & {
    readonly security: OpenedSecurity;
    readonly receiveTimeout: ReceiveTimeout;
  },
): Promise<{ readonly port: number; close(graceMs?: number): Promise<void> }> {
  const maxHeaderBytes = settings.maxHeaderBytes ?? 64 * 1024;
  const release = () => {
    parts.receiveTimeout.close();
    parts.security.close();
  };
  let listener: Listener;
  try {
    listener = await startListener({
      host: settings.host,
      port: settings.port,
      http2: {
        settings: { maxConcurrentStreams: settings.maxConcurrentStreams ?? 256, maxHeaderListSize: maxHeaderBytes },
        maxHeaderListPairs: 128,
        // MB of HPACK state and queued frames per session before new streams are refused (Node's default, made explicit)
        maxSessionMemory: 10,
      },
      maxHeaderBytes,
      receiveTimeoutMs: parts.receiveTimeoutMs,
      idleTimeoutMs: settings.idleTimeoutMs ?? 300_000,
      tls: parts.security.tls,
      onRequest: parts.onRequest,
      ...(settings.logger ? { logger: settings.logger } : {}),
    });
  } catch (error) {
    release();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    port: listener.port,
    close(graceMs = 10_000) {
      closing ??= listener.close(graceMs).then(release);
      return closing;
    },
  };
}

/** The client preface every HTTP/2 connection starts with (RFC 9113 3.4). */
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * One port speaking HTTP/2 and HTTP/1.1, cleartext or TLS. Over TLS, ALPN picks (`h2`, then
 * `http/1.1`; a client offering neither gets HTTP/1.1). In cleartext, the first bytes of a
 * connection decide: the HTTP/2 preface (gRPC clients, `curl --http2-prior-knowledge`) goes to
 * the HTTP/2 server, anything else (browsers, `curl`, `fetch`) to the HTTP/1.1 one. Both hand
 * requests to `onRequest` through node's compatibility API.
 *
 * HTTP/2 sessions are closed when idle (GOAWAY, then cut after as long again); one with a call
 * still open (a quiet stream) gets a PING instead and is cut only when it goes unanswered.
 * HTTP/1.1 connections are kept alive for as long, and a request must arrive whole within the
 * receive timeout (node answers 408 otherwise).
 */
export async function startListener(options: ListenerOptions): Promise<Listener> {
  const { tls, logger, idleTimeoutMs } = options;
  // both servers hand their own request types; onRequest takes either
  const onRequest = options.onRequest as (request: any, response: any) => void; // eslint-disable-line @typescript-eslint/no-explicit-any
  let http2: Http2Server | Http2SecureServer;
  let http1: Http1Server | undefined;
  let net: NetServer | undefined;
  if (tls) {
    const secure = createSecureServer(
      {
        ...options.http2,
        ...tls.serverOptions,
        ALPNProtocols: ['h2', 'http/1.1'],
        allowHTTP1: true,
        maxHeaderSize: options.maxHeaderBytes,
      } as SecureServerOptions,
      onRequest,
    );
    tls.attach(secure, (remoteAddress, reason) => logger?.warn({ remoteAddress, reason }, 'TLS connection refused'));
    // a failed handshake (no or a wrong client certificate, a client not trusting ours)
    secure.on('tlsClientError', (error: Error, socket: { remoteAddress?: string }) =>
      logger?.debug({ err: error, remoteAddress: socket.remoteAddress }, 'TLS handshake failed'),
    );
    http2 = secure;
    // HTTP/1.1 connections of the secure server: the same keep-alive and request bounds
    configureHttp1(secure as unknown as Http1Server, options);
  } else {
    http2 = createHttp2Server(options.http2, onRequest);
    http1 = createHttp1Server({ maxHeaderSize: options.maxHeaderBytes }, onRequest);
    configureHttp1(http1, options);
    // it never listens itself: what 'listening' starts (tracking connections, which the request
    // timeout and closeIdleConnections need) is started here
    http1.emit('listening');
    net = createNetServer((socket) => route(socket, http2, http1!, options.receiveTimeoutMs));
  }
  const sessions = watchSessions(http2, idleTimeoutMs);
  // nghttp2 already answered with GOAWAY or RST_STREAM; this only tells the operator
  http2.on('sessionError', (error: Error, session: ServerHttp2Session) =>
    logger?.warn({ err: error, remoteAddress: session.socket?.remoteAddress }, 'HTTP/2 connection error'),
  );
  const listening: NetServer = net ?? http2;
  await new Promise<void>((resolve, reject) => {
    listening.once('error', reject);
    listening.listen(options.port, options.host, () => {
      listening.off('error', reject);
      resolve();
    });
  });
  const port = (listening.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    port,
    close(graceMs) {
      closing ??= new Promise<void>((resolve) => {
        listening.close(() => resolve());
        // GOAWAY: clients stop sending new calls on these sessions; open streams complete
        for (const session of sessions) session.close();
        const plain = http1 ?? (http2 as unknown as Http1Server);
        plain.closeIdleConnections?.();
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
          plain.closeAllConnections?.();
        }, graceMs);
        timer.unref();
        // the cleartext HTTP/2 and HTTP/1.1 servers never listened: the net server's close waits for their sockets
        if (net) {
          http1!.close();
          http2.close();
        }
      });
      return closing;
    },
  };
}

function configureHttp1(server: Http1Server, options: ListenerOptions): void {
  server.keepAliveTimeout = options.idleTimeoutMs;
  server.requestTimeout = options.receiveTimeoutMs;
  server.headersTimeout = Math.min(options.receiveTimeoutMs, 60_000);
  // bounded like HTTP/2's maxHeaderListPairs
  server.maxHeadersCount = 128;
}

/**
 * Reads the first bytes of a cleartext connection and hands it, bytes unread, to the server of
 * its protocol. A connection that says too little to decide within `timeoutMs` (nothing at all,
 * or "P") is cut: no server has it yet, so no other timeout would.
 */
function route(socket: Socket, http2: Http2Server | Http2SecureServer, http1: Http1Server, timeoutMs: number): void {
  socket.setTimeout(timeoutMs, () => socket.destroy());
  let seen = Buffer.alloc(0);
  const decide = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const compared = Math.min(seen.length, HTTP2_PREFACE.length);
    const isHttp2 = seen.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    // "P" may still be POST, PUT or PATCH: wait for the bytes that tell
    if (isHttp2 && compared < 4) return;
    socket.off('data', decide);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(seen);
    if (isHttp2) {
      // the session takes the buffered bytes itself (and then reads the socket's handle directly)
      http2.emit('connection', socket);
    } else {
      http1.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', decide);
  socket.on('error', () => socket.destroy());
}

/** The open HTTP/2 sessions, closed when idle or checked with a PING when a call is open. */
function watchSessions(server: Http2Server | Http2SecureServer, idleTimeoutMs: number): Set<ServerHttp2Session> {
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
  return sessions;
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
