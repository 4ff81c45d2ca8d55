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

/**
 * Most bytes of `grpc-message` and of `grpc-status-details-bin` COS sends. Node refuses to send a
 * header block over 64 KiB (the stream is reset, FRAME_SIZE_ERROR, and the caller reads INTERNAL
 * instead of the status), and clients refuse more than they advertise (64 KiB by default); a
 * handler's status can be larger. Past these, the message is cut and the details are left out,
 * so the status code still arrives.
 */
const MAX_MESSAGE_BYTES = 16 * 1024;
const MAX_DETAILS_BYTES = 32 * 1024;

/** Cuts an over-long encoded message (not inside a `%XX`) and drops over-large details. */
export function fitStatusTrailers(trailers: OutgoingHttpHeaders): void {
  const message = trailers['grpc-message'];
  if (typeof message === 'string' && message.length > MAX_MESSAGE_BYTES) {
    let cut = MAX_MESSAGE_BYTES;
    const percent = message.lastIndexOf('%', cut - 1);
    if (percent > cut - 3) cut = percent;
    // nor inside a UTF-8 sequence: back off to the byte that starts the character
    while (cut >= 3 && message[cut] === '%' && isContinuationByte(message, cut)) cut -= 3;
    trailers['grpc-message'] = `${message.slice(0, cut)}... (cut)`;
  }
  const details = trailers['grpc-status-details-bin'];
  if (typeof details === 'string' && details.length > MAX_DETAILS_BYTES) delete trailers['grpc-status-details-bin'];
}

/** Whether the `%XX` at `at` is a UTF-8 continuation byte (10xxxxxx). */
function isContinuationByte(encoded: string, at: number): boolean {
  const byte = Number.parseInt(encoded.slice(at + 1, at + 3), 16);
  return byte >= 0x80 && byte <= 0xbf;
}

function reencode(headers: OutgoingHttpHeaders | undefined): void {
  if (headers === undefined) return;
  const value = headers['grpc-message'];
  if (typeof value === 'string') {
    let decoded: string | undefined;
    try {
      decoded = decodeURIComponent(value);
    } catch {
      // not Connect's encoding: left as it is
    }
    if (decoded !== undefined) {
      headers['grpc-message'] = encodeGrpcMessage(decoded);
      if (headers['grpc-status'] === '13' && REQUEST_FAULTS.some((prefix) => decoded.startsWith(prefix))) {
        headers['grpc-status'] = '3';
      }
    }
  }
  fitStatusTrailers(headers);
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
