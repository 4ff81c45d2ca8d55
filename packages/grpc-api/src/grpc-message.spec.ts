import { describe, expect, it } from 'vitest';
import { encodeGrpcMessage } from './grpc-message.js';

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
