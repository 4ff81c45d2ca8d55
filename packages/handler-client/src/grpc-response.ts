import type { IncomingHttpHeaders, IncomingHttpStatusHeader } from 'node:http2';
import { gunzip } from 'node:zlib';
import { fromBinary, type DescMessage, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type UnaryResponse } from '@connectrpc/connect';

/*
 * A unary gRPC response as the transport received it (headers, trailers, the body's chunks)
 * turned into a Connect UnaryResponse, or into a ConnectError shaped like Connect's own.
 */

export type Metadata = IncomingHttpHeaders & IncomingHttpStatusHeader;

/** The call's result once its stream closed: a ConnectError, or the response being decoded. */
export function conclude(
  method: DescMethodUnary,
  headers: Metadata | undefined,
  trailers: IncomingHttpHeaders | undefined,
  chunks: Buffer[],
  received: number,
  streamError: unknown,
  rstCode: number | undefined,
  maxMessageBytes: number,
): ConnectError | Promise<UnaryResponse> {
  return (
    failureOf(headers, trailers, streamError, rstCode) ?? responseMessage(method, headers!, trailers, chunks, received, maxMessageBytes)
  );
}

/** The call's failure told by its status (HTTP, then gRPC) or its stream's error; undefined for OK. */
function failureOf(
  headers: Metadata | undefined,
  trailers: IncomingHttpHeaders | undefined,
  streamError: unknown,
  rstCode: number | undefined,
): ConnectError | undefined {
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
  return undefined;
}

/** The response of an OK call: its single message, checked, copied out and decoded. */
function responseMessage(
  method: DescMethodUnary,
  headers: Metadata,
  trailers: IncomingHttpHeaders | undefined,
  chunks: Buffer[],
  received: number,
  maxMessageBytes: number,
): ConnectError | Promise<UnaryResponse> {
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

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
