import { resolve } from 'node:path';
import { z } from 'zod';
import type { EnvReader } from './env-reader.js';
import { POSTGRES_SSL_MODES, type PostgresSslMode, type PostgresTlsConfig, type StoreConfig } from './types.js';
import { text, type Codec } from './values.js';

const MODE = 'COS_POSTGRES_SSL_MODE';
const ROOT_CERT = 'COS_POSTGRES_SSL_ROOT_CERT';
const CERT = 'COS_POSTGRES_SSL_CERT';
const KEY = 'COS_POSTGRES_SSL_KEY';
const FILES = [ROOT_CERT, CERT, KEY] as const;
/** libpq's root certificate value for the system's trusted roots */
const SYSTEM = 'system';
/** libpq's environment variables: pg would read PGSSLMODE by itself; COS never passes them on */
const LIBPQ_TLS_VARIABLES = ['PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY', 'PGSSLCRL'] as const;

const sslMode: Codec<PostgresSslMode> = {
  schema: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(POSTGRES_SSL_MODES)),
  expected: `one of ${POSTGRES_SSL_MODES.join(', ')}`,
};

/**
 * COS_POSTGRES_SSL_*, with libpq's meanings, checked as libpq would (and a little more: files
 * given while TLS is off are a mistake to tell about, not to ignore). Undefined when TLS is off.
 * Paths are resolved against `cwd`; the files themselves are read when the store is opened and
 * every `reloadIntervalMs` (COS_TLS_RELOAD_INTERVAL, readTlsReloadInterval).
 */
export function readPostgresTls(reader: EnvReader, cwd: string, reloadIntervalMs: number): PostgresTlsConfig | undefined {
  const mode = reader.readOr(sslMode, MODE, 'disable');
  const modeSet = reader.isSet(MODE);
  const rootCert = reader.read(text, ROOT_CERT);
  const cert = reader.read(text, CERT);
  const key = reader.read(text, KEY);
  const problem = (message: string) => reader.report.problem(message);

  if (mode === 'allow' || mode === 'prefer') {
    problem(
      `${MODE}=${JSON.stringify(mode)}: not supported: ${mode} falls back to plaintext when the server answers that it has no TLS, an answer anyone on the network path can forge; expected require (encrypted), verify-full (encrypted, the server authenticated) or disable`,
    );
  }
  if ((cert === undefined) !== (key === undefined)) {
    problem(`${cert === undefined ? KEY : CERT} is set without ${cert === undefined ? CERT : KEY}: expected both (the client certificate and its key) or neither`);
  }
  if (mode === 'disable') {
    for (const name of FILES.filter((each) => reader.isSet(each))) {
      problem(
        `${name} is set but ${MODE} is disable${modeSet ? '' : ' (its default)'}: expected ${MODE}=require, verify-ca or verify-full to use it, or ${name} unset`,
      );
    }
    return undefined;
  }
  if ((mode === 'verify-ca' || mode === 'verify-full') && rootCert === undefined) {
    problem(
      `${ROOT_CERT} is unset: expected, with ${MODE}=${mode}, the PEM file of the CA the server's certificate must chain to (or \`system\` for the trusted public roots, with verify-full)`,
    );
  }
  if (rootCert === SYSTEM && mode !== 'verify-full') {
    problem(`${ROOT_CERT}=system: expected ${MODE}=verify-full with the public roots (as libpq demands), not ${mode}`);
  }
  if (mode !== 'require' && mode !== 'verify-ca' && mode !== 'verify-full') return undefined;
  const path = (value: string) => resolve(cwd, value);
  return {
    mode,
    ...(rootCert !== undefined ? { rootCertFile: rootCert === SYSTEM ? SYSTEM : path(rootCert) } : {}),
    ...(cert !== undefined && key !== undefined ? { certFile: path(cert), keyFile: path(key) } : {}),
    reloadIntervalMs,
  };
}

/** Warnings for TLS settings nothing uses: only embedded stores, or libpq's own variables. */
export function warnUnusedPostgresTls(reader: EnvReader, stores: readonly StoreConfig[]): void {
  if (stores.every((store) => store.kind === 'embedded')) {
    for (const name of [MODE, ...FILES].filter((each) => reader.isSet(each))) {
      reader.report.warn(`${name} is ignored: COS_POSTGRES_HOST is unset, so the embedded store is used, which makes no network connection`);
    }
  }
  for (const name of LIBPQ_TLS_VARIABLES.filter((each) => reader.isSet(each))) {
    reader.report.warn(`${name} is ignored: COS reads ${MODE} and the other COS_POSTGRES_SSL_* variables`);
  }
}
