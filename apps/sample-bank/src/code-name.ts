import { Code } from '@connectrpc/connect';

/** Code.FailedPrecondition -> "FAILED_PRECONDITION", the name gRPC tools print. */
export function grpcCodeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}
