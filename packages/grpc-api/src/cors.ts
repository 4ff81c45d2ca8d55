import { cors as connectCors } from '@connectrpc/connect';
import type { HttpRequest, HttpResponse } from './unary-call.js';

/**
 * Answers CORS preflights and marks responses to allowed origins (COS_CORS_ALLOWED_ORIGINS), so
 * a page on another origin can call COS with Connect-Web, gRPC-Web or fetch. Returns true when
 * the request was a preflight and is answered.
 */
export type Cors = (request: HttpRequest, response: HttpResponse) => boolean;

const EXPOSED = [...connectCors.exposedHeaders, 'grpc-status-details-bin', 'trailer-grpc-status-details-bin'].join(', ');
const METHODS = [...connectCors.allowedMethods, 'OPTIONS'].join(', ');
const DEFAULT_ALLOWED_HEADERS = [...connectCors.allowedHeaders, 'authorization'].join(', ');
/** how long a browser may reuse a preflight answer, seconds */
const MAX_AGE = '7200';

/** `allowedOrigins`: exact origins, or `*` for any; empty: no CORS at all (nothing is added). */
export function createCors(allowedOrigins: readonly string[]): Cors | undefined {
  if (allowedOrigins.length === 0) return undefined;
  const any = allowedOrigins.includes('*');
  const origins = new Set(allowedOrigins);
  return (request, response) => {
    const origin = request.headers.origin;
    if (typeof origin !== 'string' || !(any || origins.has(origin))) return false;
    response.setHeader('access-control-allow-origin', any ? '*' : origin);
    response.setHeader('vary', 'origin');
    const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
    if (!preflight) {
      response.setHeader('access-control-expose-headers', EXPOSED);
      return false;
    }
    // the headers the page asks for (its own propagated headers, x-cos-idempotency-key, ...): the origin is trusted
    const asked = request.headers['access-control-request-headers'];
    response.writeHead(204, {
      'access-control-allow-methods': METHODS,
      'access-control-allow-headers': typeof asked === 'string' && asked !== '' ? asked : DEFAULT_ALLOWED_HEADERS,
      'access-control-max-age': MAX_AGE,
    });
    response.end();
    return true;
  };
}
