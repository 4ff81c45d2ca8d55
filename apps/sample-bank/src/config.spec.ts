import { describe, expect, it } from 'vitest';
import { bankHandlerConfigFromEnv, bankReadSideConfigFromEnv } from './config.js';

describe('bankHandlerConfigFromEnv', () => {
  it('defaults to 0.0.0.0:50051 at info', () => {
    expect(bankHandlerConfigFromEnv({})).toEqual({ host: '0.0.0.0', port: 50051, logLevel: 'info' });
    expect(bankHandlerConfigFromEnv({ PORT: ' ', HOST: '' })).toEqual({ host: '0.0.0.0', port: 50051, logLevel: 'info' });
  });

  it('reads PORT, HOST and LOG_LEVEL', () => {
    expect(bankHandlerConfigFromEnv({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'DEBUG' })).toEqual({
      host: '127.0.0.1',
      port: 0,
      logLevel: 'debug',
    });
  });

  it('rejects ports that are not ports and unknown levels', () => {
    for (const PORT of ['-1', '65536', '80.5', 'http', '1e3']) {
      expect(() => bankHandlerConfigFromEnv({ PORT })).toThrow(`PORT must be an integer from 0 to 65535, got "${PORT}"`);
    }
    expect(() => bankHandlerConfigFromEnv({ LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL must be one of trace, debug/);
  });
});

describe('bankReadSideConfigFromEnv', () => {
  it('defaults to 0.0.0.0:50052 with the embedded store in memory', () => {
    expect(bankReadSideConfigFromEnv({})).toEqual({ host: '0.0.0.0', port: 50052, logLevel: 'info' });
  });

  it('reads READ_SIDE_DATABASE_URL and READ_SIDE_DATA_DIR besides PORT, HOST and LOG_LEVEL', () => {
    expect(
      bankReadSideConfigFromEnv({
        PORT: '6000',
        READ_SIDE_DATABASE_URL: ' postgres://u:p@db:5432/bank?schema=balances ',
        READ_SIDE_DATA_DIR: '/data/read-side',
      }),
    ).toEqual({
      host: '0.0.0.0',
      port: 6000,
      logLevel: 'info',
      databaseUrl: 'postgres://u:p@db:5432/bank?schema=balances',
      dataDir: '/data/read-side',
    });
  });

  it('rejects a database URL of another kind and a bad port', () => {
    expect(() => bankReadSideConfigFromEnv({ READ_SIDE_DATABASE_URL: 'mysql://db/bank' })).toThrow(
      'READ_SIDE_DATABASE_URL must be a postgres:// URL',
    );
    expect(() => bankReadSideConfigFromEnv({ PORT: '70000' })).toThrow(/PORT must be an integer/);
  });
});
