import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { load, problemsOf } from './test-support/load.js';
import type { ReadSideConfig } from './types.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cos-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, content: string): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  return path;
}

const ON = { COS_READ_SIDE_ENABLED: 'true' };

function side(readSideId: string, host: string, port: number, rest: Partial<ReadSideConfig> = {}): ReadSideConfig {
  return {
    readSideId,
    host,
    port,
    protocol: 'grpc',
    useTls: false,
    tls: undefined,
    timeoutMs: 5000,
    autoStart: true,
    enabled: true,
    failurePolicy: 'REPLAY_STOP',
    ...rest,
  };
}

describe('READ_SIDE_HANDLER_SERVICE_HOST/_PORT', () => {
  it('is the read side "default", with the call timeout as its timeout', () => {
    const { config } = load({
      ...ON,
      READ_SIDE_HANDLER_SERVICE_HOST: 'rs',
      READ_SIDE_HANDLER_SERVICE_PORT: '7000',
      COS_GRPC_CALLS_TIMEOUT: '1200',
    });
    expect(config.readSide.readSides).toEqual([side('default', 'rs', 7000, { timeoutMs: 1200 })]);
  });

  it('needs both host and port', () => {
    expect(problemsOf({ ...ON, READ_SIDE_HANDLER_SERVICE_HOST: 'rs' })).toEqual([
      'READ_SIDE_HANDLER_SERVICE_PORT is unset: expected an integer port 1..65535, because READ_SIDE_HANDLER_SERVICE_HOST is set',
    ]);
    expect(problemsOf({ ...ON, READ_SIDE_HANDLER_SERVICE_PORT: '7000' })).toEqual([
      'READ_SIDE_HANDLER_SERVICE_HOST is unset: expected a host name or IP address, without scheme or port, because READ_SIDE_HANDLER_SERVICE_PORT is set',
    ]);
  });

  it('validates the port', () => {
    expect(problemsOf({ ...ON, READ_SIDE_HANDLER_SERVICE_HOST: 'rs', READ_SIDE_HANDLER_SERVICE_PORT: 'abc' })).toEqual([
      'READ_SIDE_HANDLER_SERVICE_PORT="abc": expected an integer port 1..65535',
    ]);
  });
});

