#!/usr/bin/env node
// The images' HEALTHCHECK: one grpc.health.v1.Health/Check call over cleartext HTTP/2, with only
// Node's own modules, so the runtime image needs no grpc_health_probe binary, curl or packages.
//
//   node healthcheck.mjs [--host H] [--port P] [--service NAME] [--timeout-ms MS] [--accept-unimplemented]
//
// The port defaults to COS_PORT (else 9000) and the host to COS_ADDRESS when it names one
// interface (else 127.0.0.1). Exit code 0: SERVING (or, with --accept-unimplemented, a gRPC
// server that does not implement grpc.health.v1 answered); 1: anything else, with one line on
// stderr saying why. Docker reserves exit code 2.
import { connect } from 'node:http2';
import { pathToFileURL } from 'node:url';

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export const ServingStatus = Object.freeze({ UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 });

const GRPC_OK = 0;
const GRPC_UNIMPLEMENTED = 12;
const DEFAULT_PORT = 9000;
const DEFAULT_TIMEOUT_MS = 3000;

/**
 * A HealthCheckRequest{service} as one gRPC message: flag byte, 4-byte big-endian length, then
 * the protobuf (field 1, wire type 2; omitted when empty, as proto3 does).
 * @param {string} service
 * @returns {Uint8Array}
 */
export function encodeHealthCheckRequest(service) {
  const name = new TextEncoder().encode(service);
  const body = name.length === 0 ? [] : [0x0a, ...encodeVarint(name.length), ...name];
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(1, body.length);
  frame.set(body, 5);
  return frame;
}

/**
 * The status of a gRPC-framed HealthCheckResponse; UNKNOWN (0) when the field is absent.
 * @param {Uint8Array} frame
 * @returns {number}
 */
export function decodeHealthCheckResponse(frame) {
  if (frame.length < 5) throw new Error(`response too short: ${frame.length} bytes`);
  if (frame[0] !== 0) throw new Error('compressed responses are not supported');
  const length = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1);
  if (frame.length < 5 + length) throw new Error(`truncated response: ${frame.length - 5} of ${length} bytes`);
  const message = frame.subarray(5, 5 + length);
  /** @type {number} */
  let status = ServingStatus.UNKNOWN;
  let at = 0;
  while (at < message.length) {
    const [tag, afterTag] = decodeVarint(message, at);
    at = afterTag;
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) {
      const [value, next] = decodeVarint(message, at);
      if (field === 1) status = value;
      at = next;
    } else if (wireType === 2) {
      const [size, next] = decodeVarint(message, at);
      at = next + size;
    } else if (wireType === 1) {
      at += 8;
    } else if (wireType === 5) {
      at += 4;
    } else {
      throw new Error(`unexpected wire type ${wireType}`);
    }
  }
  if (at > message.length) throw new Error('malformed response');
  return status;
}

/** @param {number} value */
function encodeVarint(value) {
  const bytes = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  bytes.push(value);
  return bytes;
}

/**
 * @param {Uint8Array} bytes
 * @param {number} at
 * @returns {[number, number]} the value and the offset after it
 */
function decodeVarint(bytes, at) {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    const byte = bytes[at++];
    if (byte === undefined) throw new Error('malformed varint');
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
  }
  throw new Error('varint too long');
}

/**
 * The gRPC code of a response without grpc-status, from its HTTP status (gRPC's
 * "HTTP to gRPC status code mapping"): a server that routes by path answers 404 for a
 * service it does not have, which a gRPC client reads as UNIMPLEMENTED.
 * @param {number} httpStatus
 */
function grpcCodeOfHttpStatus(httpStatus) {
  switch (httpStatus) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}

/**
 * @typedef {object} HealthCheckOptions
 * @property {string} host
 * @property {number} port
 * @property {string} [service] the service to ask about; "" (default) is the server as a whole
 * @property {number} [timeoutMs]
 * @property {boolean} [acceptUnimplemented] healthy when the server answers UNIMPLEMENTED
 *
 * @typedef {object} HealthCheckResult
 * @property {boolean} healthy
 * @property {string} detail one line, for logs
 * @property {number} [grpcStatus]
 * @property {number} [servingStatus]
 */

/**
 * Calls Health/Check once. Never throws: failures (refused, timeout, protocol) are unhealthy.
 * @param {HealthCheckOptions} options
 * @returns {Promise<HealthCheckResult>}
 */
