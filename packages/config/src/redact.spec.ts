import { describe, expect, it } from 'vitest';
import type { CosConfig } from './types.js';
import { SECRET_VARIABLES } from './variables.js';
import { showValue } from './env-reader.js';
import { redactConfig } from './redact.js';
import { configErrorOf, load } from './test-support/load.js';

const SECRET = 'Tr0ub4dor&3-secret';
const OTHER_SECRET = 'correct-horse-battery';

describe('secrets', () => {
  it('never appear in redacted output, while the config keeps them', () => {
    const { config } = load({
      COS_POSTGRES_HOST: 'db',
      COS_POSTGRES_PASSWORD: SECRET,
      COS_READ_SIDE_OFFSET_DB_HOST: 'offsets',
      COS_READ_SIDE_OFFSET_DB_PASSWORD: OTHER_SECRET,
      OTEL_EXPORTER_OTLP_ENDPOINT: `https://collector:${SECRET}@otel.example.com/v1`,
    });
    expect(config.store.kind === 'postgres' && config.store.password).toBe(SECRET);
    const redacted = redactConfig(config) as {
      store: { password: string; host: string };
      readSideOffsetStore: { password: string };
      telemetry: { otlpEndpoint: string };
    };
    const text = JSON.stringify(redacted);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(OTHER_SECRET);
    expect(redacted.store.password).toBe('***');
    expect(redacted.store.host).toBe('db');
    expect(redacted.readSideOffsetStore.password).toBe('***');
    expect(redacted.telemetry.otlpEndpoint).toBe('https://collector:***@otel.example.com/v1');
    // a plain copy, not the frozen config
    expect(Object.isFrozen(redacted)).toBe(false);
    expect(redactConfig(config)).toEqual(redacted);
  });

  it('include the cluster secret', () => {
    const clusterSecret = 'the cluster secret, long enough';
    const { config } = load({ COS_POSTGRES_HOST: 'db', COS_CLUSTER_SECRET: clusterSecret });
    expect(config.cluster.secret).toBe(clusterSecret);
    expect(JSON.stringify(redactConfig(config))).not.toContain(clusterSecret);
    expect((redactConfig(config) as { cluster: { secret: string } }).cluster.secret).toBe('***');
  });

  it('redacts the default password too', () => {
    const { config } = load({ COS_POSTGRES_HOST: 'db' });
    expect(JSON.stringify(redactConfig(config))).not.toContain('changeme');
  });

  it('never appear in errors or warnings, even when everything else is wrong', () => {
    const env = {
      COS_POSTGRES_HOST: 'db',
      COS_POSTGRES_PASSWORD: SECRET,
      COS_DB_PASSWORD: OTHER_SECRET,
      COS_READ_SIDE_OFFSET_DB_PASSWORD: SECRET,
      COS_POSTGRES_PORT: 'abc',
      COS_NUM_SHARDS: '3',
      OTEL_EXPORTER_OTLP_ENDPOINT: `ftp://user:${SECRET}@host`,
      COS_POSTGRES_PASSWORDS: SECRET,
    };
    const error = configErrorOf(env);
    const everything = [error.message, String(error), error.stack ?? '', ...error.problems].join('\n');
    expect(error.problems.length).toBeGreaterThanOrEqual(3);
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain(OTHER_SECRET);
    expect(error.problems).toContain('OTEL_EXPORTER_OTLP_ENDPOINT="ftp://user:***@host": expected an http:// or https:// URL');

    const { warnings } = load({ ...env, COS_POSTGRES_PORT: '5432', COS_NUM_SHARDS: '4', OTEL_EXPORTER_OTLP_ENDPOINT: '' });
    expect(warnings).toContain('both COS_POSTGRES_PASSWORD and COS_DB_PASSWORD are set; using COS_POSTGRES_PASSWORD');
    expect(warnings.join('\n')).not.toContain(SECRET);
    expect(warnings.join('\n')).not.toContain(OTHER_SECRET);
  });

  it('are shown as *** wherever a value of theirs would be shown', () => {
    for (const name of ['COS_POSTGRES_PASSWORD', 'COS_DB_PASSWORD', 'COS_READ_SIDE_OFFSET_DB_PASSWORD']) {
      expect(showValue(name, SECRET)).toBe('***');
    }
    expect(showValue('COS_POSTGRES_USER', 'cos')).toBe('"cos"');
  });
});

describe('every variable marked secret', () => {
  // what a secret needs beside it to be read at all
  const ENABLING: Readonly<Record<string, Record<string, string>>> = {
    COS_READ_SIDE_OFFSET_DB_PASSWORD: { COS_READ_SIDE_OFFSET_DB_HOST: 'offsets' },
  };

  it.each([...SECRET_VARIABLES])('%s is kept in the config and never in its redacted copy', (name) => {
    const value = `Zq8-${name.toLowerCase()}-value-for-the-redaction-test`;
    const { config } = load({ COS_POSTGRES_HOST: 'db', ...ENABLING[name], [name]: value });
    // the check below means something only if the value is in the config
    expect(JSON.stringify(config)).toContain(value);
    expect(JSON.stringify(redactConfig(config))).not.toContain(value);
  });
});

describe('file settings', () => {
  it('are shown as the paths they are; PEM blocks, bytes and tokens are not', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----';
    const redacted = redactConfig({
      server: {
        tls: { certFile: '/etc/cos/tls/tls.crt', keyFile: '/etc/cos/tls/tls.key', clientCaFile: '/etc/cos/tls/ca.crt' },
        auth: { tokensFile: '/etc/cos/tokens/api', adminTokensFile: '/etc/cos/tokens/admin', clientNames: ['app'] },
      },
      metrics: { tokenFile: '/etc/cos/tokens/metrics', tokens: ['metrics-token-1'], key: pem, keyBytes: new Uint8Array([1, 2, 3]) },
    } as unknown as CosConfig);
    expect(redacted).toEqual({
      server: {
        tls: { certFile: '/etc/cos/tls/tls.crt', keyFile: '/etc/cos/tls/tls.key', clientCaFile: '/etc/cos/tls/ca.crt' },
        auth: { tokensFile: '/etc/cos/tokens/api', adminTokensFile: '/etc/cos/tokens/admin', clientNames: ['app'] },
      },
      metrics: { tokenFile: '/etc/cos/tokens/metrics', tokens: ['***'], key: '***', keyBytes: '***' },
    });
  });
});