describe('COS_READ_SIDE_CONFIG__<SETTING>__<ID>', () => {
  it('reads every setting, keeping the id as written', () => {
    const { config } = load({
      ...ON,
      COS_READ_SIDE_CONFIG__HOST__Orders_V2: 'orders',
      COS_READ_SIDE_CONFIG__PORT__Orders_V2: '7100',
      COS_READ_SIDE_CONFIG__PROTOCOL__Orders_V2: 'http',
      COS_READ_SIDE_CONFIG__USE_TLS__Orders_V2: 'true',
      COS_READ_SIDE_CONFIG__TLS_CA_FILE__Orders_V2: '/tls/ca.crt',
      COS_READ_SIDE_CONFIG__TLS_CERT_FILE__Orders_V2: '/tls/tls.crt',
      COS_READ_SIDE_CONFIG__TLS_KEY_FILE__Orders_V2: '/tls/tls.key',
      COS_READ_SIDE_CONFIG__TLS_SERVER_NAME__Orders_V2: 'orders.internal',
      COS_READ_SIDE_CONFIG__TIMEOUT__Orders_V2: '250',
      COS_READ_SIDE_CONFIG__AUTO_START__Orders_V2: 'false',
      COS_READ_SIDE_CONFIG__ENABLED__Orders_V2: '0',
      COS_READ_SIDE_CONFIG__FAILURE_POLICY__Orders_V2: 'replay_skip',
      COS_READ_SIDE_CONFIG__HOST__audit: 'audit',
      COS_READ_SIDE_CONFIG__PORT__audit: '7200',
    });
    expect(config.readSide.readSides).toEqual([
      side('Orders_V2', 'orders', 7100, {
        protocol: 'http',
        useTls: true,
        tls: { caFile: '/tls/ca.crt', certFile: '/tls/tls.crt', keyFile: '/tls/tls.key', serverName: 'orders.internal', reloadIntervalMs: 10_000 },
        timeoutMs: 250,
        autoStart: false,
        enabled: false,
        failurePolicy: 'REPLAY_SKIP',
      }),
      side('audit', 'audit', 7200),
    ]);
  });

  it('keeps double underscores inside the id', () => {
    const { config } = load({ COS_READ_SIDE_CONFIG__HOST__a__b: 'h', COS_READ_SIDE_CONFIG__PORT__a__b: '1' });
    expect(config.readSide.readSides.map((s) => s.readSideId)).toEqual(['a__b']);
  });

  it('reports unknown settings, bad values, malformed names and missing ports', () => {
    expect(
      problemsOf({
        ...ON,
        COS_READ_SIDE_CONFIG__HOTS__x: 'h',
        COS_READ_SIDE_CONFIG__HOST__y: 'h',
        COS_READ_SIDE_CONFIG__PORT__y: 'abc',
        COS_READ_SIDE_CONFIG__HOST__z: 'h',
        COS_READ_SIDE_CONFIG__FAILURE_POLICY__z: 'RETRY',
        COS_READ_SIDE_CONFIG__PORT__z: '1',
        COS_READ_SIDE_CONFIG__USE_TLS__z: 'sure',
        COS_READ_SIDE_CONFIG__HOST: 'h',
        COS_READ_SIDE_CONFIG__HOST__w: 'h',
      }),
    ).toEqual([
      // variables are taken in name order
      'COS_READ_SIDE_CONFIG__FAILURE_POLICY__z="RETRY": expected one of STOP, SKIP, REPLAY_STOP, REPLAY_SKIP',
      'COS_READ_SIDE_CONFIG__HOST is not a read side setting: expected COS_READ_SIDE_CONFIG__<SETTING>__<READSIDE_ID>',
      'COS_READ_SIDE_CONFIG__HOTS__x: unknown read side setting "HOTS": expected one of HOST, PORT, PROTOCOL, USE_TLS, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TLS_SERVER_NAME, TIMEOUT, AUTO_START, ENABLED, FAILURE_POLICY',
      'COS_READ_SIDE_CONFIG__PORT__y="abc": expected an integer port 1..65535',
      'COS_READ_SIDE_CONFIG__USE_TLS__z="sure": expected true or false (or 1 / 0)',
      'read side "w" has no port: expected COS_READ_SIDE_CONFIG__PORT__w to be set',
    ]);
  });

  it('clashes with the default read side on the id "default"', () => {
    expect(
      problemsOf({
        ...ON,
        READ_SIDE_HANDLER_SERVICE_HOST: 'rs',
        READ_SIDE_HANDLER_SERVICE_PORT: '7000',
        COS_READ_SIDE_CONFIG__HOST__default: 'other',
        COS_READ_SIDE_CONFIG__PORT__default: '7001',
      }),
    ).toEqual([
      'read side "default" is defined twice: by READ_SIDE_HANDLER_SERVICE_HOST/READ_SIDE_HANDLER_SERVICE_PORT and by COS_READ_SIDE_CONFIG__*__default; expected unique read side ids',
    ]);
  });
});

