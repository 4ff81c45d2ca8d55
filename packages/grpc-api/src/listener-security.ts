import type { CallerAuthOptions, ServiceCredentials } from './caller-auth.js';
import type { ListenerTlsOptions } from './listener-tls.js';

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
