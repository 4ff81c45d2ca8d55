export {
  toConnectError,
  isExpectedFailure,
  logCallFailure,
  errorIdOf,
  failCall,
  internalErrorMessage,
} from './status.js';
export { propagatedHeaders, persistedHeaders, type HeaderRules } from './request-headers.js';
export {
  createChiefOfStateService,
  type ChiefOfStateServiceOptions,
  type CommandProcessor,
} from './chief-of-state-service.js';
export {
  createSubscriptionMethods,
  type SubscribedEventLike,
  type SubscriptionLike,
  type SubscriptionMethod,
  type SubscriptionPort,
} from './subscription-methods.js';
export { createHealthStatus, ServingStatus, type HealthStatus, type HealthServiceOptions } from './health-service.js';
export { startGrpcServer, type GrpcServer, type GrpcServerOptions } from './grpc-server.js';
export {
  createReadSideManagerService,
  type ReadSideManagerPort,
  type ReadSideManagerServiceOptions,
} from './read-side-manager-service.js';
export {
  callTraceContext,
  createServerTracingInterceptor,
  type ServerTracingOptions,
} from './server-tracing.js';
export {
  callPeer,
  createCallerAuth,
  decideCall,
  type AccessRules,
  type AuthVerdict,
  type CallCredentials,
  type CallPeer,
  type CallRefusal,
  type CallerAuth,
  type CallerAuthOptions,
  type ServiceAccess,
  type ServiceCredentials,
} from './caller-auth.js';
export { createListenerTls, peerOf, type ListenerTls, type ListenerTlsOptions } from './listener-tls.js';
export { listenerSecurityOptions, type ListenerSecuritySettings } from './listener-security.js';
export { startHttpFrontEnd, type HttpFrontEnd, type HttpFrontEndOptions } from './http-front-end.js';
export { httpOpenApiDocument } from './openapi.js';
export { httpStatusOf } from './status.js';
export { createReflectionService, registerReflection, type ReflectionOptions } from './reflection-service.js';
