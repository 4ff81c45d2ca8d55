import { createCircuitBreaker, type CircuitBreaker } from '@chiefofstate/circuit-breaker';
import type { CosConfig } from '@chiefofstate/config';
import { createWriteSideClient, keepaliveOf, type HandlerClientOptions, type WriteSideClient } from '@chiefofstate/handler-client';
import type { Logger } from '@chiefofstate/logging';

export interface WriteHandler {
  readonly client: WriteSideClient;
  /** COS_WRITE_SIDE_BREAKER_*: undefined when off */
  readonly breaker: CircuitBreaker | undefined;
}

/**
 * The client of the user's write handler as configured: gRPC (COS_GRPC_CLIENT_POOL_SIZE
 * connections, COS_GRPC_KEEPALIVE_*) or HTTP (COS_WRITE_SIDE_PROTOCOL=http), TLS, the call
 * timeout, and the circuit breaker, whose changes are logged.
 */
export function createWriteHandler(
  config: Pick<CosConfig, 'writeSide' | 'timeouts' | 'server' | 'keepalive'>,
  logger: Logger,
  extra: Pick<HandlerClientOptions, 'tls' | 'onTlsFailure' | 'interceptors' | 'fastTransport'>,
): WriteHandler {
  const { writeSide } = config;
  const breaker = writeSide.breaker
    ? createCircuitBreaker({
        name: `write handler ${writeSide.host}:${writeSide.port}`,
        publicMessage: 'write handler unavailable (circuit breaker open)',
        ...writeSide.breaker,
        onStateChange: (state, previous) => {
          const fields = { state, previous, writeSide: `${writeSide.host}:${writeSide.port}` };
          if (state === 'open') logger.warn(fields, 'write handler circuit breaker open: commands fail at once with UNAVAILABLE');
          else logger.info(fields, `write handler circuit breaker ${state}`);
        },
      })
    : undefined;
  const keepalive = keepaliveOf(config.keepalive);
  const client = createWriteSideClient({
    host: writeSide.host,
    port: writeSide.port,
    protocol: writeSide.protocol,
    connections: writeSide.poolSize,
    ...(keepalive ? { keepalive } : {}),
    ...(breaker ? { breaker } : {}),
    useTls: writeSide.useTls,
    ...extra,
    timeoutMs: config.timeouts.handlerCallMs,
    maxMessageBytes: config.server.maxMessageBytes,
  });
  return { client, breaker };
}