export function checkHealth(options) {
  const { host, port, service = '', timeoutMs = DEFAULT_TIMEOUT_MS, acceptUnimplemented = false } = options;
  const authority = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new Promise((resolve) => {
    /** @type {import('node:http2').ClientHttp2Session | undefined} */
    let session;
    let settled = false;
    /** @param {HealthCheckResult} result */
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session?.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ healthy: false, detail: `no answer from ${authority} within ${timeoutMs} ms` }),
      timeoutMs,
    );
    try {
      session = connect(authority);
    } catch (error) {
      finish({ healthy: false, detail: `cannot connect to ${authority}: ${messageOf(error)}` });
      return;
    }
    session.on('error', (error) => finish({ healthy: false, detail: `cannot reach ${authority}: ${messageOf(error)}` }));
    const stream = session.request({
      ':method': 'POST',
      ':path': HEALTH_CHECK_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${Math.max(1, Math.ceil(timeoutMs))}m`,
      'grpc-accept-encoding': 'identity',
    });
    /** @type {Buffer[]} */
    const chunks = [];
    /** @type {Record<string, unknown>} */
    let headers = {};
    /** @type {Record<string, unknown>} */
    let trailers = {};
    stream.on('response', (received) => {
      headers = received;
    });
    stream.on('trailers', (received) => {
      trailers = received;
    });
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('error', (error) => finish({ healthy: false, detail: `call failed: ${messageOf(error)}` }));
    stream.on('end', () => {
      // A "Trailers-Only" answer carries grpc-status in the headers.
      const rawStatus = trailers['grpc-status'] ?? headers['grpc-status'];
      const httpStatus = Number(headers[':status']);
      const grpcStatus = rawStatus === undefined ? grpcCodeOfHttpStatus(httpStatus) : Number(rawStatus);
      const grpcMessage = String(trailers['grpc-message'] ?? headers['grpc-message'] ?? '');
      if (grpcStatus === GRPC_UNIMPLEMENTED && acceptUnimplemented) {
        finish({ healthy: true, grpcStatus, detail: `${authority} answers gRPC (grpc.health.v1 not implemented)` });
        return;
      }
      if (grpcStatus !== GRPC_OK) {
        const why = grpcMessage ? `: ${decodeURIComponentSafe(grpcMessage)}` : '';
        finish({ healthy: false, grpcStatus, detail: `grpc-status ${grpcStatus} (HTTP ${httpStatus})${why}` });
        return;
      }
      let servingStatus;
      try {
        servingStatus = decodeHealthCheckResponse(Buffer.concat(chunks));
      } catch (error) {
        finish({ healthy: false, grpcStatus, detail: `bad response: ${messageOf(error)}` });
        return;
      }
      const name = Object.keys(ServingStatus).find((key) => ServingStatus[/** @type {keyof typeof ServingStatus} */ (key)] === servingStatus);
      finish({
        healthy: servingStatus === ServingStatus.SERVING,
        grpcStatus,
        servingStatus,
        detail: `${service === '' ? 'server' : service} is ${name ?? `status ${servingStatus}`}`,
      });
    });
    stream.end(encodeHealthCheckRequest(service));
  });
}

/** @param {string} text */
function decodeURIComponentSafe(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** @param {unknown} error */
function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The options from the command line, with defaults from COS_PORT and COS_ADDRESS.
 * @param {readonly string[]} args
 * @param {Readonly<Record<string, string | undefined>>} env
 * @returns {HealthCheckOptions}
 */
export function parseArguments(args, env) {
  const address = env['COS_ADDRESS']?.trim();
  /** @type {HealthCheckOptions} */
  const options = {
    host: address && address !== '0.0.0.0' && address !== '::' ? address : '127.0.0.1',
    port: env['COS_PORT']?.trim() ? Number(env['COS_PORT'].trim()) : DEFAULT_PORT,
    service: '',
    timeoutMs: DEFAULT_TIMEOUT_MS,
    acceptUnimplemented: false,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === '--accept-unimplemented') {
      options.acceptUnimplemented = true;
      continue;
    }
    const value = args[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--host') options.host = value;
    else if (flag === '--port') options.port = Number(value);
    else if (flag === '--service') options.service = value;
    else if (flag === '--timeout-ms') options.timeoutMs = Number(value);
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
    throw new Error(`the port must be an integer 1..65535, got ${options.port}`);
  }
  if (!Number.isFinite(options.timeoutMs) || /** @type {number} */ (options.timeoutMs) <= 0) {
    throw new Error(`--timeout-ms must be a positive number, got ${options.timeoutMs}`);
  }
  return options;
}

async function main() {
  let options;
  try {
    options = parseArguments(process.argv.slice(2), process.env);
  } catch (error) {
    process.stderr.write(`healthcheck: ${messageOf(error)}\n`);
    process.exit(1);
  }
  const result = await checkHealth(options);
  (result.healthy ? process.stdout : process.stderr).write(`healthcheck: ${result.detail}\n`);
  process.exit(result.healthy ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
