// Also the package's `./health-check` entry: the probe loads only what one call needs (not the
// whole protocol, tracing or Connect's node transport unless asked for), which halves its start-up.
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '@chiefofstate/protocol/health';
import { createGrpcTransport } from './grpc-transport.js';
import { rootMessage } from './translate-error.js';

export interface HealthCheckOptions {
  readonly host: string;
  readonly port: number;
  /** the service asked about; '' (default) is the server as a whole */
  readonly service?: string;
  /** default 3000 */
  readonly timeoutMs?: number;
  /** healthy when the server answers UNIMPLEMENTED: it is up and speaks gRPC, without grpc.health.v1 */
  readonly acceptUnimplemented?: boolean;
  /** false: Connect's own gRPC transport instead of the fast one (COS_GRPC_CLIENT_FAST_PATH) */
  readonly fastTransport?: boolean;
}

export interface HealthCheckResult {
  readonly healthy: boolean;
  /** one line, for logs */
  readonly detail: string;
  /** the call's gRPC code (from the HTTP status when the server sent none) */
  readonly grpcStatus?: number;
  readonly servingStatus?: number;
}

/**
 * One grpc.health.v1.Health/Check over cleartext HTTP/2 with this package's transport: what the
 * images' HEALTHCHECK (docker/healthcheck.mjs) runs. Never throws: a refused connection, no
 * answer within `timeoutMs`, or an answer that is not gRPC is unhealthy, with the reason.
 */
export async function checkHealth(options: HealthCheckOptions): Promise<HealthCheckResult> {
  const { host, port, service = '', timeoutMs = 3000, acceptUnimplemented = false } = options;
  const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const create = options.fastTransport === false ? (await import('./connect-transport.js')).createConnectTransport : createGrpcTransport;
  const transport = create({ baseUrl, maxMessageBytes: 64 * 1024 });
  try {
    const response = await createClient(Health, transport).check({ service }, { timeoutMs });
    const name = ServingStatus[response.status] ?? `status ${response.status}`;
    return {
      healthy: response.status === ServingStatus.SERVING,
      grpcStatus: 0,
      servingStatus: response.status,
      detail: `${service === '' ? 'server' : service} is ${name}`,
    };
  } catch (thrown) {
    const error = ConnectError.from(thrown);
    const answered = error.metadata.get('grpc-status') !== null;
    if (error.code === Code.DeadlineExceeded && !answered) {
      return { healthy: false, detail: `no answer from ${baseUrl} within ${timeoutMs} ms` };
    }
    // a server routing by path answers HTTP 404 for a service it lacks: UNIMPLEMENTED as well
    if (error.code === Code.Unimplemented && acceptUnimplemented) {
      return { healthy: true, grpcStatus: error.code, detail: `${baseUrl} answers gRPC (grpc.health.v1 not implemented)` };
    }
    if (answered) {
      return { healthy: false, grpcStatus: error.code, detail: `grpc-status ${error.code}: ${error.rawMessage}` };
    }
    return { healthy: false, grpcStatus: error.code, detail: `no gRPC answer from ${baseUrl}: ${rootMessage(error)}` };
  } finally {
    transport.close();
  }
}
