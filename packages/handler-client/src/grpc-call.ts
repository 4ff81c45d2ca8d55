import { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { toBinary, type DescMessage, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type UnaryResponse } from '@connectrpc/connect';
import { timerDelay } from '@chiefofstate/core';
import { conclude, errorMessage, type Metadata } from './grpc-response.js';
import type { SessionPool } from './grpc-session-pool.js';
import { NEVER_ABORTED } from './unary-chain.js';

/** What every call of a transport shares (created once per transport). */
export interface CallContext {
  readonly pool: SessionPool;
  readonly scheme: 'http' | 'https';
  /** largest request or response message in bytes */
  readonly maxMessageBytes: number;
  readonly onTransportError: ((error: Error) => void) | undefined;
}

/** The request message as one length-prefixed gRPC frame, or the error refusing it for its size. */
export function requestFrame(method: DescMethodUnary, message: MessageShape<DescMessage>, maxMessageBytes: number): Buffer | ConnectError {
  const body = toBinary(method.input, message);
  if (body.byteLength > maxMessageBytes) {
    return new ConnectError(`message size ${body.byteLength} is larger than configured writeMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted);
  }
  const frame = Buffer.allocUnsafe(5 + body.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(body.byteLength, 1);
  frame.set(body, 5);
  return frame;
}

/**
 * One call on `target`: the request frame written, the response read into one buffer until
 * the stream closes, bounded by the deadline and the caller's signal.
 */
export function exchange(
  ctx: CallContext,
  target: ClientHttp2Session,
  method: DescMethodUnary,
  headers: OutgoingHttpHeaders,
  frame: Buffer,
  signal: AbortSignal,
  timeoutMs: number | undefined,
): Promise<UnaryResponse> {
  const { pool, scheme, maxMessageBytes, onTransportError } = ctx;
  return new Promise<UnaryResponse>((resolve, reject) => {
    pool.callStarted(target);
    let stream: ClientHttp2Stream;
    try {
      stream = target.request(headers, { endStream: false });
    } catch (error) {
      pool.callEnded(false);
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
      pool.callEnded(true);
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
      if (stream.rstCode === constants.NGHTTP2_ENHANCE_YOUR_CALM) pool.retire(target);
      if (settled) return;
      if (responseHeaders === undefined && streamError === undefined && scheme === 'https' && !pool.spoke(target)) {
        // A server refusing this client's certificate after a TLS 1.3 handshake just hangs up.
        const refused = new TlsHandshakeRefusedError();
        streamError = refused;
        onTransportError?.(refused);
      }
      const outcome = conclude(method, responseHeaders, trailers, chunks, received, streamError, stream.rstCode, maxMessageBytes);
      if (outcome instanceof ConnectError) finish(outcome);
      else outcome.then(
        (response) => finish(undefined, response),
        (error: unknown) => finish(ConnectError.from(error)),
      );
    });
    stream.end(frame);
  });
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
