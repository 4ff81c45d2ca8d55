import { describe, expect, it } from 'vitest';
import { encodeGrpcMessage, fitStatusTrailers } from './grpc-message.js';

describe('encodeGrpcMessage', () => {
  it('keeps printable ASCII but %', () => {
    expect(encodeGrpcMessage('insufficient funds: balance 5 < 10 (ok?)')).toBe('insufficient funds: balance 5 < 10 (ok?)');
  });

  it('encodes %, control characters and UTF-8 bytes', () => {
    expect(encodeGrpcMessage('100%')).toBe('100%25');
    expect(encodeGrpcMessage('a\nb')).toBe('a%0Ab');
    expect(encodeGrpcMessage('café 😀')).toBe('caf%C3%A9 %F0%9F%98%80');
  });

  it('reads back with decodeURIComponent (Connect, grpc-go, grpc-java) and decodeURI (grpc-js)', () => {
    const message = 'résumé: 100% done; a/b?c#d';
    expect(decodeURIComponent(encodeGrpcMessage(message))).toBe(message);
    expect(decodeURI(encodeGrpcMessage(message))).toBe(message);
  });
});

describe('fitStatusTrailers', () => {
  it('cuts a long message between characters, never inside %XX or a UTF-8 sequence', () => {
    for (const text of ['a'.repeat(20_000), 'é'.repeat(20_000), `a${'😀'.repeat(20_000)}`, `ab${'€'.repeat(20_000)}`]) {
      const trailers = { 'grpc-message': encodeGrpcMessage(text) };
      fitStatusTrailers(trailers);
      const decoded = decodeURI(trailers['grpc-message']);
      expect(decoded.endsWith('... (cut)')).toBe(true);
      expect(text.startsWith(decoded.slice(0, -'... (cut)'.length))).toBe(true);
      expect(trailers['grpc-message'].length).toBeLessThanOrEqual(16 * 1024 + 9);
    }
  });

  it('leaves what fits, and drops details too large to send', () => {
    const small = { 'grpc-message': 'refused', 'grpc-status-details-bin': 'AAAA' };
    fitStatusTrailers(small);
    expect(small).toEqual({ 'grpc-message': 'refused', 'grpc-status-details-bin': 'AAAA' });
    const large: Record<string, string> = { 'grpc-status': '9', 'grpc-status-details-bin': 'A'.repeat(40_000) };
    fitStatusTrailers(large);
    expect(large).toEqual({ 'grpc-status': '9' });
  });
});
