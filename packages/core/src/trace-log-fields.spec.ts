import { describe, expect, it } from 'vitest';
import { traceLogFields } from './trace-log-fields.js';

describe('traceLogFields', () => {
  it("gives a span's trace and span ids, and nothing without a span", () => {
    const span = { spanContext: () => ({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }) };
    expect(traceLogFields(span)).toEqual({ trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: '00f067aa0ba902b7' });
    expect(traceLogFields(undefined)).toEqual({});
  });
});
