import type { IncomingHttpHeaders } from 'node:http2';
import { describe, expect, it } from 'vitest';
import { capTimeoutHeaders } from './grpc-server.js';

describe('capTimeoutHeaders', () => {
  const capped = (headers: IncomingHttpHeaders) => {
    capTimeoutHeaders(headers);
    return headers;
  };

  it('caps deadlines a Node timer cannot hold, in both protocols', () => {
    expect(capped({ 'grpc-timeout': '720H' })).toEqual({ 'grpc-timeout': '2147483S' });
    expect(capped({ 'grpc-timeout': '99999999M' })).toEqual({ 'grpc-timeout': '2147483S' });
    expect(capped({ 'connect-timeout-ms': '2592000000' })).toEqual({ 'connect-timeout-ms': '2147483647' });
  });

  it('leaves deadlines a timer holds, and malformed values (Connect refuses those)', () => {
    for (const value of ['596H', '2147483S', '5000m', '99999999n', 'abc', '123456789S', '1.5H']) {
      expect(capped({ 'grpc-timeout': value })).toEqual({ 'grpc-timeout': value });
    }
    expect(capped({ 'connect-timeout-ms': '5000' })).toEqual({ 'connect-timeout-ms': '5000' });
    expect(capped({})).toEqual({});
  });
});
