import type { OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { create, toBinary, type JsonObject, type JsonValue, type Registry } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createConnectRouter, decodeBinaryHeader, type ServiceImpl } from '@connectrpc/connect';
import {
  ChiefOfStateService,
  ERROR_INFO_TYPE_URL,
  GetStateRequestSchema,
  JsonInputError,
  ProcessCommandRequestSchema,
  createTypeRegistry,
  decodeErrorInfo,
  decodeRpcStatus,
  messageFromJson,
  messageToJson,
  type AnyJsonFormat,
  type ProcessCommandRequest,
} from '@chiefofstate/protocol';
import { createCors } from './cors.js';
import type { GrpcServerOptions } from './grpc-server.js';
import { startEdgeListener } from './listener.js';
import { openSecurity } from './listener-security.js';
import { httpOpenApiDocument } from './openapi.js';
import { createReceiveTimeout } from './receive-timeout.js';
import { httpStatusOf } from './status.js';
import {
  asConnectError,
  createUnaryCaller,
  createUnaryRoutes,
  readBody,
  type HttpRequest,
  type HttpResponse,
  type UnaryRoute,
} from './unary-call.js';

/** The gRPC port's options (its limits, interceptors, TLS, caller authentication, types, CORS), with the service instead of routes. */
export interface HttpFrontEndOptions extends Omit<GrpcServerOptions, 'routes'> {
  /** the same ChiefOfStateService implementation the gRPC port serves */
  readonly service: Partial<ServiceImpl<typeof ChiefOfStateService>>;
}

export interface HttpFrontEnd {
  readonly port: number;
  close(graceMs?: number): Promise<void>;
}

const PROCESS = /^\/v1\/commands\/([^/]+)\/process$/;
const STATE = /^\/v1\/entities\/([^/]+)\/state$/;

/**
 * The upstream server's HTTP/JSON front end (COS_SERVER_PROTOCOL http or both):
 * `POST /v1/commands/{entityId}/process` and `GET /v1/entities/{entityId}/state`, snake_case JSON
 * whose Anys are the base64 of the serialized Any (or proto3 JSON with `?any=json`, for the
 * types COS knows), over HTTP/1.1 and HTTP/2, with the gRPC port's TLS and caller
 * authentication. A call runs the same ChiefOfStateService implementation and interceptors as a
 * gRPC call (tracing, metrics and the caller check see ChiefOfStateService/ProcessCommand), and
 * every request header is offered to the propagated and persisted header rules. Failures answer
 * the HTTP status of their gRPC code (httpStatusOf) with `{code, status, message, details}` and
 * upstream's `error`. `GET /openapi.json` describes it all.
 */
