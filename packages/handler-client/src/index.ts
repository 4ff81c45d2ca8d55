export {
  createWriteSideClient,
  type WriteSideClient,
  type WriteSideClientOptions,
} from './write-side-client.js';
export { createReadSideClient, type ReadSideClient, type ReadSideClientOptions } from './read-side-client.js';
export {
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_TIMEOUT_MS,
  keepaliveOf,
  type CallBreaker,
  type HandlerCallOptions,
  type HandlerClientOptions,
  type KeepaliveSettings,
} from './transport.js';
export { translateHandlerError, type FailedCall } from './translate-error.js';
export { decodeRpcStatus, type RawRpcStatus, type RawStatusDetail } from './rpc-status.js';
export { createReachabilityProbe, type ReachabilityProbeOptions } from './reachability.js';
export { createPeerClients, type PeerClients, type PeerClientsOptions } from './peer-client.js';
export {
  watchClientTls,
  watchClientTlsLogged,
  type ClientTls,
  type ClientTlsFiles,
  type ClientTlsSummary,
  type LoggedClientTlsOptions,
  type WatchClientTlsOptions,
} from './client-tls.js';
export type { ClientTlsOptions, KeepaliveOptions } from './grpc-transport.js';
export { isTlsFailure } from './tls-failure.js';
export { checkHealth, type HealthCheckOptions, type HealthCheckResult } from './health-check.js';
