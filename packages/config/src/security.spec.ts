import { describe, expect, it } from 'vitest';
import { load, problemsOf } from './test-support/load.js';

const TLS = { COS_TLS_CERT_FILE: '/tls/tls.crt', COS_TLS_KEY_FILE: '/tls/tls.key' };
const MTLS = { ...TLS, COS_TLS_CLIENT_CA_FILE: '/tls/ca.crt' };

describe('listener TLS and caller authentication settings', () => {
  it('asks for client certificates when a client CA is set, by default', () => {
    expect(load(MTLS).config.security.tls).toEqual({ certFile: '/tls/tls.crt', keyFile: '/tls/tls.key', clientCaFile: '/tls/ca.crt', clientAuth: 'required' });
    expect(load(TLS).config.security.tls?.clientCaFile).toBeUndefined();
  });

  it('refuses half a TLS setting and certificate names that cannot be verified', () => {
    expect(problemsOf({ COS_TLS_CERT_FILE: '/tls/tls.crt' })).toEqual([
      'COS_TLS_CERT_FILE is set but COS_TLS_KEY_FILE is not: TLS needs both the certificate and its key',
    ]);
    expect(problemsOf({ COS_TLS_KEY_FILE: '/tls/tls.key' })).toEqual([
      'COS_TLS_KEY_FILE is set but COS_TLS_CERT_FILE is not: TLS needs both the certificate and its key',
    ]);
    expect(problemsOf({ COS_TLS_CLIENT_CA_FILE: '/tls/ca.crt' })).toEqual([
      'COS_TLS_CLIENT_CA_FILE is set but COS_TLS_CERT_FILE is not: client certificates are asked for over TLS only',
    ]);
    expect(problemsOf({ ...TLS, COS_TLS_CLIENT_AUTH: 'optional' })).toEqual([
      'COS_TLS_CLIENT_AUTH is set but COS_TLS_CLIENT_CA_FILE is not: client certificates need a CA to be verified against',
    ]);
    expect(problemsOf({ ...MTLS, COS_TLS_CLIENT_AUTH: 'sometimes' })).toEqual([
      'COS_TLS_CLIENT_AUTH="sometimes": expected required or optional',
    ]);
    expect(problemsOf({ ...TLS, COS_AUTH_CLIENT_NAMES: 'app', COS_ADMIN_CLIENT_NAMES: 'ops', COS_CLUSTER_PEER_NAMES: 'cos' })).toEqual(
      ['COS_AUTH_CLIENT_NAMES', 'COS_ADMIN_CLIENT_NAMES', 'COS_CLUSTER_PEER_NAMES'].map(
        (name) => `${name} is set but COS_TLS_CLIENT_CA_FILE is not: client certificates are only verified with a client CA`,
      ),
    );
    expect(problemsOf({ ...MTLS, COS_AUTH_CLIENT_NAMES: 'app, has space' })).toEqual([
      'COS_AUTH_CLIENT_NAMES="app, has space": expected comma-separated certificate names (a CN, DNS name or URI such as spiffe://...) ("has space" is not one)',
    ]);
    expect(problemsOf({ COS_TLS_RELOAD_INTERVAL: '-1' })).toEqual([
      'COS_TLS_RELOAD_INTERVAL="-1": expected a number of seconds >= 0, 0 for never (at most 2147483)',
    ]);
  });

  it('turns caller authentication on with any credential; the admin service then needs its own', () => {
    const apiOnly = load({ ...TLS, COS_AUTH_TOKENS_FILE: '/auth/tokens', COS_READ_SIDE_ENABLED: 'true', READ_SIDE_HANDLER_SERVICE_HOST: 'rs', READ_SIDE_HANDLER_SERVICE_PORT: '50052' });
    expect(apiOnly.config.security.auth.admin).toEqual({ tokensFile: undefined, clientNames: [] });
    expect(apiOnly.warnings).toContain(
      'caller authentication is on and neither COS_ADMIN_TOKENS_FILE nor COS_ADMIN_CLIENT_NAMES is set: ReadSideManagerService refuses every call',
    );
    // only the admin service guarded: the API stays open
    expect(load({ ...TLS, COS_ADMIN_TOKENS_FILE: '/auth/admin' }).config.security.auth.api).toBeUndefined();
    expect(load({ COS_AUTH_TOKENS_FILE: '/auth/tokens' }).warnings).toContain(
      'bearer tokens are checked but COS_TLS_CERT_FILE is unset: tokens travel in cleartext',
    );
  });

  it('binds the operations port to COS_ADDRESS unless COS_METRICS_ADDRESS says otherwise', () => {
    expect(load({ COS_ADDRESS: '127.0.0.1' }).config.telemetry.metricsAddress).toBe('127.0.0.1');
    expect(load({ COS_ADDRESS: '127.0.0.1', COS_METRICS_ADDRESS: '0.0.0.0' }).config.telemetry.metricsAddress).toBe('0.0.0.0');
    expect(problemsOf({ COS_METRICS_ADDRESS: 'http://x' })).toEqual([
      'COS_METRICS_ADDRESS="http://x": expected a host name or IP address, without scheme or port',
    ]);
  });
});