export async function startHttpFrontEnd(options: HttpFrontEndOptions): Promise<HttpFrontEnd> {
  const logger = options.logger;
  const registry = options.registry ?? createTypeRegistry();
  const maxMessageBytes = options.maxMessageBytes;
  const receiveTimeoutMs = options.receiveTimeoutMs ?? 10_000;
  const receiveTimeout = createReceiveTimeout(receiveTimeoutMs);
  const security = openSecurity(options, logger);
  const { auth, contextValues } = security;
  const interceptors = [...(options.interceptors ?? []), ...(auth ? [auth.interceptor] : [])];
  const call = createUnaryCaller({ interceptors, ...(contextValues ? { contextValues } : {}) });
  const routes = createUnaryRoutes();
  routes.router(createConnectRouter()).service(ChiefOfStateService, options.service);
  const processCommand = routes.get(`/${ChiefOfStateService.typeName}/ProcessCommand`)!;
  const getState = routes.get(`/${ChiefOfStateService.typeName}/GetState`)!;
  const cors = createCors(options.corsAllowedOrigins ?? []);
  const openApi = Buffer.from(JSON.stringify(httpOpenApiDocument(), null, 2));

  const onRequest = (request: HttpRequest, response: HttpResponse) => {
    if (cors?.(request, response)) return;
    if (request.httpVersionMajor === 2) receiveTimeout.watch(request as Http2ServerRequest);
    const url = new URL(request.url ?? '/', 'http://cos');
    const format: AnyJsonFormat = url.searchParams.get('any') === 'json' ? 'json' : 'base64';
    const reply = (status: number, json: JsonValue, headers?: OutgoingHttpHeaders) => writeJson(response, status, json, headers);
    const fail = (error: ConnectError, header?: Headers) => reply(httpStatusOf(error.code), errorBody(error, registry), headersOut(header));
    let match: RegExpExecArray | null;
    if ((match = PROCESS.exec(url.pathname)) !== null) {
      if (request.method !== 'POST') return reply(405, methodNotAllowed('POST'), { allow: 'POST' });
      const entityId = pathId(match[1]!);
      if (entityId === undefined) return fail(new ConnectError('the entity id in the path is not valid percent-encoding', Code.InvalidArgument));
      readBody(
        request,
        maxMessageBytes,
        (body) => {
          let input: ProcessCommandRequest;
          try {
            input = messageFromJson<ProcessCommandRequest>(ProcessCommandRequestSchema, parseBody(body), { registry });
          } catch (error) {
            return fail(error instanceof JsonInputError ? new ConnectError(error.message, Code.InvalidArgument) : asConnectError(error));
          }
          // the path's id wins over the body's
          input.entityId = entityId;
          void run(processCommand, input, request, response, format);
        },
        (size) => fail(new ConnectError(`the request body (${size} bytes so far) is larger than ${maxMessageBytes} bytes`, Code.ResourceExhausted)),
      );
      return;
    }
    if ((match = STATE.exec(url.pathname)) !== null) {
      if (request.method !== 'GET') return reply(405, methodNotAllowed('GET'), { allow: 'GET' });
      const entityId = pathId(match[1]!);
      if (entityId === undefined) return fail(new ConnectError('the entity id in the path is not valid percent-encoding', Code.InvalidArgument));
      request.resume();
      void run(getState, create(GetStateRequestSchema, { entityId }), request, response, format);
      return;
    }
    if (url.pathname === '/openapi.json' && request.method === 'GET') {
      request.resume();
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(openApi.byteLength) });
      response.end(openApi);
      return;
    }
    request.resume();
    reply(404, { code: Code.NotFound, status: statusName(Code.NotFound), message: `no route ${request.method ?? ''} ${url.pathname}`, details: [], error: 'not found' });
  };

  async function run(route: UnaryRoute, input: Parameters<typeof call>[0]['input'], request: HttpRequest, response: HttpResponse, format: AnyJsonFormat) {
    const outcome = await call({ route, request, response, protocolName: 'http', timeoutMs: undefined, input });
    try {
      if (outcome.error !== undefined || outcome.output === undefined) {
        const error = outcome.error ?? asConnectError(undefined);
        writeJson(response, httpStatusOf(error.code), errorBody(error, registry), headersOut(outcome.header));
        return;
      }
      const json = messageToJson(route.method.output, outcome.output, {
        registry,
        anyFormat: format,
        useProtoFieldName: true,
        alwaysEmitImplicit: true,
      });
      writeJson(response, 200, json, headersOut(outcome.header));
    } catch (error) {
      // a reply that cannot be written as JSON is a fault of COS: the caller still gets an answer
      logger?.warn({ err: error }, 'HTTP front end: the reply could not be written');
      writeJson(response, 500, errorBody(asConnectError(error), registry));
    }
  }

  return startEdgeListener(options, { security, receiveTimeout, receiveTimeoutMs, onRequest });
}

function pathId(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function parseBody(body: Buffer): JsonValue {
  if (body.byteLength === 0) return {};
  try {
    return JSON.parse(body.toString('utf8')) as JsonValue;
  } catch (error) {
    throw new JsonInputError(`the request body is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function methodNotAllowed(allowed: string): JsonObject {
  return { code: Code.Unimplemented, status: statusName(Code.Unimplemented), message: `method not allowed; use ${allowed}`, details: [], error: 'method not allowed' };
}

/**
 * A failure as JSON: google.rpc.Status's `code` (the gRPC code number), `message` and `details`
 * (each an Any: proto3 JSON when its type is known, google.rpc.ErrorInfo decoded, else the base64
 * of the serialized Any), the code's name as `status`, and upstream's `error` (the message).
 */
function errorBody(error: ConnectError, registry: Registry): JsonObject {
  const details: Any[] = error.details.map((detail) =>
    'desc' in detail
      ? create(AnySchema, { typeUrl: `type.googleapis.com/${detail.desc.typeName}`, value: toBinary(detail.desc, create(detail.desc, detail.value)) })
      : create(AnySchema, { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value }),
  );
  // a handler's details with other type URL prefixes travel as its own grpc-status-details-bin
  const raw = error.metadata.get('grpc-status-details-bin');
  if (details.length === 0 && raw !== null) {
    for (const detail of decodeRpcStatus(decodeBinaryHeader(raw)).details) details.push(create(AnySchema, detail));
  }
  return {
    code: error.code,
    status: statusName(error.code),
    message: error.rawMessage,
    details: details.map((detail) =>
      detail.typeUrl === ERROR_INFO_TYPE_URL ? { '@type': detail.typeUrl, ...decodeErrorInfo(detail.value) } : messageToJson(AnySchema, detail, { registry }),
    ),
    error: error.rawMessage,
  };
}

/** The gRPC name of a code: NOT_FOUND, CANCELLED, ... */
function statusName(code: Code): string {
  if (code === Code.Canceled) return 'CANCELLED';
  return Code[code].replace(/[a-z](?=[A-Z])/g, (letter) => `${letter}_`).toUpperCase();
}

function writeJson(response: HttpResponse, status: number, json: JsonValue, headers: OutgoingHttpHeaders = {}): void {
  if (response.writableEnded || response.destroyed || response.headersSent) return;
  const body = Buffer.from(JSON.stringify(json));
  response.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(body.byteLength) });
  response.end(body);
}

function headersOut(header: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  header?.forEach((value, name) => {
    out[name] = value;
  });
  return out;
}
