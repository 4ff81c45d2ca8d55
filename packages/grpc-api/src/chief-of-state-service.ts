import type { Context } from '@opentelemetry/api';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Any } from '@bufbuild/protobuf/wkt';
import type { ChiefOfStateService} from '@chiefofstate/protocol';
import { FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER, type Header, type MetaData } from '@chiefofstate/protocol';
import { persistedHeaders, propagatedHeaders, type HeaderRules } from './request-headers.js';
import { retryHeaders } from './retry-headers.js';
import { callTraceContext } from './server-tracing.js';
import { failCall } from './status.js';
import { createSubscriptionMethods, type SubscriptionMethod, type SubscriptionPort } from './subscription-methods.js';

/** What the service needs of the entity runtime (satisfied by @chiefofstate/entity). */
export interface CommandProcessor {
  processCommand(request: {
    entityId: string;
    command: Any | undefined;
    propagatedHeaders?: Record<string, string>;
    persistedHeaders?: Header[];
    signal?: AbortSignal;
    deadline?: number;
    traceContext?: Context;
    /** the forwarding mark (x-cos-forwarded-by), as the caller claims it */
    forwardedBy?: string;
    /** its proof (x-cos-forwarded-proof), for the processor to check */
    forwardProof?: string;
    /** x-cos-idempotency-key, checked */
    idempotencyKey?: string;
    /** x-cos-expected-revision, checked */
    expectedRevision?: bigint;
  }): Promise<{ state: Any; meta: MetaData }>;
  getState(
    entityId: string,
    options?: { signal?: AbortSignal; deadline?: number; traceContext?: Context; forwardedBy?: string; forwardProof?: string },
  ): Promise<{ state: Any; meta: MetaData }>;
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
        const { state, meta } = await processor.processCommand({
          entityId: request.entityId,
          command: request.command,
          propagatedHeaders: propagatedHeaders(headers, context.requestHeader),
          persistedHeaders: persistedHeaders(headers, context.requestHeader),
          ...retryHeaders(context.requestHeader),
          ...call,
        });
        return { state, meta };
      } catch (error) {
        throw failCall(error, onError && ((failure) => onError('ProcessCommand', failure, call.traceContext)));
      }
    },
    async getState(request, context) {
      const call = callOf(context, commandTimeoutMs);
      try {
        const { state, meta } = await processor.getState(request.entityId, call);
        return { state, meta };
      } catch (error) {
        throw failCall(error, onError && ((failure) => onError('GetState', failure, call.traceContext)));
      }
    },
  };
}

/**
 * What both methods pass on about the call: its cancellation, its deadline (the caller's, capped
 * by COS_COMMAND_HANDLER_TIMEOUT), its trace context and the forwarding mark with its proof, if
 * any (checked by the processor, which knows the cluster secret).
 */
function callOf(
  context: HandlerContext,
  commandTimeoutMs: number,
): { signal: AbortSignal; deadline: number; traceContext?: Context; forwardedBy?: string; forwardProof?: string } {
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
