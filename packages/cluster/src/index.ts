export {
  createEntityRouter,
  entityShardStream,
  entityShardStreams,
  type EntityRouter,
  type EntityRouterOptions,
  type RouteOutcome,
  type ShardReleaseReason,
} from './entity-router.js';
export {
  MAX_FORWARDS,
  createForwardingAuth,
  type ForwardedCall,
  type ForwardingAuth,
  type ForwardingAuthOptions,
  type ProofVerdict,
} from './forwarding-auth.js';
export type {
  LocalEntities,
  PeerCall,
  PeerPort,
  ShardFences,
  ShardOwners,
} from './ports.js';
