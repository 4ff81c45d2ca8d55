import { describe, expect, it } from 'vitest';
import { bankHandlerConfigFromEnv } from './config.js';

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
