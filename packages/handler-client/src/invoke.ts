import { DeadlineExceededError, HandlerUnavailableError } from '@chiefofstate/core';
import type { HandlerCallOptions } from './transport.js';
import { translateHandlerError } from './translate-error.js';

export interface ConnectCallOptions {
  headers?: Headers | Record<string, string>;
  signal?: AbortSignal;
  timeoutMs: number;
}

/**
 * Runs one unary call with the effective deadline and translates its failure. Shared by the
 * write and read side clients.
 */
export function createInvoker(
  target: string,
  defaultTimeoutMs: number,
  isClosed: () => boolean,
): <T>(method: string, call: HandlerCallOptions | undefined, run: (options: ConnectCallOptions) => Promise<T>) => Promise<T> {
  return async (method, call, run) => {
    const timeoutMs =
      call?.timeoutMs === undefined ? defaultTimeoutMs : Math.min(defaultTimeoutMs, Math.floor(call.timeoutMs));
    if (isClosed()) throw new HandlerUnavailableError(`${target} ${method}: client closed`);
    if (call?.signal?.aborted) throw call.signal.reason;
    if (timeoutMs <= 0) throw new DeadlineExceededError(`${target} ${method}: no time left for the call`);
    const startedAt = performance.now();
    try {
      return await run({ headers: call?.headers, signal: call?.signal, timeoutMs });
    } catch (error) {
      throw translateHandlerError(error, {
        description: `${target} ${method}`,
        timeoutMs,
        startedAt,
        signal: call?.signal,
      });
    }
  };
}
