export {
  createSubscriptionHub,
  SUBSCRIPTION_CONTROL_CHANNEL,
  type SubscribeAllOptions,
  type SubscribedEvent,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionHub,
  type SubscriptionHubOptions,
  type SubscriptionKind,
} from './subscription-hub.js';
export { createEventTail, type EventTail, type EventTailOptions } from './event-tail.js';
export { allEvents, entityEvents, entityStart, type EntityStart, type CursorContext, type CursorPage, type EventSource } from './cursors.js';
export type { JournalEventRecord, ListenPort, NotifyPort, SubscriptionJournal } from './ports.js';
