/**
 * Java's `String.hashCode` over UTF-16 code units with 32-bit overflow. Shard numbers (event
 * tags) of existing deployments were computed with it, so it must match bit for bit.
 */
export function javaStringHashCode(value: string): number {
  let hash = 0;
  for (let i = 0; i < value.length; i++) {
    hash = (Math.imul(hash, 31) + value.charCodeAt(i)) | 0;
  }
  return hash;
}

/** The shard (event tag) of an entity: `abs(hashCode) % numShards`, as the Scala server does. */
export function shardOf(entityId: string, numShards: number): number {
  // Math.abs(Integer.MIN_VALUE) stays negative in Java; numShards is a power of two, so the
  // remainder is 0 either way, and JS's positive 2^31 gives the same answer.
  return Math.abs(javaStringHashCode(entityId)) % numShards;
}
