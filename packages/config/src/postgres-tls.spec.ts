import { describe, expect, it } from 'vitest';
import { redactConfig } from './redact.js';
import { load, problemsOf } from './test-support/load.js';

const PG = { COS_POSTGRES_HOST: 'db', COS_POSTGRES_PASSWORD: 'hunter2-secret' };
const FULL = {
  ...PG,
  COS_POSTGRES_SSL_MODE: 'verify-full',
  COS_POSTGRES_SSL_ROOT_CERT: 'tls/ca.crt',
  COS_POSTGRES_SSL_CERT: '/tls/client.crt',
  COS_POSTGRES_SSL_KEY: '/tls/client.key',
};

describe('TLS to PostgreSQL (COS_POSTGRES_SSL_*)', () => {
  it('is off by default: no tls in the store settings, as before', () => {
    const { config, warnings } = load(PG);
    expect(config.store).not.toHaveProperty('tls');
    expect(warnings).toEqual([]);
  });

  it('reads the mode and the files (relative to the working directory) for both stores, with the reload interval', () => {
    const { config, warnings } = load({ ...FULL, COS_READ_SIDE_OFFSET_DB_HOST: 'offsets', COS_TLS_RELOAD_INTERVAL: '2.5' });
    const tls = {
      mode: 'verify-full',
      rootCertFile: '/srv/cos/tls/ca.crt',
      certFile: '/tls/client.crt',
      keyFile: '/tls/client.key',
      reloadIntervalMs: 2500,
    };
    expect(config.store).toMatchObject({ kind: 'postgres', tls });
    expect(config.readSideOffsetStore).toMatchObject({ kind: 'postgres', host: 'offsets', tls });
    expect(warnings).toEqual([]);
  });

  it('takes every mode libpq knows, in any case; require needs no file; 0 never reloads', () => {
    expect(load({ ...PG, COS_POSTGRES_SSL_MODE: 'REQUIRE', COS_TLS_RELOAD_INTERVAL: '0' }).config.store).toMatchObject({
      tls: { mode: 'require', reloadIntervalMs: 0 },
    });
    expect(load({ ...PG, COS_POSTGRES_SSL_MODE: 'disable' }).config.store).not.toHaveProperty('tls');
    expect(
      load({ ...PG, COS_POSTGRES_SSL_MODE: 'verify-ca', COS_POSTGRES_SSL_ROOT_CERT: '/ca.pem' }).config.store,
    ).toMatchObject({ tls: { mode: 'verify-ca', rootCertFile: '/ca.pem', reloadIntervalMs: 10_000 } });
    expect(
      load({ ...PG, COS_POSTGRES_SSL_MODE: 'verify-full', COS_POSTGRES_SSL_ROOT_CERT: 'system' }).config.store,
    ).toMatchObject({ tls: { mode: 'verify-full', rootCertFile: 'system' } });
  });

  it('refuses allow and prefer, saying why', () => {
    for (const mode of ['allow', 'prefer']) {
      expect(problemsOf({ ...PG, COS_POSTGRES_SSL_MODE: mode })).toEqual([
        expect.stringMatching(new RegExp(`^COS_POSTGRES_SSL_MODE="${mode}": not supported: .*plaintext.*forge; expected require`)),
      ]);
    }
    expect(problemsOf({ ...PG, COS_POSTGRES_SSL_MODE: 'on' })).toEqual([
      'COS_POSTGRES_SSL_MODE="on": expected one of disable, allow, prefer, require, verify-ca, verify-full',
    ]);
  });

  it('refuses what libpq refuses, and files given while TLS is off, listing every problem', () => {
    expect(problemsOf({ ...PG, COS_POSTGRES_SSL_MODE: 'verify-full' })).toEqual([
      expect.stringMatching(/^COS_POSTGRES_SSL_ROOT_CERT is unset: expected, with COS_POSTGRES_SSL_MODE=verify-full, the PEM file/),
    ]);
    expect(problemsOf({ ...PG, COS_POSTGRES_SSL_MODE: 'verify-ca', COS_POSTGRES_SSL_ROOT_CERT: 'system' })).toEqual([
      'COS_POSTGRES_SSL_ROOT_CERT=system: expected COS_POSTGRES_SSL_MODE=verify-full with the public roots (as libpq demands), not verify-ca',
    ]);
    expect(problemsOf({ ...FULL, COS_POSTGRES_SSL_KEY: undefined, COS_TLS_RELOAD_INTERVAL: '-1' })).toEqual([
      expect.stringMatching(/^COS_TLS_RELOAD_INTERVAL="-1": expected a number of seconds >= 0/),
      'COS_POSTGRES_SSL_CERT is set without COS_POSTGRES_SSL_KEY: expected both (the client certificate and its key) or neither',
    ]);
    expect(problemsOf({ ...FULL, COS_POSTGRES_SSL_MODE: undefined })).toEqual([
      'COS_POSTGRES_SSL_ROOT_CERT is set but COS_POSTGRES_SSL_MODE is disable (its default): expected COS_POSTGRES_SSL_MODE=require, verify-ca or verify-full to use it, or COS_POSTGRES_SSL_ROOT_CERT unset',
      expect.stringMatching(/^COS_POSTGRES_SSL_CERT is set but/),
      expect.stringMatching(/^COS_POSTGRES_SSL_KEY is set but/),
    ]);
  });

  it('warns that the embedded store ignores them, and that libpq variables are not read', () => {
    const { config, warnings } = load({ COS_POSTGRES_SSL_MODE: 'require', PGSSLMODE: 'require', PGSSLROOTCERT: '/x' });
    expect(config.store.kind).toBe('embedded');
    expect(warnings).toEqual([
      'COS_POSTGRES_SSL_MODE is ignored: COS_POSTGRES_HOST is unset, so the embedded store is used, which makes no network connection',
      'PGSSLMODE is ignored: COS reads COS_POSTGRES_SSL_MODE and the other COS_POSTGRES_SSL_* variables',
      'PGSSLROOTCERT is ignored: COS reads COS_POSTGRES_SSL_MODE and the other COS_POSTGRES_SSL_* variables',
    ]);
    // an offset store on PostgreSQL uses them
    expect(load({ COS_POSTGRES_SSL_MODE: 'require', COS_READ_SIDE_OFFSET_DB_HOST: 'offsets' }).warnings).toEqual([]);
  });

  it('keeps the password out of the logged configuration and out of every problem', () => {
    expect(JSON.stringify(redactConfig(load(FULL).config))).not.toContain('hunter2-secret');
    expect(problemsOf({ ...FULL, COS_POSTGRES_SSL_MODE: 'prefer' }).join('\n')).not.toContain('hunter2-secret');
  });
});
