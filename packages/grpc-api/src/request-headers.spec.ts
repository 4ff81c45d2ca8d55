import { describe, expect, it } from 'vitest';
import { FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER } from '@chiefofstate/protocol';
import { persistedHeaders, propagatedHeaders } from './request-headers.js';

describe('request headers', () => {
  it('never passes on or persists the forwarding mark or its proof, even when configured to', () => {
    const rules = {
      propagated: ['x-tenant', FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER],
      persisted: ['x-user', FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER],
    };
    const incoming = new Headers({
      'x-tenant': 'acme',
      'x-user': 'alice',
      [FORWARDED_BY_HEADER]: '10.0.0.2:9000',
      [FORWARDED_PROOF_HEADER]: 'v1.1.123.proof',
    });
    expect(propagatedHeaders(rules, incoming)).toEqual({ 'x-tenant': 'acme' });
    expect(persistedHeaders(rules, incoming).map((header) => header.key)).toEqual(['x-user']);
  });
});
