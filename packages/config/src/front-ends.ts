import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { FileRegistry } from '@bufbuild/protobuf';
import { ConfigError } from '@chiefofstate/core';
import { createTypeRegistry } from '@chiefofstate/protocol';
import type { EnvReader } from './env-reader.js';
import { SERVER_PROTOCOLS, type FrontEndsConfig, type ServerProtocol } from './types.js';
import { corsOrigins, host, oneOfLower, port, text } from './values.js';

export const DESCRIPTOR_SET_VARIABLE = 'COS_PROTO_DESCRIPTOR_SET';

const serverProtocol = oneOfLower(SERVER_PROTOCOLS, 'grpc, http or both');

/**
 * COS_SERVER_PROTOCOL, the HTTP/JSON front end (COS_HTTP_*), CORS and the user's descriptor sets.
 * The sets are read now, so a missing or broken file is listed with every other problem.
 */
export function readFrontEnds(
  reader: EnvReader,
  cwd: string,
  server: { address: string; port: number },
  clustered: boolean,
): FrontEndsConfig {
  const protocol: ServerProtocol = reader.readOr(serverProtocol, 'COS_SERVER_PROTOCOL', 'grpc');
  const httpAddress = reader.readOr(host, 'COS_HTTP_ADDRESS', server.address);
  const httpPort = reader.readOr(port, 'COS_HTTP_PORT', 9001);
  if (protocol === 'grpc') {
    for (const name of ['COS_HTTP_ADDRESS', 'COS_HTTP_PORT']) {
      if (reader.isSet(name)) reader.report.warn(`${name} is ignored: COS_SERVER_PROTOCOL is grpc, so the HTTP front end is off`);
    }
  } else if (httpPort === server.port) {
    reader.report.problem(`COS_HTTP_PORT=${JSON.stringify(String(httpPort))}: expected a port other than COS_PORT (${server.port})`);
  }
  if (protocol === 'http' && clustered) {
    reader.report.warn(
      'COS_SERVER_PROTOCOL=http: the gRPC port (COS_PORT) still opens, since replicas sharing the PostgreSQL store forward calls to each other over it',
    );
  }
  const files = (reader.read(text, DESCRIPTOR_SET_VARIABLE) ?? '')
    .split(',')
    .map((file) => file.trim())
    .filter((file) => file !== '')
    .map((file) => resolve(cwd, file));
  if (files.length > 0) {
    try {
      readTypeRegistry(files);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      for (const problem of error.problems) reader.report.problem(problem);
    }
  }
  return {
    protocol,
    http: protocol === 'grpc' ? undefined : { address: httpAddress, port: httpPort },
    corsAllowedOrigins: reader.readOr(corsOrigins, 'COS_CORS_ALLOWED_ORIGINS', []),
    descriptorSetFiles: files,
  };
}

/**
 * The types COS knows (createTypeRegistry of @chiefofstate/protocol) from the descriptor set
 * files of COS_PROTO_DESCRIPTOR_SET: what the JSON surfaces, reflection (and publishers writing
 * JSON) use.
 *
 * @throws ConfigError naming the variable and the file that is missing or not a descriptor set
 */
export function readTypeRegistry(files: readonly string[]): FileRegistry {
  const sets = files.map((file) => {
    try {
      return { name: file, bytes: readFileSync(file) };
    } catch (error) {
      throw new ConfigError([
        `${DESCRIPTOR_SET_VARIABLE}: ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)}): expected a file written by buf build -o <file>.binpb`,
      ]);
    }
  });
  try {
    return createTypeRegistry(sets);
  } catch (error) {
    throw new ConfigError([`${DESCRIPTOR_SET_VARIABLE}: ${error instanceof Error ? error.message : String(error)}`]);
  }
}
