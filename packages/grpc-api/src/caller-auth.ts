import { createContextKey, type ContextKey, type Interceptor } from '@connectrpc/connect';
import { PermissionDeniedError, UnauthenticatedError } from '@chiefofstate/core';
import { ChiefOfStateService, FORWARDED_BY_HEADER, ReadSideManagerService } from '@chiefofstate/protocol';
import { bearerToken, watchTokenFile, type TokenSet, type WatchedFiles } from '@chiefofstate/tls';
import { toConnectError } from './status.js';

/** The connection a call came over, as far as caller authentication cares. */
export interface CallPeer {
  readonly remoteAddress: string | undefined;
  /** names (CN, DNS, URI) of the client certificate verified against the client CA; empty without one */
  readonly identities: readonly string[];
}

/** Set by the server for every call when caller authentication is on. */
export const callPeer: ContextKey<CallPeer | undefined> = createContextKey<CallPeer | undefined>(undefined, {
  description: 'the connection of the call',
});

/** What opens one service: bearer tokens and/or client-certificate names; neither: nobody. */
export interface ServiceCredentials {
  /** file of bearer tokens, one per line, re-read when it changes */
  readonly tokensFile?: string | undefined;
  /** client-certificate identities accepted (needs a verified client certificate) */
  readonly clientNames?: readonly string[];
}

export interface CallerAuthOptions {
  /** ChiefOfStateService (COS_AUTH_*); undefined: open */
  readonly api?: ServiceCredentials | undefined;
  /** ReadSideManagerService (COS_ADMIN_*); undefined: open; without any credential: refuses everyone */
  readonly admin?: ServiceCredentials | undefined;
  /** COS_CLUSTER_PEER_NAMES: a forwarded call needs a verified client certificate with one of these */
  readonly peerNames?: readonly string[];
  /**
   * true when forwarded calls go to a router that checks their proof (a clustered cos-server):
   * they then skip the caller credential check (the first replica checked the caller). Else the
   * forwarding mark is ignored here and the call needs a credential like any other.
   */
  readonly forwardingChecked: boolean;
  /** how often token files are read again, ms; 0 never */
  readonly reloadIntervalMs?: number;
  /** a call refused (never given the credential itself) */
  readonly onRefused?: (refusal: CallRefusal) => void;
  /** a token file changed but cannot be used; the previous tokens stay */
  readonly onReloadError?: (error: unknown, file: string) => void;
}

export interface CallRefusal {
  readonly method: string;
  readonly code: 'unauthenticated' | 'permission_denied';
  readonly reason: string;
  readonly remoteAddress: string | undefined;
}

/** What the decision looks at: service, credentials presented, the connection's verified names. */
export interface CallCredentials {
  readonly service: string;
  /** the `authorization` request header, as sent */
  readonly authorization: string | null;
  /** the call carries the forwarding mark (x-cos-forwarded-by) */
  readonly forwarded: boolean;
  readonly identities: readonly string[];
}

/** What each protected service accepts, as the decision reads it. */
export interface AccessRules {
  /** by service type name; a service not listed is open (grpc.health.v1.Health) */
  readonly services: ReadonlyMap<string, ServiceAccess>;
  /** the service whose calls may carry the forwarding mark */
  readonly forwardingService: string;
  readonly forwardingChecked: boolean;
  readonly peerNames: ReadonlySet<string>;
}

export interface ServiceAccess {
  readonly tokens: () => TokenSet | undefined;
  readonly clientNames: ReadonlySet<string>;
}

export type AuthVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: 'unauthenticated' | 'permission_denied'; readonly reason: string };

const ALLOWED: AuthVerdict = { ok: true };

/**
 * Whether a call may go on. No credential, an unknown token or no verified certificate:
 * unauthenticated. A credential that is valid but not for this service (an API token on the
 * admin service, a verified certificate whose names are not listed): permission denied. A
 * service configured with no credential at all refuses everyone (permission denied).
 */
