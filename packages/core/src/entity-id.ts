import { InvalidArgumentError } from './errors.js';

/** Longest entity id COS accepts, in characters (Unicode code points). */
export const MAX_ENTITY_ID_LENGTH = 255;

/** With the u flag a paired surrogate is one code point, so this matches lone ones only. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Throws InvalidArgumentError unless the id is non-empty, at most 255 characters, valid Unicode
 * and free of NUL: PostgreSQL refuses NUL in text and lone surrogates cannot be stored as UTF-8,
 * so such ids are the caller's error, not a store failure to retry.
 */
export function assertValidEntityId(entityId: string): void {
  if (entityId.length === 0) throw new InvalidArgumentError('empty entity ID');
  // .length counts UTF-16 units; only count code points when it could matter.
  if (entityId.length > MAX_ENTITY_ID_LENGTH && [...entityId].length > MAX_ENTITY_ID_LENGTH) {
    throw new InvalidArgumentError(
      `entity ID too long: ${[...entityId].length} characters, at most ${MAX_ENTITY_ID_LENGTH} allowed`,
    );
  }
  if (entityId.includes('\0')) throw new InvalidArgumentError('entity ID contains a NUL character');
  if (LONE_SURROGATE.test(entityId)) throw new InvalidArgumentError('entity ID is not valid Unicode (lone surrogate)');
}
