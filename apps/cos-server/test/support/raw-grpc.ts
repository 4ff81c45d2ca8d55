import * as http2 from 'node:http2';
import { gzipSync } from 'node:zlib';

/** How a raw call ended: its gRPC status, or the HTTP/2 reset that ended it instead. */
export interface RawOutcome {
  /** grpc-status from the trailers (or headers, trailers-only), when there was one */
  readonly status?: number;
  readonly message?: string;
  readonly httpStatus?: number;
  /** the RST_STREAM code when the stream was reset without a status */
  readonly rstCode?: number;
  /** whole response headers and trailers, for checks on particular ones */
  readonly trailers?: http2.IncomingHttpHeaders;
  readonly ms: number;
}

export interface RawCall {
  readonly path: string;
  readonly headers?: http2.OutgoingHttpHeaders;
  /** the request body as sent (already framed); undefined sends none */
  readonly body?: Uint8Array;
  /** keep the request open after the body (a client that never finishes sending) */
  readonly keepOpen?: boolean;
}

/** A gRPC length-prefixed message: flag byte, 4-byte big-endian length, the bytes. */
export function frame(message: Uint8Array, options: { compressed?: boolean; length?: number } = {}): Buffer {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = options.compressed ? 1 : 0;
  out.writeUInt32BE(options.length ?? message.byteLength, 1);
  out.set(message, 5);
  return out;
}

/** The message gzipped and framed with the compressed flag, as a client with grpc-encoding: gzip sends it. */
export function gzipFrame(message: Uint8Array): Buffer {
  return frame(gzipSync(message), { compressed: true });
}

/**
 * A gRPC call written by hand on node:http2, to send what no stock client would. Fails (rejects)
 * when no answer arrives within `boundMs`: a hang is a failure, never a wait.
 */
export function rawCall(session: http2.ClientHttp2Session, call: RawCall, boundMs = 5000): Promise<RawOutcome> {
  const startedAt = performance.now();
  return new Promise<RawOutcome>((resolve, reject) => {
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': call.path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...call.headers,
      },
      { endStream: false },
    );
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no answer within ${boundMs} ms to ${call.path} ${JSON.stringify(call.headers ?? {})}`));
    }, boundMs);
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', () => {});
    stream.on('error', () => {});
    stream.on('close', () => {
      clearTimeout(timer);
      const all = { ...headers, ...trailers };
      const status = all['grpc-status'];
      const message = all['grpc-message'];
      resolve({
        ...(typeof status === 'string' ? { status: Number(status) } : {}),
        ...(typeof message === 'string' ? { message: decodeURIComponent(message) } : {}),
        ...(typeof headers[':status'] === 'number' ? { httpStatus: headers[':status'] } : {}),
        ...(typeof status !== 'string' ? { rstCode: stream.rstCode } : {}),
        trailers: all,
        ms: performance.now() - startedAt,
      });
    });
    if (call.body !== undefined) stream.write(call.body);
    if (!call.keepOpen) stream.end();
  });
}

/** A cleartext HTTP/2 connection that swallows its own errors (the tests provoke them). */
export async function connectRaw(port: number): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  return session;
}