describe('read side TLS', () => {
  it('refuses TLS settings without useTls, and a certificate without its key, naming the variable or YAML key', () => {
    const path = file(
      'tls.yaml',
      ['readSideId: y1', 'host: y', 'port: 1', 'tlsServerName: y.internal', '---', 'readSideId: y2', 'host: y', 'port: 2', 'useTls: true', 'tlsKeyFile: /k'].join('\n'),
    );
    expect(
      problemsOf({
        ...ON,
        COS_READ_SIDE_CONFIG: path,
        COS_READ_SIDE_CONFIG__HOST__e1: 'h',
        COS_READ_SIDE_CONFIG__PORT__e1: '1',
        COS_READ_SIDE_CONFIG__TLS_CA_FILE__e1: '/ca.crt',
        COS_READ_SIDE_CONFIG__USE_TLS__e1: 'false',
        COS_READ_SIDE_CONFIG__HOST__e2: 'h',
        COS_READ_SIDE_CONFIG__PORT__e2: '2',
        COS_READ_SIDE_CONFIG__USE_TLS__e2: 'true',
        COS_READ_SIDE_CONFIG__TLS_CERT_FILE__e2: '/c.crt',
        COS_READ_SIDE_CONFIG__TLS_SERVER_NAME__e3: 'not a host',
      }),
    ).toEqual([
      'COS_READ_SIDE_CONFIG__TLS_SERVER_NAME__e3="not a host": expected a host name or IP address, without scheme or port',
      `COS_READ_SIDE_CONFIG file ${path} document 1 (read side "y1"): tlsServerName is set but useTls is not true: expected it true to use TLS, or tlsServerName unset`,
      `COS_READ_SIDE_CONFIG file ${path} document 2 (read side "y2"): tlsKeyFile is set without tlsCertFile: expected both (a client certificate and its key) or neither`,
      'read side "e1": COS_READ_SIDE_CONFIG__TLS_CA_FILE__e1 is set but COS_READ_SIDE_CONFIG__USE_TLS__e1 is not true: expected it true to use TLS, or COS_READ_SIDE_CONFIG__TLS_CA_FILE__e1 unset',
      'read side "e2": COS_READ_SIDE_CONFIG__TLS_CERT_FILE__e2 is set without COS_READ_SIDE_CONFIG__TLS_KEY_FILE__e2: expected both (a client certificate and its key) or neither',
    ]);
  });

  it('takes COS_TLS_RELOAD_INTERVAL, 0 for never', () => {
    const env = { ...ON, COS_READ_SIDE_CONFIG__HOST__a: 'a', COS_READ_SIDE_CONFIG__PORT__a: '1', COS_READ_SIDE_CONFIG__USE_TLS__a: '1' };
    expect(load({ ...env, COS_TLS_RELOAD_INTERVAL: '0' }).config.readSide.readSides[0]?.tls?.reloadIntervalMs).toBe(0);
    expect(load({ ...env, COS_TLS_RELOAD_INTERVAL: '2.5' }).config.readSide.readSides[0]?.tls?.reloadIntervalMs).toBe(2500);
    expect(load(env).config.readSide.readSides[0]?.tls).toEqual({
      caFile: undefined,
      certFile: undefined,
      keyFile: undefined,
      serverName: undefined,
      reloadIntervalMs: 10_000,
    });
  });
});

