import type { ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Health} from '@chiefofstate/protocol';
import { HealthCheckResponse_ServingStatus as ServingStatus } from '@chiefofstate/protocol';

export { ServingStatus };

/**
 * Serving status per service name, for grpc.health.v1. The empty name is the server as a
 * whole, which Kubernetes gRPC probes ask about.
 */
export interface HealthStatus {
  set(service: string, status: ServingStatus): void;
  get(service: string): ServingStatus | undefined;
  /** sets every registered service (and the server) at once, e.g. NOT_SERVING on shutdown */
  setAll(status: ServingStatus): void;
}

export interface HealthServiceOptions {
  /** services known from the start, NOT_SERVING until set */
  readonly services?: readonly string[];
}

export function createHealthStatus(options: HealthServiceOptions = {}): HealthStatus & {
  readonly service: ServiceImpl<typeof Health>;
} {
  const statuses = new Map<string, ServingStatus>([['', ServingStatus.NOT_SERVING]]);
  for (const name of options.services ?? []) statuses.set(name, ServingStatus.NOT_SERVING);
  const watchers = new Set<() => void>();
  const changed = () => {
    for (const wake of [...watchers]) wake();
  };

  const service: ServiceImpl<typeof Health> = {
    check(request) {
      const status = statuses.get(request.service);
      if (status === undefined) throw new ConnectError(`unknown service ${request.service}`, Code.NotFound);
      return { status };
    },
    list() {
      return {
        statuses: Object.fromEntries([...statuses].map(([name, status]) => [name, { status }])),
      };
    },
    async *watch(request, context) {
      let last: ServingStatus | undefined;
      while (!context.signal.aborted) {
        const status = statuses.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
        }
        await new Promise<void>((resolve) => {
          const wake = () => {
            watchers.delete(wake);
            context.signal.removeEventListener('abort', wake);
            resolve();
          };
          watchers.add(wake);
          context.signal.addEventListener('abort', wake);
        });
      }
    },
  };

  return {
    service,
    set(name, status) {
      statuses.set(name, status);
      changed();
    },
    get: (name) => statuses.get(name),
    setAll(status) {
      for (const name of statuses.keys()) statuses.set(name, status);
      changed();
    },
  };
}
