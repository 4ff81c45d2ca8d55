import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { DescMessage, DescMethodUnary, MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type Interceptor, type Transport, type UnaryResponse } from '@connectrpc/connect';
import { timerDelay } from '@chiefofstate/core';
import type { ClientTlsOptions } from './grpc-transport.js';
import { HTTP_ROUTES } from './http-json.js';
import { callRefusal, copyHeaders, createUnary, NEVER_ABORTED, type UnarySend } from './unary-chain.js';

export interface HttpJsonTransportOptions {
  /** `http://host:port` or `https://host:port` */
  readonly baseUrl: string;
  /** TLS of an https baseUrl; a function is asked again for each new connection pool (rotated files) */
  readonly tls?: ClientTlsOptions | (() => ClientTlsOptions);
  /** a connection or call failed below HTTP (refused, TLS handshake refused, reset): for reporting */
  readonly onTransportError?: (error: Error) => void;
  /** largest message in bytes: a JSON body may be up to twice this (base64) plus 64 KiB */
  readonly maxMessageBytes: number;
  readonly interceptors?: readonly Interceptor[];
}

export interface HttpJsonTransport extends Transport {
  /** Drops every connection; calls in flight fail. */
  close(): void;
  /** Later calls go over new connections (TLS options of that moment); calls in flight finish. */
  reconnect(): void;
}

/** set by the transport, never copied from a caller's metadata */
const RESERVED: ReadonlySet<string> = new Set([
  'content-type',
  'content-length',
  'accept',
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'upgrade',
  'grpc-timeout',
]);
const USER_AGENT = 'chiefofstate-handler-client';
/** a handler's words in a failure are cut to this, for the caller and the log */
const MAX_ERROR_TEXT = 1024;

/**
 * The user's handlers over the newest upstream server's HTTP handler protocol, as a Connect
 * `Transport`: each unary method POSTs its JSON (see http-json.ts) on HTTP/1.1 keep-alive
 * connections (`node:http` / `node:https` agents: measured at a sixth of the client CPU of
 * `fetch` per call), so createClient, the interceptors (metrics) and the failure translation
 * work as for gRPC. A 200 answer is decoded; any other status is the handler's failure,
 * reported as a gRPC status (grpc-status in the error's metadata) mapped from the HTTP status
 * (or a `code` in its JSON body), with the body's `message` / `error` or its text as message.
 * A connection failure is UNAVAILABLE; a call past its deadline DEADLINE_EXCEEDED.
 */
