/**
 * Child process of lease-coordinator.int.spec.ts: a lease coordinator (owner $COS_TEST_OWNER,
 * $COS_TEST_LEASE_MS) on the streams `$COS_TEST_STREAMS` (comma-separated) of schema
 * $COS_TEST_SCHEMA (already migrated). Prints `ready` once started, then runs until it is killed.
 */
import { createDatabase } from '@chiefofstate/postgres';
import { testPostgresConnection } from '@chiefofstate/postgres/testing';
import { createLeaseCoordinator } from '../src/index.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};

const database = await createDatabase(testPostgresConnection(env('COS_TEST_SCHEMA')));
const coordinator = createLeaseCoordinator({
  database,
  ownerId: env('COS_TEST_OWNER'),
  leaseMs: Number(env('COS_TEST_LEASE_MS')),
  renewIntervalMs: 100,
  onError: (error) => process.stderr.write(`${String(error)}\n`),
});
await coordinator.start(env('COS_TEST_STREAMS').split(','), {
  acquired: () => {},
  released: () => Promise.resolve(),
});
process.stdout.write('ready\n');
