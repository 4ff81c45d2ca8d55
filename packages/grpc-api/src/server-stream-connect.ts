import type { OutgoingHttpHeaders } from 'node:http';
import type { DescMessage, MessageShape, Registry } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { createEndStreamSerialization, endStreamFlag, parseTimeout } from '@connectrpc/connect/protocol-connect';
import { JsonInputError, messageFromJson, messageToJson } from '@chiefofstate/protocol';
import { envelope, singleHeader, tooLarge } from './grpc-frames.js';
import { interceptStream, isGone, streamOutcome, writeChunks } from './server-stream.js';
import { parseJsonRequest } from './unary-connect-json.js';
import { asConnectError, openCallContext, readBody, type HttpRequest, type HttpResponse, type StreamRoute, type UnaryCallerOptions, type UnaryRoutes } from './unary-call.js';

export interface ServerStreamConnectOptions extends UnaryCallerOptions {
  readonly routes: UnaryRoutes;
  /** the types an Any is rendered with (COS_PROTO_DESCRIPTOR_SET) */
  readonly registry: Registry;
  /** largest request or response message */
  readonly maxMessageBytes: number;
}

export interface ServerStreamConnect {
  /** Serves the request and returns true when it is a Connect streaming JSON call of a server-streaming method it knows. */
  handle(request: HttpRequest, response: HttpResponse): boolean;
}

const STREAM_JSON = /^application\/connect\+json(;\s*charset=utf-?8)?$/i;
const MAX_CONNECT_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Subscribe and SubscribeAll in the Connect protocol's streaming JSON (what Connect-Web sends by
 * default), over HTTP/1.1 or HTTP/2, served here for the reason unary JSON is
 * (unary-connect-json.ts): an event's Anys of types COS was never told about are written as the
 * base64 of the serialized Any, where Connect's JSON ends the stream with an error. The rest is
 * Connect's: enveloped messages, the end-of-stream message with the error and the trailers
 * (Connect's own serialization), `connect-timeout-ms`, HTTP 200 whatever the outcome.
 * Compressed streams go to Connect's adapter.
 */
export function createServerStreamConnect(options: ServerStreamConnectOptions): ServerStreamConnect {
  const { routes, registry, maxMessageBytes } = options;
  const interceptors = options.interceptors ?? [];
  const jsonOptions = { registry };
  const endStream = createEndStreamSerialization(jsonOptions);

  function handle(request: HttpRequest, response: HttpResponse): boolean {
    if (request.method !== 'POST') return false;
    const route = routes.stream(request.url ?? '');
    if (route === undefined) return false;
    const headers = request.headers;
    if (!STREAM_JSON.test(headers['content-type'] ?? '')) return false;
    const encoding = headers['connect-content-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;
    readBody(
      request,
      maxMessageBytes + 5,
      (body) => {
        if (!response.headersSent) void serve(route, request, response, body);
      },
      (size, first) => end(response, undefined, tooLarge(first.byteLength >= 5 ? first.readUInt32BE(1) : size - 5, 'readMaxBytes', maxMessageBytes)),
    );
    return true;
  }

  async function serve(route: StreamRoute, request: HttpRequest, response: HttpResponse, body: Buffer): Promise<void> {
    const timeout = parseTimeout(singleHeader(request.headers['connect-timeout-ms']) ?? null, MAX_CONNECT_TIMEOUT_MS);
    let input: MessageShape<DescMessage>;
    try {
      if (timeout.error) throw timeout.error;
      input = requestMessage(route, body);
    } catch (error) {
      end(response, undefined, error instanceof JsonInputError ? new ConnectError(error.message, Code.InvalidArgument) : asConnectError(error));
      return;
    }
    const call = openCallContext(options, route.method, { request, response, protocolName: 'connect', timeoutMs: timeout.timeoutMs });
    const { context } = call;
    let failure: unknown;
    try {
      const messages = (await interceptStream(interceptors, route, input, context)) ?? route.impl(input, context);
      if (isGone(response)) return;
      response.writeHead(200, responseHeaders(call.header()));
      await writeChunks(response, envelopes(route, messages));
    } catch (error) {
      failure = error;
    }
    failure = streamOutcome(failure, context);
    call.end(failure);
    end(response, call.trailer(), failure === undefined ? undefined : asConnectError(failure), call.header());
  }

  function requestMessage(route: StreamRoute, body: Buffer): MessageShape<DescMessage> {
    if (body.byteLength < 5) throw new ConnectError('protocol error: missing input message for server-streaming method', Code.Unimplemented);
    if ((body[0]! & 1) !== 0) throw new ConnectError('protocol error: received compressed message without encoding', Code.InvalidArgument);
    const length = body.readUInt32BE(1);
    if (body.byteLength < 5 + length) throw new ConnectError('protocol error: premature end of stream', Code.InvalidArgument);
    if (body.byteLength > 5 + length) {
      throw new ConnectError('protocol error: received extra input message for server-streaming method', Code.Unimplemented);
    }
    return messageFromJson(route.method.input, parseJsonRequest(body.subarray(5), 'the request message'), jsonOptions);
  }

  async function* envelopes(route: StreamRoute, messages: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
    for await (const message of messages) {
      const json = Buffer.from(JSON.stringify(messageToJson(route.method.output, message as MessageShape<DescMessage>, jsonOptions)));
      if (json.byteLength > maxMessageBytes) throw tooLarge(json.byteLength, 'writeMaxBytes', maxMessageBytes);
      yield envelope(0, json);
    }
  }

  /** The end-of-stream message, with the error and the trailers, as Connect writes it; headers first when not sent. */
  function end(response: HttpResponse, trailer: Headers | undefined, error: ConnectError | undefined, header?: Headers): void {
    if (isGone(response) || response.writableEnded) return;
    if (!response.headersSent) response.writeHead(200, responseHeaders(header));
    response.end(envelope(endStreamFlag, endStream.serialize({ metadata: trailer ?? new Headers(), ...(error ? { error } : {}) })));
  }

  return { handle };
}

function responseHeaders(header: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { 'content-type': 'application/connect+json' };
  header?.forEach((value, name) => {
    if (name !== 'content-type') out[name] = value;
  });
  return out;
}

