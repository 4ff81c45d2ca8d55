import { describe, expect, it } from 'vitest';
import { assertValidEntityId } from './entity-id.js';
import { InvalidArgumentError } from './errors.js';

describe('assertValidEntityId', () => {
  it('rejects an empty id with the message clients expect', () => {
    expect(() => assertValidEntityId('')).toThrow(new InvalidArgumentError('empty entity ID'));
  });

  it('accepts 255 characters, counting code points', () => {
    expect(() => assertValidEntityId('a'.repeat(255))).not.toThrow();
    expect(() => assertValidEntityId('😀'.repeat(255))).not.toThrow();
  });

  it('rejects 256 characters with a clear message', () => {
    expect(() => assertValidEntityId('a'.repeat(256))).toThrow(/too long: 256 characters, at most 255/);
  });
});
