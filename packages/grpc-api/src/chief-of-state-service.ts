import type { Context } from '@opentelemetry/api';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { DeadlineExceededError, type EntityState, type GetStateOptions, type IncomingCommandRequest } from '@chiefofstate/core';
import type { ChiefOfStateService} from '@chiefofstate/protocol';
import { FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER } from '@chiefofstate/protocol';
import { persistedHeaders, propagatedHeaders, type HeaderRules } from './request-headers.js';
import { retryHeaders } from './retry-headers.js';
import { callTraceContext } from './server-tracing.js';
import { failCall } from './status.js';
import { createSubscriptionMethods, type SubscriptionMethod, type SubscriptionPort } from './subscription-methods.js';

/** What the service needs of the entity runtime (satisfied by @chiefofstate/entity). */
export interface CommandProcessor {
  /** the forwarding mark, as the caller claims it, and the retry headers are for the processor to check */
  processCommand(request: IncomingCommandRequest): Promise<EntityState>;
  getState(entityId: string, options?: GetStateOptions): Promise<EntityState>;
}

export interface ChiefOfStateServiceOptions {
  readonly processor: CommandProcessor;
  readonly headers: HeaderRules;
  /** most time one ProcessCommand may take in all (COS_COMMAND_HANDLER_TIMEOUT), ms */
  readonly commandTimeoutMs: number;
  /** observes each call's outcome (logging, metrics); never throws */
  readonly onError?: (method: 'ProcessCommand' | 'GetState' | SubscriptionMethod, error: unknown, traceContext: Context | undefined) => void;
  /** serves Subscribe, SubscribeAll, Unsubscribe, UnsubscribeAll (COS_SUBSCRIPTION_ENABLED); absent: UNIMPLEMENTED */
  readonly subscriptions?: SubscriptionPort;
}

/** ChiefOfStateService served over Connect: headers and deadlines in, COS errors out as statuses. */
export function createChiefOfStateService(
  options: ChiefOfStateServiceOptions,
): Partial<ServiceImpl<typeof ChiefOfStateService>> {
  const { processor, headers, commandTimeoutMs, onError } = options;
  return {
    ...(options.subscriptions ? createSubscriptionMethods(options.subscriptions, onError) : {}),
    async processCommand(request, context) {
      const call = callOf(context, commandTimeoutMs);
      try {
        const { state, meta } = await answerInTime(
          processor.processCommand({
            entityId: request.entityId,
            command: request.command,
            propagatedHeaders: propagatedHeaders(headers, context.requestHeader),
            persistedHeaders: persistedHeaders(headers, context.requestHeader),
            ...retryHeaders(context.requestHeader),
            ...call,
          }),
          call.signal,
          'the deadline passed before the command was answered: it may or may not have been applied',
        );
        return { state, meta };
      } catch (error) {
        throw failCall(error, onError && ((failure) => onError('ProcessCommand', failure, call.traceContext)));
      }
    },
    async getState(request, context) {
      const call = callOf(context, commandTimeoutMs);
      try {
        const { state, meta } = await answerInTime(
          processor.getState(request.entityId, call),
          call.signal,
          'the deadline passed before the state was read',
        );
        return { state, meta };
      } catch (error) {
        throw failCall(error, onError && ((failure) => onError('GetState', failure, call.traceContext)));
      }
    },
  };
}

/**
 * The work's outcome, or the call's end when that comes first: a caller is answered at its
 * deadline even when COS still waits for something (a stalled store, a full pool), so no answer
 * comes later than the caller asked. The work goes on; `checkTime` in the entity runtime keeps it
 * from appending once the deadline has passed, and an append already under way keeps its
 * outcome, which is why a command's DEADLINE_EXCEEDED says it may have been applied.
 */
function answerInTime<T>(work: Promise<T>, signal: AbortSignal, late: string): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(callEnded(signal, late));
  }
  return new Promise<T>((resolve, reject) => {
    const ended = () => reject(callEnded(signal, late));
    signal.addEventListener('abort', ended, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', ended);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', ended);
        reject(error);
      },
    );
  });
}

function callEnded(signal: AbortSignal, late: string): unknown {
  const reason: unknown = signal.reason;
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded ? new DeadlineExceededError(late, { cause: reason }) : reason;
}

/**
 * What both methods pass on about the call: its cancellation, its deadline (the caller's, capped
 * by COS_COMMAND_HANDLER_TIMEOUT), its trace context and the forwarding mark with its proof, if
 * any (checked by the processor, which knows the cluster secret).
 */
function callOf(context: HandlerContext, commandTimeoutMs: number): GetStateOptions & { signal: AbortSignal; deadline: number } {
  const callerMs = context.timeoutMs();
  const traceContext = context.values.get(callTraceContext);
  const forwardedBy = context.requestHeader.get(FORWARDED_BY_HEADER);
  const forwardProof = context.requestHeader.get(FORWARDED_PROOF_HEADER);
  return {
    signal: context.signal,
    deadline: Date.now() + (callerMs === undefined ? commandTimeoutMs : Math.min(callerMs, commandTimeoutMs)),
    ...(traceContext ? { traceContext } : {}),
    ...(forwardedBy === null ? {} : { forwardedBy }),
    ...(forwardProof === null ? {} : { forwardProof }),
  };
}