export function createHttpJsonTransport(options: HttpJsonTransportOptions): HttpJsonTransport {
  const url = new URL(options.baseUrl);
  const secure = url.protocol === 'https:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = Number(url.port || (secure ? 443 : 80));
  const maxBodyBytes = options.maxMessageBytes * 2 + 64 * 1024;
  const { onTransportError } = options;
  let closed = false;

  const newAgent = (): HttpAgent => {
    if (!secure) return new HttpAgent({ keepAlive: true });
    const tls = typeof options.tls === 'function' ? options.tls() : options.tls;
    return new HttpsAgent({ keepAlive: true, ...tls });
  };
  let agent = newAgent();

  const send: UnarySend = (method, message, header, signal, timeoutMs) => {
    const refusal = callRefusal(closed, signal);
    if (refusal) return Promise.reject(refusal);
    const route = HTTP_ROUTES.get(`${method.parent.typeName}/${method.name}`);
    if (route === undefined) {
      return Promise.reject(new ConnectError(`${method.parent.typeName}/${method.name} has no HTTP route`, Code.Unimplemented));
    }
    const body = Buffer.from(JSON.stringify(route.encode(message)));
    if (body.byteLength > maxBodyBytes) {
      return Promise.reject(
        new ConnectError(`request body of ${body.byteLength} bytes is larger than the limit of ${maxBodyBytes}`, Code.ResourceExhausted),
      );
    }
    const headers: OutgoingHttpHeaders = {
      'content-type': 'application/json',
      accept: 'application/json',
      'content-length': body.byteLength,
      'user-agent': USER_AGENT,
    };
    if (header !== undefined) copyHeaders(header, headers as Record<string, string>, RESERVED);
    const deadlineAt = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    return exchange(route.path, headers, body, signal, deadlineAt, true).then(({ status, text }) =>
      answerOf(method, route.decode, status, text),
    );
  };

  /** One POST; a kept-alive connection the handler had closed meanwhile is retried once on a fresh one. */
  function exchange(
    path: string,
    headers: OutgoingHttpHeaders,
    body: Buffer,
    signal: AbortSignal,
    deadlineAt: number | undefined,
    mayRetry: boolean,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (error: ConnectError | undefined, answer?: { status: number; text: string }) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (signal !== NEVER_ABORTED) signal.removeEventListener('abort', onAbort);
        if (error) {
          request.destroy();
          reject(error);
        } else resolve(answer!);
      };
      const onAbort = () => finish(new ConnectError('call aborted', Code.Canceled, undefined, undefined, signal.reason));
      const call = secure ? httpsRequest : httpRequest;
      const request: ClientRequest = call({ host, port, path, method: 'POST', headers, agent }, (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let received = 0;
        response.on('data', (chunk: Buffer) => {
          received += chunk.byteLength;
          if (received > maxBodyBytes) {
            finish(new ConnectError(`response body is larger than the limit of ${maxBodyBytes} bytes`, Code.ResourceExhausted));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => finish(undefined, { status: response.statusCode ?? 0, text: Buffer.concat(chunks, received).toString('utf8') }));
        response.on('error', (error) => finish(unavailable(error)));
        response.on('aborted', () => finish(new ConnectError('the connection closed before the whole answer', Code.Unavailable)));
      });
      if (deadlineAt !== undefined) {
        const remaining = Math.max(0, deadlineAt - performance.now());
        timer = setTimeout(() => finish(new ConnectError('the operation timed out', Code.DeadlineExceeded)), timerDelay(remaining));
      }
      if (signal !== NEVER_ABORTED) signal.addEventListener('abort', onAbort, { once: true });
      request.on('error', (error: NodeJS.ErrnoException) => {
        if (settled) return;
        if (mayRetry && request.reusedSocket && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
          // the handler closed an idle kept-alive connection as this call went out on it
          settled = true;
          if (timer !== undefined) clearTimeout(timer);
          if (signal !== NEVER_ABORTED) signal.removeEventListener('abort', onAbort);
          exchange(path, headers, body, signal, deadlineAt, false).then(resolve, reject);
          return;
        }
        onTransportError?.(error);
        finish(unavailable(error));
      });
      request.end(body);
    });
  }

  function retire(old: HttpAgent): void {
    // free connections close now, busy ones as soon as their call is answered
    old.on('free', (socket) => socket.destroy());
    for (const sockets of Object.values(old.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
  }

  return {
    unary: createUnary(options.baseUrl, options.interceptors ?? [], send),
    stream: () => Promise.reject(new ConnectError('streaming calls are not supported by this transport', Code.Unimplemented)),
    close() {
      closed = true;
      agent.destroy();
    },
    reconnect() {
      const old = agent;
      agent = newAgent();
      retire(old);
    },
  };
}

function unavailable(error: Error): ConnectError {
  return new ConnectError(error.message, Code.Unavailable, undefined, undefined, error);
}

function answerOf(
  method: DescMethodUnary,
  decode: (body: unknown) => MessageShape<DescMessage>,
  status: number,
  text: string,
): UnaryResponse {
  if (status !== 200) throw handlerStatus(status, text);
  let message: MessageShape<DescMessage>;
  try {
    message = decode(JSON.parse(text));
  } catch (error) {
    throw statusError(Code.Internal, `the handler answered HTTP 200 with an invalid body: ${(error as Error).message}`);
  }
  return { stream: false, service: method.parent, method, message, header: new Headers(), trailer: new Headers() } as UnaryResponse;
}

/**
 * A non-200 answer as the handler's status: `code` of a JSON body when it is a gRPC code, else
 * mapped from the HTTP status (the inverse of the usual gRPC-to-HTTP mapping, so a status
 * passes through COS's HTTP front end unchanged); the message from `message` or `error`, else
 * the body's text.
 */
function handlerStatus(status: number, text: string): ConnectError {
  let code = codeOfHttpStatus(status);
  let message = text.trim();
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
      const record = body as Record<string, unknown>;
      const given = codeOfJson(record['code']);
      if (given !== undefined) code = given;
      const words = typeof record['message'] === 'string' ? record['message'] : record['error'];
      if (typeof words === 'string') message = words;
    }
  } catch {
    // not JSON: the text is the message
  }
  if (message === '') message = `HTTP ${status}`;
  return statusError(code, message.length > MAX_ERROR_TEXT ? `${message.slice(0, MAX_ERROR_TEXT)}...` : message);
}

/** The handler's status, carried as a gRPC handler's is (translateHandlerError reads grpc-status). */
function statusError(code: Code, message: string): ConnectError {
  return new ConnectError(message, code, { 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) });
}

export function codeOfHttpStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.NotFound;
    case 409:
      return Code.AlreadyExists;
    case 412:
      return Code.FailedPrecondition;
    case 429:
      return Code.ResourceExhausted;
    case 499:
      return Code.Canceled;
    case 501:
      return Code.Unimplemented;
    case 500:
      return Code.Internal;
    case 502:
    case 503:
      return Code.Unavailable;
    case 504:
      return Code.DeadlineExceeded;
    default:
      return Code.Unknown;
  }
}

/** A gRPC code given in a JSON error body: its number, or its name (`NOT_FOUND`, `not_found`). */
function codeOfJson(value: unknown): Code | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 16) return value as Code;
  if (typeof value !== 'string') return undefined;
  const name = value.toLowerCase().replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
  const code = (Code as unknown as Record<string, number>)[name.charAt(0).toUpperCase() + name.slice(1)];
  return typeof code === 'number' && code >= 1 && code <= 16 ? (code as Code) : undefined;
}
