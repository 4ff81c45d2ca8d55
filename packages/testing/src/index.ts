export {
  createGrpcJsClient,
  grpcJsServiceDefinition,
  startGrpcJsServer,
  GrpcJsStatusError,
  type GrpcJsCallOptions,
  type GrpcJsClient,
  type GrpcJsClientOptions,
  type GrpcJsServer,
  type GrpcJsUnaryHandler,
  type GrpcJsUnaryResult,
} from './grpc-js.js';
export { decodeRpcStatus, encodeRpcStatus, type RpcStatus } from './rpc-status.js';
export { freePort, startProcess, type RunningProcess } from './processes.js';
export {
  startOtlpReceiver,
  spanAttribute,
  type OtlpExportRequest,
  type OtlpKeyValue,
  type OtlpReceiver,
  type OtlpSpan,
} from './otlp-receiver.js';
export { startTestGrpcServer, type TestGrpcServer } from './connect-server.js';
export { eventPayload } from './event-payload.js';
export {
  findPostgresBinDir,
  startOwnPostgres,
  type OwnPostgres,
  type OwnPostgresOptions,
  type OwnPostgresTls,
  type TerminateFilter,
} from './own-postgres.js';
export { startOwnTlsPostgres, type OwnTlsPostgres, type OwnTlsPostgresOptions } from './own-tls-postgres.js';
export { pollUntil, timed } from './timing.js';
export { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
export { createTestPki, type IssuedCertificate, type IssueOptions, type TestPki } from './test-pki.js';
