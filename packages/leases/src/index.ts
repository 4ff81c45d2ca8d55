export { fairShare, type FairShareInput, type LiveMember, type StreamGroup } from './fair-share.js';
export {
  createLeaseCoordinator,
  type LeaseCoordinator,
  type LeaseCoordinatorOptions,
  type ReleaseReason,
  type StreamHost,
  type StreamOwner,
} from './lease-coordinator.js';
export { leaseMigrations } from './migrations.js';
export type { ClusterSecretRow, LeaseTables, StreamLeaseRow, StreamMemberRow, StreamSetRow } from './tables.js';
export { loadClusterSecret } from './cluster-secret.js';
