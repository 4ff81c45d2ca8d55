import type { OutgoingHttpHeaders } from 'node:http';
import type { JsonValue, Registry } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { codeToHttpStatus, errorToJson, parseTimeout } from '@connectrpc/connect/protocol-connect';
import { JsonInputError, messageFromJson, messageToJson } from '@chiefofstate/protocol';
import { asConnectError, createUnaryCaller, readBody, type HttpRequest, type HttpResponse, type UnaryCallerOptions, type UnaryRoutes } from './unary-call.js';

export interface UnaryConnectJsonOptions extends UnaryCallerOptions {
  readonly routes: UnaryRoutes;
  /** the types an Any is rendered with (COS_PROTO_DESCRIPTOR_SET) */
  readonly registry: Registry;
  /** largest request or response body */
  readonly maxMessageBytes: number;
}

export interface UnaryConnectJson {
  /** Serves the request and returns true when it is a Connect unary JSON call of a known method. */
  handle(request: HttpRequest, response: HttpResponse): boolean;
}

const JSON_CONTENT_TYPE = /^application\/json(;\s*charset=utf-?8)?$/i;
const MAX_CONNECT_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The Connect protocol's unary JSON calls (what `curl`, `fetch` and Connect-Web send by
 * default), over HTTP/1.1 or HTTP/2, served here rather than by Connect's adapter because JSON
 * must carry Anys whose type COS was never told about: they are written as the base64 of the
 * serialized Any (and read so), Anys of known types as proto3 JSON with `@type`. Connect's own
 * JSON refuses an unknown Any, which made GetState answer HTTP 500. Everything else of the
 * protocol is Connect's: the status mapping, the error body, `connect-timeout-ms`, response
 * trailers as `trailer-` headers. Compressed bodies and GET requests still go to the adapter.
 */
export function createUnaryConnectJson(options: UnaryConnectJsonOptions): UnaryConnectJson {
  const { routes, registry, maxMessageBytes } = options;
  const call = createUnaryCaller(options);
  const jsonOptions = { registry };

  function handle(request: HttpRequest, response: HttpResponse): boolean {
    if (request.method !== 'POST') return false;
    const route = routes.get(request.url ?? '');
    if (route === undefined) return false;
    const headers = request.headers;
    if (!JSON_CONTENT_TYPE.test(headers['content-type'] ?? '')) return false;
    const encoding = headers['content-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;
    readBody(
      request,
      maxMessageBytes,
      (body) => {
        if (!response.headersSent) void serve(body);
      },
      (size) =>
        writeError(response, new ConnectError(`message size ${size} is larger than configured readMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted)),
    );
    return true;

    async function serve(body: Buffer): Promise<void> {
      const timeout = parseTimeout(single(headers['connect-timeout-ms']) ?? null, MAX_CONNECT_TIMEOUT_MS);
      let input;
      try {
        if (timeout.error) throw timeout.error;
        input = messageFromJson(route!.method.input, parseJsonRequest(body), jsonOptions);
      } catch (error) {
        writeError(response, error instanceof JsonInputError ? new ConnectError(error.message, Code.InvalidArgument) : asConnectError(error));
        return;
      }
      const outcome = await call({ route: route!, request, response, protocolName: 'connect', timeoutMs: timeout.timeoutMs, input });
      if (outcome.error !== undefined || outcome.output === undefined) {
        writeError(response, outcome.error ?? asConnectError(undefined), outcome.header, outcome.trailer);
        return;
      }
      const bytes = Buffer.from(JSON.stringify(messageToJson(route!.method.output, outcome.output, jsonOptions)));
      if (bytes.byteLength > maxMessageBytes) {
        writeError(
          response,
          new ConnectError(`message size ${bytes.byteLength} is larger than configured writeMaxBytes ${maxMessageBytes}`, Code.ResourceExhausted),
          outcome.header,
          outcome.trailer,
        );
        return;
      }
      if (response.writableEnded || response.destroyed) return;
      response.writeHead(200, {
        ...headersOut(outcome.header, outcome.trailer),
        'content-type': 'application/json',
        'content-length': String(bytes.byteLength),
      });
      response.end(bytes);
    }
  }

  return { handle };
}

/** A request's JSON (`what`: the body, or a stream's message), a JsonInputError when it is none. */
export function parseJsonRequest(bytes: Buffer, what = 'the request body'): JsonValue {
  try {
    return JSON.parse(bytes.toString('utf8')) as JsonValue;
  } catch (error) {
    throw new JsonInputError(`${what} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** An error as the Connect protocol answers a unary call: its HTTP status and `{code, message, details}`. */
function writeError(response: HttpResponse, error: ConnectError, header?: Headers, trailer?: Headers): void {
  if (response.writableEnded || response.destroyed) return;
  const body = Buffer.from(JSON.stringify(errorToJson(error, undefined)));
  const metadata = new Headers(header);
  error.metadata.forEach((value, name) => metadata.append(name, value));
  if (response.headersSent) {
    response.end();
    return;
  }
  response.writeHead(codeToHttpStatus(error.code), {
    ...headersOut(metadata, trailer),
    'content-type': 'application/json',
    'content-length': String(body.byteLength),
  });
  response.end(body);
}

/** Response headers, and trailers as `trailer-` headers (Connect unary). */
function headersOut(header: Headers | undefined, trailer: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  header?.forEach((value, name) => {
    out[name] = value;
  });
  trailer?.forEach((value, name) => {
    out[`trailer-${name}`] = value;
  });
  return out;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
