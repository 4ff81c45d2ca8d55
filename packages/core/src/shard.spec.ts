import { describe, expect, it } from 'vitest';
import { javaStringHashCode, shardOf } from './shard.js';

// [value, String.hashCode(), Math.abs(h) % 16, Math.abs(h) % 1024], printed by a JVM (Java 17).
const JVM_VECTORS: ReadonlyArray<readonly [string, number, number, number]> = [
  ['', 0, 0, 0],
  ['a', 97, 1, 97],
  ['hello', 99162322, 2, 210],
  ['entity-1', -2102100793, 9, 825],
  ['Aa', 2112, 0, 64],
  ['BB', 2112, 0, 64],
  ['polygenelubricants', -2147483648, 0, 0],
  ['\u00e9\u00e0\u{1F600}', 8929466, 10, 186],
  ['account-42', -803382754, 2, 482],
  ['用户-7', 917655545, 9, 1017],
];

describe('javaStringHashCode', () => {
  it.each(JVM_VECTORS)('hashes %j like the JVM', (value, hash) => {
    expect(javaStringHashCode(value)).toBe(hash);
  });
});

describe('shardOf', () => {
  it.each(JVM_VECTORS)('puts %j in the shard the Scala server does', (value, _hash, of16, of1024) => {
    expect(shardOf(value, 16)).toBe(of16);
    expect(shardOf(value, 1024)).toBe(of1024);
  });

  it('always lands in range', () => {
    for (let i = 0; i < 1000; i++) {
      const s = shardOf(`id-${i}`, 32);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThan(32);
    }
  });
});