describe('COS_READ_SIDE_CONFIG YAML', () => {
  it('reads several documents of one file, with defaults', () => {
    const path = file(
      'read-sides.yaml',
      [
        'readSideId: orders',
        'host: orders-rs',
        'port: 7100',
        'useTls: true',
        'tlsCaFile: tls/ca.crt',
        'timeout: 800',
        'autoStart: false',
        'enabled: false',
        'failurePolicy: skip',
        '---',
        'readSideId: audit',
        'host: 10.0.0.7',
        'port: "7200"',
        '---',
        'readSideId: search',
        'host: search',
        'port: 8080',
        'protocol: HTTP',
        'timeout: 2s',
        '---',
        '# an empty document is skipped',
      ].join('\n'),
    );
    const { config, warnings } = load({ ...ON, COS_READ_SIDE_CONFIG: path });
    expect(warnings).toEqual([]);
    expect(config.readSide.readSides).toEqual([
      side('orders', 'orders-rs', 7100, {
        useTls: true,
        // relative to the working directory, as COS_READ_SIDE_CONFIG itself
        tls: { caFile: '/srv/cos/tls/ca.crt', certFile: undefined, keyFile: undefined, serverName: undefined, reloadIntervalMs: 10_000 },
        timeoutMs: 800,
        autoStart: false,
        enabled: false,
        failurePolicy: 'SKIP',
      }),
      side('audit', '10.0.0.7', 7200),
      side('search', 'search', 8080, { protocol: 'http', timeoutMs: 2000 }),
    ]);
  });

  it('reads a directory of .yaml and .yml files in name order, relative to cwd', () => {
    file('conf/b.yml', 'readSideId: b\nhost: b\nport: 2\n');
    file('conf/a.yaml', 'readSideId: a\nhost: a\nport: 1\n---\nreadSideId: a2\nhost: a\nport: 3\n');
    file('conf/notes.txt', 'readSideId: ignored');
    mkdirSync(join(dir, 'conf', 'sub.yaml'));
    const { config } = load({ COS_READ_SIDE_CONFIG: 'conf' }, dir);
    expect(config.readSide.readSides.map((s) => [s.readSideId, s.port])).toEqual([
      ['a', 1],
      ['a2', 3],
      ['b', 2],
    ]);
  });

  it('merges the three sources', () => {
    const path = file('rs.yaml', 'readSideId: fromYaml\nhost: y\nport: 2\n');
    const { config } = load({
      ...ON,
      READ_SIDE_HANDLER_SERVICE_HOST: 'd',
      READ_SIDE_HANDLER_SERVICE_PORT: '1',
      COS_READ_SIDE_CONFIG: path,
      COS_READ_SIDE_CONFIG__HOST__fromEnv: 'e',
      COS_READ_SIDE_CONFIG__PORT__fromEnv: '3',
    });
    expect(config.readSide.readSides.map((s) => s.readSideId)).toEqual(['default', 'fromYaml', 'fromEnv']);
  });

  it('names file and document for bad values, unknown keys and missing fields', () => {
    const path = file(
      'rs.yaml',
      [
        'readSideId: a',
        'host: a',
        'port: abc',
        '---',
        'readSideId: b',
        'port: 2',
        '---',
        'readSideId: c',
        'host: c',
        'port: 3',
        'retries: 5',
        'failurePolicy: RETRY',
        '---',
        'host: d',
        'port: 4',
        '---',
        '- not a mapping',
        '---',
        'readSideId: e',
        'host: [e1, e2]',
        'port: 5',
      ].join('\n'),
    );
    expect(problemsOf({ ...ON, COS_READ_SIDE_CONFIG: path })).toEqual([
      `COS_READ_SIDE_CONFIG file ${path} document 1: port="abc": expected an integer port 1..65535`,
      `COS_READ_SIDE_CONFIG file ${path} document 3: unknown key "retries": expected only readSideId, host, port, protocol, useTls, tlsCaFile, tlsCertFile, tlsKeyFile, tlsServerName, timeout, autoStart, enabled, failurePolicy`,
      `COS_READ_SIDE_CONFIG file ${path} document 3: failurePolicy="RETRY": expected one of STOP, SKIP, REPLAY_STOP, REPLAY_SKIP`,
      `COS_READ_SIDE_CONFIG file ${path} document 4: readSideId is missing: expected a read side id: 1..255 characters, no spaces or control characters`,
      `COS_READ_SIDE_CONFIG file ${path} document 5: expected a mapping with keys readSideId, host, port, protocol, useTls, tlsCaFile, tlsCertFile, tlsKeyFile, tlsServerName, timeout, autoStart, enabled, failurePolicy`,
      `COS_READ_SIDE_CONFIG file ${path} document 6: host must be a single value, not a list or mapping`,
      `COS_READ_SIDE_CONFIG file ${path} document 2 (read side "b"): host is missing: expected a host name or IP address, without scheme or port`,
    ]);
  });

  it('reports invalid YAML with its location', () => {
    const path = file('bad.yaml', 'readSideId: a\nhost: a\nport: 1\n---\nreadSideId: b\n  host: [unclosed\n');
    const problems = problemsOf({ ...ON, COS_READ_SIDE_CONFIG: path });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      new RegExp(`^COS_READ_SIDE_CONFIG file ${path.replaceAll('/', '\\/')} document 2: expected valid YAML \\(.+line \\d+`),
    );
  });

  it('reports duplicate ids within and across files', () => {
    const a = file('conf/a.yaml', 'readSideId: x\nhost: a\nport: 1\n---\nreadSideId: x\nhost: b\nport: 2\n');
    const b = file('conf/b.yaml', 'readSideId: y\nhost: a\nport: 1\n');
    expect(
      problemsOf({
        ...ON,
        COS_READ_SIDE_CONFIG: join(dir, 'conf'),
        COS_READ_SIDE_CONFIG__HOST__y: 'h',
        COS_READ_SIDE_CONFIG__PORT__y: '3',
      }),
    ).toEqual([
      `read side "x" is defined twice: by COS_READ_SIDE_CONFIG file ${a} document 1 and by COS_READ_SIDE_CONFIG file ${a} document 2; expected unique read side ids`,
      `read side "y" is defined twice: by COS_READ_SIDE_CONFIG file ${b} document 1 and by COS_READ_SIDE_CONFIG__*__y; expected unique read side ids`,
    ]);
  });

  it('reports a missing path', () => {
    const [problem] = problemsOf({ ...ON, COS_READ_SIDE_CONFIG: 'nowhere.yaml' }, dir);
    expect(problem).toMatch(/^COS_READ_SIDE_CONFIG="nowhere.yaml": expected a readable YAML file or directory \(ENOENT/);
  });

  it('warns about a directory or file without read sides', () => {
    mkdirSync(join(dir, 'empty'));
    file('blank.yaml', '# nothing here\n');
    expect(load({ COS_READ_SIDE_CONFIG: join(dir, 'empty') }).warnings).toEqual([
      `COS_READ_SIDE_CONFIG: directory ${join(dir, 'empty')} holds no .yaml or .yml file`,
    ]);
    expect(load({ COS_READ_SIDE_CONFIG: join(dir, 'blank.yaml') }).warnings).toEqual([
      `COS_READ_SIDE_CONFIG file ${join(dir, 'blank.yaml')} holds no read side`,
    ]);
  });
});

