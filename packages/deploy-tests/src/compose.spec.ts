import { describe, expect, it } from 'vitest';
import { dependencies, interpolate, parseCompose, publishedContainerPorts, serviceEnvironment } from './compose.js';

describe('interpolate', () => {
  const env = { SET: 'value', EMPTY: '' };

  it.each([
    ['$SET and ${SET}', 'value and value'],
    ['${UNSET:-fallback}', 'fallback'],
    ['${EMPTY:-fallback}', 'fallback'],
    ['${EMPTY-fallback}', ''],
    ['${UNSET-fallback}', 'fallback'],
    ['${SET:-fallback}', 'value'],
    ['${UNSET}', ''],
    ['cost: $$5', 'cost: $5'],
  ])('%s -> %j', (text, expected) => {
    expect(interpolate(text, env)).toBe(expected);
  });

  it('fails on a required variable that is missing', () => {
    expect(() => interpolate('${UNSET:?set it}', env)).toThrow('UNSET: set it');
    expect(() => interpolate('${EMPTY:?}', env)).toThrow('EMPTY: required');
    expect(interpolate('${EMPTY?}', env)).toBe('');
  });
});

describe('compose services', () => {
  const file = parseCompose(`
services:
  a:
    image: x
    environment: [A=1, B=, C]
    ports: ["9000:9000", "127.0.0.1:9101:9102/tcp", { target: 4318, published: 4318 }]
    depends_on: [b]
  b:
    image: y
    environment: { N: 5, T: true, U: null }
    depends_on:
      a: { condition: service_healthy }
      c: { condition: service_started, required: false }
`);

  it('reads environments in list and map form', () => {
    expect([...serviceEnvironment(file.services['a']!)]).toEqual([
      ['A', '1'],
      ['B', ''],
      ['C', ''],
    ]);
    expect([...serviceEnvironment(file.services['b']!)]).toEqual([
      ['N', '5'],
      ['T', 'true'],
      ['U', ''],
    ]);
  });

  it('reads container ports of short and long port syntax', () => {
    expect(publishedContainerPorts(file.services['a']!)).toEqual([9000, 9102, 4318]);
  });

  it('reads depends_on in list and map form', () => {
    expect([...dependencies(file.services['a']!)]).toEqual([['b', { condition: 'service_started', required: true }]]);
    expect([...dependencies(file.services['b']!)]).toEqual([
      ['a', { condition: 'service_healthy', required: true }],
      ['c', { condition: 'service_started', required: false }],
    ]);
  });

  it('refuses duplicate keys and files without services', () => {
    expect(() => parseCompose('services:\n  a: {}\n  a: {}\n')).toThrow(/[Mm]ap keys must be unique/);
    expect(() => parseCompose('name: x\n')).toThrow(/no services/);
  });
});
