import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { InternalError } from '@chiefofstate/core';
import type { Database } from '@chiefofstate/postgres';

/** Bytes of a generated cluster secret. */
const SECRET_BYTES = 32;

/**
 * The cluster secret of the processes sharing this database: created at random by the first
 * one to ask and stored in cos_cluster_secret, so replicas share it without configuration
 * (COS_CLUSTER_SECRET, when set, is used instead). Whoever can read the table can forge
 * forwarded calls: it is as sensitive as the database credentials.
 */
export async function loadClusterSecret(database: Database): Promise<Uint8Array> {
  const kysely = database.kysely;
  // Two statements: a process losing the race to insert must read the winner's row, which a
  // single statement's snapshot would not show it.
  await sql`INSERT INTO cos_cluster_secret (secret) VALUES (${randomBytes(SECRET_BYTES)}) ON CONFLICT (id) DO NOTHING`.execute(kysely);
  const { rows } = await sql<{ secret: Uint8Array }>`SELECT secret FROM cos_cluster_secret`.execute(kysely);
  const secret = rows[0]?.secret;
  if (!(secret instanceof Uint8Array) || secret.byteLength === 0) throw new InternalError('cos_cluster_secret holds no secret');
  return new Uint8Array(secret);
}
