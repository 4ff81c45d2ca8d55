import type { IncomingHttpHeaders } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import { fromBinary, type DescMessage, type DescMethodServerStreaming, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { parseTimeout, setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { encodeGrpcMessage, fitStatusTrailers } from './grpc-message.js';
import type { ReceiveTimeout } from './receive-timeout.js';
import { asConnectError, readBody } from './unary-call.js';

/*
 * The gRPC wire as the fast paths (unary-grpc.ts, server-stream-grpc.ts) write it: what they
 * accept, the request message, frames, and the status in trailers as Connect's gRPC handler
 * writes them.
 */

export const GRPC_CONTENT_TYPE = 'application/grpc+proto';

/** A plain gRPC call: binary protobuf, uncompressed (the rest goes to Connect's adapter). */
export function isPlainGrpc(headers: IncomingHttpHeaders): boolean {
  const contentType = headers['content-type'];
  if (contentType !== 'application/grpc' && contentType !== GRPC_CONTENT_TYPE) return false;
  const encoding = headers['grpc-encoding'];
  return encoding === undefined || encoding === 'identity';
}

/**
 * Reads a gRPC request body within the receive timeout; one over the limit is answered
 * RESOURCE_EXHAUSTED with the size its message declares, as Connect reports it.
 */
export function receiveGrpcRequest(
  request: Http2ServerRequest,
  response: Http2ServerResponse,
  options: { readonly maxMessageBytes: number; readonly receiveTimeout?: ReceiveTimeout | undefined },
  onBody: (body: Buffer) => void,
): void {
  const { maxMessageBytes, receiveTimeout } = options;
  receiveTimeout?.start(request);
  readBody(
    request,
    maxMessageBytes + 5,
    (body) => {
      receiveTimeout?.done(request);
      // answered by the receive timeout
      if (response.headersSent) return;
      onBody(body);
    },
    (size, first) => {
      receiveTimeout?.done(request);
      writeGrpcStatus(response, undefined, tooLarge(first.byteLength >= 5 ? first.readUInt32BE(1) : size - 5, 'readMaxBytes', maxMessageBytes));
    },
  );
}

const NO_TIMEOUT_LIMIT = Number.MAX_SAFE_INTEGER;

/**
 * The request message and the deadline (`grpc-timeout`, ms) of a unary or server-streaming call;
 * undefined when either is refused, the error written as the call's status.
 */
export function grpcCallInput(
  request: Http2ServerRequest,
  response: Http2ServerResponse,
  method: DescMethodUnary | DescMethodServerStreaming,
  body: Buffer,
  maxMessageBytes: number,
): { readonly input: MessageShape<DescMessage>; readonly timeoutMs: number | undefined } | undefined {
  const timeout = parseTimeout(singleHeader(request.headers['grpc-timeout']) ?? null, NO_TIMEOUT_LIMIT);
  try {
    if (timeout.error) throw timeout.error;
    return { input: grpcRequestMessage(method, body, maxMessageBytes), timeoutMs: timeout.timeoutMs };
  } catch (error) {
    writeGrpcStatus(response, undefined, asConnectError(error));
    return undefined;
  }
}

/** The one request message of a unary or server-streaming call, refused in Connect's words. */
export function grpcRequestMessage(
  method: DescMethodUnary | DescMethodServerStreaming,
  body: Buffer,
  maxMessageBytes: number,
): MessageShape<DescMessage> {
  const kind = method.methodKind === 'unary' ? 'unary' : 'server-streaming';
  if (body.byteLength < 5) throw new ConnectError(`protocol error: missing input message for ${kind} method`, Code.Unimplemented);
  if ((body[0]! & 1) !== 0) {
    throw new ConnectError('protocol error: received compressed message without grpc-encoding', Code.InvalidArgument);
  }
  const length = body.readUInt32BE(1);
  if (length > maxMessageBytes) throw tooLarge(length, 'readMaxBytes', maxMessageBytes);
  if (body.byteLength < 5 + length) throw new ConnectError('protocol error: premature end of stream', Code.InvalidArgument);
  if (body.byteLength > 5 + length) {
    throw new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.Unimplemented);
  }
  try {
    return fromBinary(method.input, body.subarray(5));
  } catch (error) {
    // The caller sent bytes that are not the method's message (bad wire type, truncated field,
    // invalid UTF-8 in a string): its error. Stock gRPC servers say INTERNAL, which reads as
    // COS's fault; COS says INVALID_ARGUMENT on both paths (see grpc-message.ts for Connect's).
    throw new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.InvalidArgument);
  }
}

export function tooLarge(size: number, limit: 'readMaxBytes' | 'writeMaxBytes', maxMessageBytes: number): ConnectError {
  return new ConnectError(`message size ${size} is larger than configured ${limit} ${maxMessageBytes}`, Code.ResourceExhausted);
}

/** One uncompressed frame: the flag byte, the length, the message. */
export function frameMessage(bytes: Uint8Array): Buffer {
  return envelope(0, bytes);
}

/** An envelope of gRPC and Connect streams: the flags byte, the length (4 bytes, big-endian), the data. */
export function envelope(flags: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + data.byteLength);
  out[0] = flags;
  out.writeUInt32BE(data.byteLength, 1);
  out.set(data, 5);
  return out;
}

/**
 * Ends the call with its status (OK when `error` is undefined), as Connect's gRPC handler does:
 * the response headers first when not sent yet, then the trailers.
 */
export function writeGrpcStatus(
  response: Http2ServerResponse,
  responseHeader: Headers | undefined,
  error: ConnectError | undefined,
  responseTrailer?: Headers,
): void {
  if (response.stream.destroyed || response.writableEnded) return;
  const trailers: OutgoingHttpHeaders = {};
  if (error === undefined) {
    trailers['grpc-status'] = '0';
    if (responseTrailer !== undefined) copyInto(responseTrailer, trailers);
  } else {
    copyInto(setTrailerStatus(responseTrailer ?? new Headers(), error), trailers);
    // Connect encodes with encodeURIComponent, which grpc-js decodes wrongly (`%3A` stays): the spec's form.
    trailers['grpc-message'] = encodeGrpcMessage(error.rawMessage);
    fitStatusTrailers(trailers);
  }
  if (!response.headersSent) response.writeHead(200, responseHeadersOf(responseHeader));
  response.addTrailers(trailers);
  response.end();
}

export function responseHeadersOf(responseHeader: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { 'content-type': GRPC_CONTENT_TYPE };
  if (responseHeader !== undefined) copyInto(responseHeader, out);
  return out;
}

export function copyInto(from: Headers, to: OutgoingHttpHeaders): void {
  from.forEach((value, name) => {
    if (name === 'content-type') return;
    to[name] = value;
  });
}

export function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
