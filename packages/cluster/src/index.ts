export {
  createEntityRouter,
  entityShardStream,
  entityShardStreams,
  type EntityRouter,
  type EntityRouterOptions,
  type RouteOutcome,
  type ShardReleaseReason,
} from './entity-router.js';
export type {
  CommandRequest,
  EntityState,
  GetStateOptions,
  LocalEntities,
  Logger,
  PeerCall,
  PeerPort,
  ShardOwners,
} from './ports.js';