describe('with COS_READ_SIDE_ENABLED off', () => {
  it('parses read sides but reports their problems as warnings', () => {
    const path = file('rs.yaml', 'readSideId: ok\nhost: ok\nport: 1\n---\nreadSideId: bad\nhost: b\nport: x\n');
    const { config, warnings } = load({ COS_READ_SIDE_CONFIG: path });
    expect(config.readSide).toEqual({ enabled: false, breaker: undefined, readSides: [side('ok', 'ok', 1)] });
    expect(warnings).toEqual([
      `read sides are off (COS_READ_SIDE_ENABLED=false); ignored: COS_READ_SIDE_CONFIG file ${path} document 2: port="x": expected an integer port 1..65535`,
    ]);
  });

  it('needs no read side', () => {
    expect(load({}).config.readSide).toEqual({ enabled: false, readSides: [], breaker: undefined });
  });
});

describe('with COS_READ_SIDE_ENABLED on', () => {
  it('needs at least one read side, but does not repeat that when a read side was invalid', () => {
    expect(problemsOf({ ...ON, COS_READ_SIDE_CONFIG__HOST__a: 'h' })).toEqual([
      'read side "a" has no port: expected COS_READ_SIDE_CONFIG__PORT__a to be set',
    ]);
  });

  it('warns when every read side is disabled', () => {
    const { warnings } = load({
      ...ON,
      COS_READ_SIDE_CONFIG__HOST__a: 'h',
      COS_READ_SIDE_CONFIG__PORT__a: '1',
      COS_READ_SIDE_CONFIG__ENABLED__a: 'false',
    });
    expect(warnings).toEqual(['COS_READ_SIDE_ENABLED=true but every configured read side has enabled=false']);
  });
});