export function decideCall(rules: AccessRules, call: CallCredentials): AuthVerdict {
  const isForwarded = call.forwarded && call.service === rules.forwardingService;
  if (isForwarded && rules.peerNames.size > 0 && !call.identities.some((name) => rules.peerNames.has(name))) {
    return {
      ok: false,
      code: 'unauthenticated',
      reason: call.identities.length === 0 ? 'forwarded call without a verified peer certificate' : 'forwarded call from a certificate not in COS_CLUSTER_PEER_NAMES',
    };
  }
  const access = rules.services.get(call.service);
  if (access === undefined) return ALLOWED;
  // the router checks the forwarding proof; the first replica checked the caller
  if (isForwarded && rules.forwardingChecked) return ALLOWED;
  const token = call.authorization === null ? undefined : bearerToken(call.authorization);
  if (token !== undefined && access.tokens()?.accepts(token) === true) return ALLOWED;
  if (call.identities.some((name) => access.clientNames.has(name))) return ALLOWED;

  if (access.tokens() === undefined && access.clientNames.size === 0) {
    return { ok: false, code: 'permission_denied', reason: 'no credential is configured for this service' };
  }
  if (token !== undefined) {
    for (const [service, other] of rules.services) {
      if (service !== call.service && other.tokens()?.accepts(token) === true) {
        return { ok: false, code: 'permission_denied', reason: 'the token is not one of this service' };
      }
    }
  }
  if (call.identities.length > 0) {
    return { ok: false, code: 'permission_denied', reason: 'the client certificate names none of the accepted clients' };
  }
  if (token !== undefined) return { ok: false, code: 'unauthenticated', reason: 'unknown bearer token' };
  if (call.authorization !== null) return { ok: false, code: 'unauthenticated', reason: 'the authorization header is not a bearer token' };
  return { ok: false, code: 'unauthenticated', reason: 'no credential' };
}

export interface CallerAuth {
  /** refuses calls (UNAUTHENTICATED, PERMISSION_DENIED) before they reach the services */
  readonly interceptor: Interceptor;
  /** stops re-reading token files */
  close(): void;
}

/**
 * Caller authentication on ChiefOfStateService and ReadSideManagerService, as an interceptor run
 * on every path (the unary gRPC path and the Connect adapter), reading the verified client
 * certificate from `callPeer`. Token files are read at once (a broken one is a ConfigError) and
 * re-read while they change.
 */
export function createCallerAuth(options: CallerAuthOptions): CallerAuth {
  const watched: WatchedFiles<TokenSet>[] = [];
  const accessOf = (credentials: ServiceCredentials): ServiceAccess => {
    const file =
      credentials.tokensFile === undefined
        ? undefined
        : watchTokenFile({
            path: credentials.tokensFile,
            ...(options.reloadIntervalMs !== undefined ? { intervalMs: options.reloadIntervalMs } : {}),
            onError: (error) => options.onReloadError?.(error, credentials.tokensFile!),
          });
    if (file) watched.push(file);
    return { tokens: () => file?.current(), clientNames: new Set(credentials.clientNames ?? []) };
  };
  const services = new Map<string, ServiceAccess>();
  try {
    if (options.api) services.set(ChiefOfStateService.typeName, accessOf(options.api));
    if (options.admin) services.set(ReadSideManagerService.typeName, accessOf(options.admin));
  } catch (error) {
    for (const file of watched) file.close();
    throw error;
  }
  const rules: AccessRules = {
    services,
    forwardingService: ChiefOfStateService.typeName,
    forwardingChecked: options.forwardingChecked,
    peerNames: new Set(options.peerNames ?? []),
  };

  const interceptor: Interceptor = (next) => (request) => {
    const peer = request.contextValues.get(callPeer);
    const verdict = decideCall(rules, {
      service: request.service.typeName,
      authorization: request.header.get('authorization'),
      forwarded: request.header.has(FORWARDED_BY_HEADER),
      identities: peer?.identities ?? [],
    });
    if (verdict.ok) return next(request);
    const method = `/${request.service.typeName}/${request.method.name}`;
    options.onRefused?.({ method, code: verdict.code, reason: verdict.reason, remoteAddress: peer?.remoteAddress });
    const error =
      verdict.code === 'unauthenticated'
        ? new UnauthenticatedError(`unauthenticated: ${verdict.reason}`)
        : new PermissionDeniedError(`permission denied: ${verdict.reason}`);
    return Promise.reject(toConnectError(error));
  };
  return {
    interceptor,
    close: () => {
      for (const file of watched) file.close();
    },
  };
}
