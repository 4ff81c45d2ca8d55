import { constants, type Http2ServerRequest } from 'node:http2';
import { encodeGrpcMessage } from './grpc-message.js';

export interface ReceiveTimeout {
  /** Starts the clock of a request; it stops by itself when the request body has arrived. */
  watch(request: Http2ServerRequest): void;
  /** Starts the clock of a request whose reader calls `done` when the body has arrived. */
  start(request: Http2ServerRequest): void;
  done(request: Http2ServerRequest): void;
  close(): void;
}

/**
 * Bounds the time from a call's headers to the end of its request body (COS_GRPC_RECEIVE_TIMEOUT):
 * a client that opens calls and then sends nothing, or trickles, would otherwise hold a stream
 * and its buffers until the connection dies. One sweep timer serves every call, so a call costs
 * a map entry, not a timer of its own. A late call is answered DEADLINE_EXCEEDED and its stream
 * reset (NO_ERROR: the answer is complete, the rest of the body is not wanted).
 */
export function createReceiveTimeout(
  timeoutMs: number,
  onExpired?: (request: Http2ServerRequest) => void,
): ReceiveTimeout {
  const started = new Map<Http2ServerRequest, number>();
  const message = encodeGrpcMessage(`the request did not arrive within ${timeoutMs} ms`);

  function onEnd(this: Http2ServerRequest): void {
    started.delete(this);
  }

  const sweep = setInterval(
    () => {
      const expiredBefore = Date.now() - timeoutMs;
      for (const [request, at] of started) {
        const stream = request.stream;
        if (stream.destroyed || request.readableEnded) started.delete(request);
        else if (at <= expiredBefore) {
          started.delete(request);
          onExpired?.(request);
          expire(request, message);
        }
      }
    },
    Math.min(1000, Math.max(10, Math.floor(timeoutMs / 4))),
  );
  sweep.unref();

  return {
    watch(request) {
      started.set(request, Date.now());
      request.once('end', onEnd);
    },
    start(request) {
      started.set(request, Date.now());
    },
    done(request) {
      started.delete(request);
    },
    close: () => clearInterval(sweep),
  };
}

function expire(request: Http2ServerRequest, grpcMessage: string): void {
  const stream = request.stream;
  if (!stream.headersSent) {
    const contentType = request.headers['content-type'] ?? '';
    if (contentType.startsWith('application/grpc')) {
      stream.respond(
        {
          ':status': 200,
          'content-type': contentType,
          'grpc-status': String(4 /* DEADLINE_EXCEEDED */),
          'grpc-message': grpcMessage,
        },
        { endStream: true },
      );
    } else {
      // Connect protocol: the error as its JSON body
      stream.respond({ ':status': 408, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ code: 'deadline_exceeded', message: decodeURIComponent(grpcMessage) }));
    }
  }
  stream.close(constants.NGHTTP2_NO_ERROR);
}
