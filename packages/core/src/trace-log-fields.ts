/** A span as far as log lines need one; an OpenTelemetry `Span` is one. */
export interface SpanIds {
  spanContext(): { readonly traceId: string; readonly spanId: string };
}

/** The fields that tie a log line to its trace: `trace_id` and `span_id`; none without a span. */
export function traceLogFields(span: SpanIds | undefined): { trace_id?: string; span_id?: string } {
  if (span === undefined) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
