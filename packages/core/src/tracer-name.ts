/** The OpenTelemetry tracer name COS's own spans are created under (their instrumentation scope). */
export const TRACER_NAME = 'chiefofstate';
