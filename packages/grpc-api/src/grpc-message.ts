import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';

const encoder = new TextEncoder();

/**
 * Percent-encodes a status message as the gRPC spec says: UTF-8 bytes outside 0x20..0x7E, and
 * `%` itself, become `%XX`; everything else stays. Connect encodes with encodeURIComponent
 * (so `:` becomes `%3A`), and grpc-js decodes with decodeURI, which leaves `%3A` as it is: a
 * stock Node client would read "insufficient funds%3A ...". The spec's form reads back right in
 * every client.
 */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of encoder.encode(message)) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * What Connect answers INTERNAL although the request is at fault: a body that is not the
 * method's message, and a compressed flag without grpc-encoding. The unary path says
 * INVALID_ARGUMENT for these; so does the Connect path, here.
 */
const REQUEST_FAULTS = ['parse binary: ', 'received compressed envelope, but do not know how to decompress'];

function reencode(headers: OutgoingHttpHeaders | undefined): void {
  const value = headers?.['grpc-message'];
  if (headers && typeof value === 'string') {
    let decoded: string;
    try {
      decoded = decodeURIComponent(value);
    } catch {
      return;
    }
    headers['grpc-message'] = encodeGrpcMessage(decoded);
    if (headers['grpc-status'] === '13' && REQUEST_FAULTS.some((prefix) => decoded.startsWith(prefix))) {
      headers['grpc-status'] = '3';
    }
  }
}

/**
 * Rewrites grpc-message in the headers (trailers-only responses) and trailers of a response,
 * and the status of the request faults above.
 */
export function normaliseGrpcMessage(response: Http2ServerResponse): void {
  const writeHead = response.writeHead.bind(response) as (...args: unknown[]) => Http2ServerResponse;
  response.writeHead = ((...args: unknown[]) => {
    for (const arg of args) if (typeof arg === 'object' && arg !== null) reencode(arg as OutgoingHttpHeaders);
    return writeHead(...args);
  }) as typeof response.writeHead;
  const addTrailers = response.addTrailers.bind(response);
  response.addTrailers = (trailers) => {
    reencode(trailers as OutgoingHttpHeaders);
    addTrailers(trailers);
  };
}
