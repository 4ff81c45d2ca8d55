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

describe('assertValidEntityId refuses ids PostgreSQL cannot store, as bad input', () => {
  it('rejects a NUL anywhere', () => {
    for (const id of ['\0', 'a\0', '\0b', 'a\0b']) {
      expect(() => assertValidEntityId(id)).toThrow(new InvalidArgumentError('entity ID contains a NUL character'));
    }
  });

  it('rejects lone surrogates and accepts paired ones', () => {
    for (const id of ['\uD800', 'a\uDC00', 'x\uD83Dy']) {
      expect(() => assertValidEntityId(id)).toThrow(InvalidArgumentError);
      expect(() => assertValidEntityId(id)).toThrow(/not valid Unicode/);
    }
    expect(() => assertValidEntityId('\uD83D\uDE00')).not.toThrow();
  });
});
