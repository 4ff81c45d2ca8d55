import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '@chiefofstate/config';
import { isAllowedVariable, isCosVariable, looksSecret, SECRET_VARIABLE_NAMES, workloadOfImage } from './variables.js';

describe('variables', () => {
  it('knows every documented name and alias of CONFIG_VARIABLES', () => {
    for (const variable of CONFIG_VARIABLES.filter((item) => !item.name.includes('<'))) {
      expect(isCosVariable(variable.name)).toBe(true);
      for (const alias of variable.aliases) expect(isCosVariable(alias)).toBe(true);
    }
    expect(isCosVariable('COS_POSTGRES_HOTS')).toBe(false);
    expect(isCosVariable('COS_READ_SIDE_CONFIG__HOST__balances')).toBe(true);
    expect(isCosVariable('COS_READ_SIDE_CONFIG__COLOR__balances')).toBe(false);
  });

  it('allows each workload its own variables, and NODE_ENV and OTEL_* everywhere', () => {
    expect(isAllowedVariable('cos', 'COS_PORT')).toBe(true);
    expect(isAllowedVariable('cos', 'PORT')).toBe(false);
    expect(isAllowedVariable('sample-handler', 'PORT')).toBe(true);
    expect(isAllowedVariable('sample-handler', 'COS_PORT')).toBe(false);
    expect(isAllowedVariable('postgres', 'POSTGRES_PASSWORD')).toBe(true);
    expect(isAllowedVariable('jaeger', 'COLLECTOR_OTLP_ENABLED')).toBe(true);
    for (const workload of ['cos', 'sample-handler', 'postgres', 'jaeger'] as const) {
      expect(isAllowedVariable(workload, 'NODE_ENV')).toBe(true);
      expect(isAllowedVariable(workload, 'OTEL_EXPORTER_OTLP_ENDPOINT')).toBe(true);
      expect(isAllowedVariable(workload, 'OTEL_')).toBe(false);
    }
  });

  it('treats the store passwords and anything named like a secret as secret', () => {
    expect([...SECRET_VARIABLE_NAMES].sort()).toEqual([
      'COS_CLUSTER_SECRET',
      'COS_DB_PASSWORD',
      'COS_POSTGRES_PASSWORD',
      'COS_READ_SIDE_OFFSET_DB_PASSWORD',
    ]);
    expect(looksSecret('POSTGRES_PASSWORD')).toBe(true);
    expect(looksSecret('API_TOKEN')).toBe(true);
    expect(looksSecret('COS_POSTGRES_USER')).toBe(false);
    // a file setting names a path (the file comes from a Secret volume)
    expect(looksSecret('COS_AUTH_TOKENS_FILE')).toBe(false);
    expect(looksSecret('COS_METRICS_TOKEN_FILE')).toBe(false);
  });

  it('tells workloads by image', () => {
    expect(workloadOfImage('chiefofstate/cos-server:0.1.0')).toBe('cos');
    expect(workloadOfImage('chiefofstate/cos-readside')).toBe('cos');
    expect(workloadOfImage('chiefofstate/sample-bank:0.1.0')).toBe('sample-handler');
    expect(workloadOfImage('postgres:15')).toBe('postgres');
    expect(workloadOfImage('jaegertracing/all-in-one:1.76.0')).toBe('jaeger');
    expect(workloadOfImage('chiefofstate/cos-serverless:1')).toBeUndefined();
    expect(workloadOfImage('redis:7')).toBeUndefined();
  });
});
