import { create } from '@bufbuild/protobuf';
import { decodeBinaryHeader } from '@connectrpc/connect';
import { FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER, HeaderSchema, type Header } from '@chiefofstate/protocol';

/**
 * The replicas' forwarding mark and its proof: never passed on or persisted, whatever the
 * configured names say (a proof must not reach a handler or the journal).
 */
const CLUSTER_HEADERS: ReadonlySet<string> = new Set([FORWARDED_BY_HEADER, FORWARDED_PROOF_HEADER]);

/** Header names that always flow to the handlers: W3C trace context. */
const TRACE_CONTEXT_HEADERS = ['traceparent', 'tracestate'] as const;

export interface HeaderRules {
  /** lower-cased names of request headers forwarded to the write handler */
  readonly propagated: readonly string[];
  /** lower-cased names of request headers stored in each event's MetaData.headers */
  readonly persisted: readonly string[];
}

/** The configured request headers to send on HandleCommand / HandleEvent, plus trace context. */
export function propagatedHeaders(rules: HeaderRules, incoming: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of rules.propagated) {
    if (CLUSTER_HEADERS.has(name)) continue;
    const value = incoming.get(name);
    if (value !== null) out[name] = value;
  }
  for (const name of TRACE_CONTEXT_HEADERS) {
    const value = incoming.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

/**
 * The configured request headers as MetaData headers: `-bin` keys carry their decoded bytes,
 * others their string value. A header sent several times is persisted once per value.
 */
export function persistedHeaders(rules: HeaderRules, incoming: Headers): Header[] {
  const out: Header[] = [];
  for (const name of rules.persisted) {
    if (CLUSTER_HEADERS.has(name)) continue;
    const joined = incoming.get(name);
    if (joined === null) continue;
    // Headers joins repeated values with ", "; base64 and most header values contain no comma.
    const values = name.endsWith('-bin') ? joined.split(',').map((v) => v.trim()) : [joined];
    for (const value of values) {
      out.push(
        create(HeaderSchema, {
          key: name,
          value: name.endsWith('-bin')
            ? { case: 'bytesValue', value: decodeBinaryHeader(value) }
            : { case: 'stringValue', value },
        }),
      );
    }
  }
  return out;
}
