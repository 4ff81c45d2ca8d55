import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { ChiefOfStateService, EventWrapper } from '@chiefofstate/protocol';
import { callTraceContext } from './server-tracing.js';
import { failCall } from './status.js';
import type { Context } from '@opentelemetry/api';

/** One event as a subscription yields it (satisfied by @chiefofstate/subscriptions). */
export interface SubscribedEventLike {
  readonly subscriptionId: string;
  /** the global journal position, sent as `offset` */
  readonly position: bigint;
  readonly wrapper: EventWrapper;
}

export interface SubscriptionLike {
  readonly id: string;
  readonly events: AsyncIterable<SubscribedEventLike>;
}

/**
 * What the subscription RPCs need (satisfied by @chiefofstate/subscriptions' SubscriptionHub).
 * `subscribe` and `subscribeAll` resolve once the subscription's start is fixed.
 */
export interface SubscriptionPort {
  subscribe(options: { entityId: string; subscriptionId?: string; fromRevision?: bigint; signal: AbortSignal }): Promise<SubscriptionLike>;
  subscribeAll(options: { subscriptionId?: string; afterPosition?: bigint; signal: AbortSignal }): Promise<SubscriptionLike>;
  unsubscribe(subscriptionId: string): Promise<void>;
}

export type SubscriptionMethod = 'Subscribe' | 'SubscribeAll' | 'Unsubscribe' | 'UnsubscribeAll';

type SubscriptionImpl = Pick<ServiceImpl<typeof ChiefOfStateService>, 'subscribe' | 'subscribeAll' | 'unsubscribe' | 'unsubscribeAll'>;

/**
 * Subscribe, SubscribeAll (server streaming: each event as `{subscription_id, event,
 * resulting_state, meta, offset}`, pulled from the subscription only as fast as the caller takes
 * them), Unsubscribe and UnsubscribeAll (both end the subscriptions with that id, on any replica).
 * A stream ends OK on Unsubscribe, with the COS error's status otherwise (its message says where
 * to resume).
 */
export function createSubscriptionMethods(
  port: SubscriptionPort,
  onError?: (method: SubscriptionMethod, error: unknown, traceContext: Context | undefined) => void,
): SubscriptionImpl {
  const fail = (method: SubscriptionMethod, error: unknown, traceContext: Context | undefined) =>
    failCall(error, onError && ((failure) => onError(method, failure, traceContext)));
  return {
    subscribe: (request, context) =>
      stream('Subscribe', context, () =>
        port.subscribe({
          entityId: request.entityId,
          subscriptionId: request.subscriptionId,
          ...(request.fromRevision !== undefined ? { fromRevision: request.fromRevision } : {}),
          signal: context.signal,
        }),
      ),
    subscribeAll: (request, context) =>
      stream('SubscribeAll', context, () =>
        port.subscribeAll({
          subscriptionId: request.subscriptionId,
          ...(request.afterOffset !== undefined ? { afterPosition: request.afterOffset } : {}),
          signal: context.signal,
        }),
      ),
    unsubscribe: (request, context) => unsubscribe('Unsubscribe', request.subscriptionId, context),
    unsubscribeAll: (request, context) => unsubscribe('UnsubscribeAll', request.subscriptionId, context),
  };

  async function* stream(method: SubscriptionMethod, context: HandlerContext, open: () => Promise<SubscriptionLike>) {
    try {
      for await (const event of (await open()).events) yield responseOf(event);
    } catch (error) {
      throw fail(method, error, context.values.get(callTraceContext));
    }
  }

  async function unsubscribe(method: SubscriptionMethod, subscriptionId: string, context: HandlerContext) {
    try {
      await port.unsubscribe(subscriptionId);
      return { subscriptionId };
    } catch (error) {
      throw fail(method, error, context.values.get(callTraceContext));
    }
  }
}

function responseOf(event: SubscribedEventLike) {
  const { wrapper } = event;
  return {
    subscriptionId: event.subscriptionId,
    ...(wrapper.event ? { event: wrapper.event } : {}),
    ...(wrapper.resultingState ? { resultingState: wrapper.resultingState } : {}),
    ...(wrapper.meta ? { meta: wrapper.meta } : {}),
    offset: event.position,
  };
}
