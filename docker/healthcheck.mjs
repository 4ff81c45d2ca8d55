#!/usr/bin/env node
// The images' HEALTHCHECK: one grpc.health.v1.Health/Check over cleartext HTTP/2 through COS's own
// gRPC client (checkHealth of @chiefofstate/handler-client, already in every image), so the
// image needs no grpc_health_probe binary, curl or packages of its own.
//
//   node healthcheck.mjs [--host H] [--port P] [--service NAME] [--timeout-ms MS] [--accept-unimplemented]
//
// The port defaults to COS_PORT (else 9000) and the host to COS_ADDRESS when it names one
// interface (else 127.0.0.1); COS_GRPC_CLIENT_FAST_PATH=false calls through Connect's stock
// transport. Exit code 0: SERVING (or, with --accept-unimplemented, a gRPC server that does not
// implement grpc.health.v1 answered); 1: anything else, with one line on stderr saying why.
// Docker reserves exit code 2.
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { checkHealth } from '@chiefofstate/handler-client/health-check';

export { checkHealth };

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export const ServingStatus = Object.freeze({ UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 });

const DEFAULT_PORT = 9000;
const DEFAULT_TIMEOUT_MS = 3000;

/**
 * The options from the command line, with defaults from COS_PORT, COS_ADDRESS and COS_GRPC_CLIENT_FAST_PATH.
 * @param {readonly string[]} args
 * @param {Readonly<Record<string, string | undefined>>} env
 * @returns {import('@chiefofstate/handler-client/health-check').HealthCheckOptions}
 */
export function parseArguments(args, env) {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        service: { type: 'string', default: '' },
        'timeout-ms': { type: 'string' },
        'accept-unimplemented': { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    // parseArgs' own words, e.g. "Option '--port <value>' argument missing" or "Unknown option '--verbose'"
    throw new Error(error instanceof Error ? error.message : String(error));
  }
  const address = env['COS_ADDRESS']?.trim();
  const port = values.port ?? (env['COS_PORT']?.trim() || String(DEFAULT_PORT));
  const timeoutMs = values['timeout-ms'] === undefined ? DEFAULT_TIMEOUT_MS : Number(values['timeout-ms']);
  const options = {
    host: values.host ?? (address && address !== '0.0.0.0' && address !== '::' ? address : '127.0.0.1'),
    port: Number(port),
    service: values.service,
    timeoutMs,
    acceptUnimplemented: values['accept-unimplemented'],
    ...(env['COS_GRPC_CLIENT_FAST_PATH']?.trim().toLowerCase() === 'false' ? { fastTransport: false } : {}),
  };
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
    throw new Error(`the port must be an integer 1..65535, got ${options.port}`);
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new Error(`--timeout-ms must be a positive number, got ${timeoutMs}`);
  }
  return options;
}

async function main() {
  let options;
  try {
    options = parseArguments(process.argv.slice(2), process.env);
  } catch (error) {
    process.stderr.write(`healthcheck: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
  const result = await checkHealth(options);
  (result.healthy ? process.stdout : process.stderr).write(`healthcheck: ${result.detail}\n`);
  process.exit(result.healthy ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
