import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';

/**
 * Connect percent-encodes the `grpc-message` trailer with encodeURIComponent, so
 * "insufficient funds: balance 70, ..." goes out as "insufficient funds%3A balance 70, ...".
 * gRPC's spec only asks to encode bytes outside printable ASCII (and `%`), and @grpc/grpc-js
 * decodes with decodeURI, which leaves `%3A` as it is. Re-encoding per the spec makes every
 * client (grpc-js, grpc-go, Connect, COS itself) read the message intact. Optional for a handler
 * that only COS calls; kept here so you can call the handler with any gRPC tool.
 */
export function withSpecGrpcMessage(response: Http2ServerResponse): void {
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

const encoder = new TextEncoder();

function reencode(headers: OutgoingHttpHeaders): void {
  const value = headers['grpc-message'];
  if (typeof value !== 'string') return;
  let message: string;
  try {
    message = decodeURIComponent(value);
  } catch {
    return;
  }
  let encoded = '';
  for (const byte of encoder.encode(message)) {
    encoded +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  headers['grpc-message'] = encoded;
}
