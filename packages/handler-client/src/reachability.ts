import { connect } from 'node:net';

export interface ReachabilityProbeOptions {
  readonly host: string;
  readonly port: number;
  /** how long one connection attempt may take; default 1000 ms */
  readonly timeoutMs?: number;
  /** answers are reused this long, so frequent readiness checks cost one connect; default 2000 ms */
  readonly cacheMs?: number;
}

/**
 * Whether a handler accepts TCP connections, for readiness checks. It says nothing about the
 * handler's health beyond that; calls report their own errors.
 */
export function createReachabilityProbe(options: ReachabilityProbeOptions): () => Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 1000;
  const cacheMs = options.cacheMs ?? 2000;
  let last: { at: number; answer: Promise<boolean> } | undefined;
  const attempt = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host: options.host, port: options.port });
      const done = (ok: boolean) => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(timeoutMs, () => done(false));
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
    });
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= cacheMs) last = { at: now, answer: attempt() };
    return last.answer;
  };
}
