/** OpenSSL's certificate verification results, as Node reports them in an error's `code`. */
const VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
]);

/**
 * True for a failure of the TLS handshake, on either side: this client did not trust the
 * server's certificate (or its name), or the server refused this client's certificate (an
 * OpenSSL alert, ERR_SSL_*, or a hang-up before the server's HTTP/2 preface: a Node server
 * refusing a client certificate sends no alert). The server never read a call on such a connection.
 */
export function isTlsFailure(error: unknown): boolean {
  return tlsFailureOf(error) !== undefined;
}

/** The TLS error itself, when `error` is one or was caused by one (a stream cancelled by it). */
export function tlsFailureOf(error: unknown): Error | undefined {
  let reason: unknown = error;
  for (let depth = 0; depth < 8 && reason instanceof Error; depth++) {
    const code = (reason as { code?: unknown }).code;
    if (typeof code === 'string' && (VERIFY_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code === 'COS_TLS_HANDSHAKE_REFUSED')) {
      return reason;
    }
    reason = reason.cause;
  }
  return undefined;
}
