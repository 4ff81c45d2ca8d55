import { InvalidArgumentError } from './errors.js';

/** Longest entity id COS accepts, in characters (Unicode code points). */
export const MAX_ENTITY_ID_LENGTH = 255;

/** Throws InvalidArgumentError unless the id is non-empty and at most 255 characters. */
export function assertValidEntityId(entityId: string): void {
  if (entityId.length === 0) throw new InvalidArgumentError('empty entity ID');
  // .length counts UTF-16 units; only count code points when it could matter.
  if (entityId.length > MAX_ENTITY_ID_LENGTH && [...entityId].length > MAX_ENTITY_ID_LENGTH) {
    throw new InvalidArgumentError(
      `entity ID too long: ${[...entityId].length} characters, at most ${MAX_ENTITY_ID_LENGTH} allowed`,
    );
  }
}
