import { createContextValues, type ContextValues } from '@connectrpc/connect';
import type { Logger } from '@chiefofstate/core';
import { callPeer, createCallerAuth, type CallerAuth, type CallerAuthOptions, type ServiceCredentials } from './caller-auth.js';
import { createListenerTls, peerOf, type ListenerTls, type ListenerTlsOptions } from './listener-tls.js';
import { createRefusalLog } from './refusal-log.js';
import type { HttpRequest } from './unary-call.js';

/** The settings both binaries read (the `security` section of @chiefofstate/config fits). */
export interface ListenerSecuritySettings {
  readonly reloadIntervalMs: number;
  readonly tls: Omit<ListenerTlsOptions, 'reloadIntervalMs' | 'onReload' | 'onReloadError'> | undefined;
  readonly auth: {
    readonly api: ServiceCredentials | undefined;
    readonly admin: ServiceCredentials | undefined;
    readonly peerNames: readonly string[];
  };
}

/**
 * startGrpcServer's `tls` and `callerAuth` from the settings: nothing at all when none is set,
 * so the default server is the cleartext one with no interceptor added.
 */
export function listenerSecurityOptions(
  settings: ListenerSecuritySettings,
  forwardingChecked: boolean,
): { tls?: ListenerTlsOptions; callerAuth?: CallerAuthOptions } {
  const { reloadIntervalMs, tls, auth } = settings;
  const authOn = auth.api !== undefined || auth.admin !== undefined || auth.peerNames.length > 0;
  return {
    ...(tls ? { tls: { ...tls, reloadIntervalMs } } : {}),
    ...(authOn ? { callerAuth: { ...auth, forwardingChecked, reloadIntervalMs } } : {}),
  };
}

/** What a listener's security options open: TLS files watched, token files watched. */
export interface OpenedSecurity {
  readonly tls?: ListenerTls;
  readonly auth?: CallerAuth;
  /** the connection's verified names for the caller check; undefined when it is off */
  readonly contextValues?: (request: HttpRequest) => ContextValues;
  close(): void;
}

/** The listener's TLS files and the callers' token files, read now (a broken one is a ConfigError). */
export function openSecurity(
  options: { tls?: ListenerTlsOptions | undefined; callerAuth?: CallerAuthOptions | undefined },
  logger: Logger | undefined,
): OpenedSecurity {
  const tls =
    options.tls &&
    createListenerTls({
      onReloadError: (error) => logger?.warn({ err: error }, 'changed TLS files cannot be used; the previous ones stay in use'),
      onReload: () => logger?.debug({}, 'TLS files re-read; new connections get them'),
      ...options.tls,
    });
  try {
    const auth =
      options.callerAuth &&
      createCallerAuth({
        // at most a line a minute per kind: a caller retrying with a wrong token must not flood the log
        onRefused: createRefusalLog((refusal) => logger?.warn({ ...refusal }, 'call refused')),
        onReloadError: (error, file) => logger?.warn({ err: error, file }, 'changed token file cannot be used; the previous tokens stay in use'),
        ...options.callerAuth,
      });
    return {
      ...(tls ? { tls } : {}),
      ...(auth ? { auth, contextValues: withPeer } : {}),
      close() {
        tls?.close();
        auth?.close();
      },
    };
  } catch (error) {
    tls?.close();
    throw error;
  }
}

function withPeer(request: HttpRequest): ContextValues {
  return createContextValues().set(callPeer, peerOf(request));
}
